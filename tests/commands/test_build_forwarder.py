"""`defender-hub build-forwarder`: the zip from uv.lock, and a clean interpreter importing the handler from it."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from defender_hub.cli import main

PROJECT = Path(__file__).parents[2]
MAX_ZIP_BYTES = 5 * 1024 * 1024
"""Well under Lambda's 50 MB for a zip uploaded directly: boto3 is what made the old recipe's 19.8 MB."""
LEFT_OUT = ("boto3", "botocore", "s3transfer", "jmespath", "urllib3", "dateutil", "six", "prometheus_client")


def build(tmp_path: Path, *flags: str) -> Path:
    """The zip `build-forwarder` writes with `flags`; checks what it prints."""
    output = tmp_path / "defender-hub-forwarder.zip"
    assert main(["build-forwarder", "--project", str(PROJECT), "--output", str(output), *flags]) == 0
    return output


@pytest.mark.parametrize(("architecture", "machine"), [("x86_64", "x86_64"), ("arm64", "aarch64")])
def test_the_zip_holds_the_package_and_lambdas_wheels_but_not_what_lambda_has(
    architecture: str, machine: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    zipped = build(tmp_path, "--architecture", architecture)
    printed = capsys.readouterr().out
    assert f"{zipped}: {zipped.stat().st_size} bytes (python3.14, {architecture})" in printed
    assert zipped.stat().st_size < MAX_ZIP_BYTES
    names = zipfile.ZipFile(zipped).namelist()
    tops = {name.split("/")[0] for name in names}
    assert "defender_hub/forwarder.py" in names
    assert f"msgspec/_core.cpython-314-{machine}-linux-gnu.so" in names  # not the free-threaded cp314t, nor musl
    assert not tops & set(LEFT_OUT)
    assert not [top for top in tops if top.startswith(("amazon_kclpy", "boto", "prometheus"))]
    assert not [name for name in names if name.endswith(".pth") or "tests/" in name or "__pycache__" in name]
    assert not [name for name in names if ".dist-info/" in name]
    assert not [name for name in names if name.startswith("defender_hub/local/")]


def test_a_clean_interpreter_imports_the_handler_from_the_zip_and_runs_it(tmp_path: Path) -> None:
    machines = {"x86_64": "x86_64", "aarch64": "arm64"}
    if sys.platform != "linux" or platform.machine() not in machines or sys.implementation.name != "cpython":
        pytest.skip("the zip's compiled msgspec imports on CPython on Linux only")
    # Built for this interpreter's Python, so that it imports the zip's compiled msgspec as Lambda's would.
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    zipped = build(tmp_path, "--python-version", version, "--architecture", machines[platform.machine()])
    code = tmp_path / "code"
    zipfile.ZipFile(zipped).extractall(code)
    # Lambda provides boto3; a stand-in that records what the forwarder puts shows that the handler runs.
    lambda_runtime = tmp_path / "runtime"
    (lambda_runtime / "botocore").mkdir(parents=True)
    (lambda_runtime / "botocore" / "__init__.py").write_text("")
    (lambda_runtime / "botocore" / "config.py").write_text("class Config:\n    def __init__(self, **_): pass\n")
    (lambda_runtime / "boto3").mkdir()
    (lambda_runtime / "boto3" / "__init__.py").write_text(
        textwrap.dedent("""
            class _Client:
                def put_records(self, StreamName, Records):
                    print("put", StreamName, [r["PartitionKey"] for r in Records])
                    return {"Records": [{} for _ in Records]}

            def client(service, **_):
                return _Client()
        """)
    )
    alarm = {"violationId": "v1", "thingName": "thing-1", "behavior": {"name": "disconnects"}}
    event = {"Records": [{"Sns": {"Message": json.dumps(alarm), "TopicArn": "arn:aws:sns:eu-west-1:111122223333:t"}}]}
    script = textwrap.dedent(f"""
        import importlib.util, sys
        sys.path[:0] = [{str(code)!r}]
        from defender_hub.forwarder import handler
        import msgspec
        assert callable(handler)
        assert msgspec.__file__.startswith({str(code)!r}), msgspec.__file__
        assert importlib.util.find_spec("boto3") is None, "the project's venv is on the path"
        assert "prometheus_client" not in sys.modules
        sys.path.append({str(lambda_runtime)!r})
        print(handler({event!r}, None))
    """)
    # -I and -S: no PYTHON* variables, no user or venv site-packages; only the zip's files and then the stand-in.
    environment = {"PATH": os.environ.get("PATH", ""), "DEFENDER_HUB_STREAM": "s", "AWS_REGION": "eu-west-1"}
    ran = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script], capture_output=True, text=True, env=environment, check=False
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == ["put s ['thing-1']", "{'records': 1}"]
