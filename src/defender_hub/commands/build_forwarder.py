"""`defender-hub build-forwarder`: the forwarder's Lambda zip, from uv.lock, for Lambda's platform and Python.

uv does what a build for another platform needs: `uv export` writes the lock's runtime dependencies with their hashes,
leaving out what Lambda's runtime provides (boto3 and what only it needs) and what the forwarder never imports
(prometheus-client; the KCL is a dependency group of its own), and `uv pip install --target` takes each package's
wheel for CPython on manylinux2014 (glibc 2.17, which every Lambda Python runtime has) of the architecture and the
Python asked for. The zip holds those and the project's package as plain files, without the local stand-ins.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import defender_hub
from defender_hub.commands.common import EXIT_FAILURES, EXIT_OK, EXIT_USAGE

__all__ = ["PRUNED", "add", "build"]

PRUNED = ("boto3", "prometheus-client")
"""What the export leaves out with what only it needs: Lambda's runtime has boto3 (botocore, s3transfer, jmespath,
urllib3, python-dateutil, six), and the forwarder never imports the metrics' client."""
_PLATFORMS = {"x86_64": "x86_64-manylinux2014", "arm64": "aarch64-manylinux2014"}
"""uv's platform of each Lambda architecture."""
_LEFT_OUT_OF_PACKAGE = frozenset({"local", "__pycache__"})
"""The package's directories the zip leaves out: the local stand-ins (moto, Security Hub) and bytecode."""
_DATE = (1980, 1, 1, 0, 0, 0)
"""Every entry's time, so that the same lock and code make the same zip."""


class BuildError(Exception):
    """The zip can't be built: no uv, or uv failed."""


def add(commands: Any) -> None:
    """Declares `build-forwarder`."""
    build_forwarder = commands.add_parser(
        "build-forwarder",
        help="build the forwarder's Lambda zip from uv.lock, for Lambda's platform and Python",
        description=(
            "Writes a zip for deploy/forwarder.yaml's CodeBucket/CodeKey, handler defender_hub.forwarder.handler: "
            "the defender_hub package and the locked dependencies the forwarder imports, as uv installs them for "
            "Lambda (CPython, manylinux2014, the architecture's wheels, checked against the lock's hashes); without "
            "boto3 and its dependencies (Lambda's runtime has them), prometheus-client and the KCL. Needs uv "
            "(`pip install uv`). Prints the zip's path and size."
        ),
    )
    build_forwarder.add_argument(
        "--output",
        type=Path,
        default=Path("defender-hub-forwarder.zip"),
        metavar="PATH",
        help="the zip to write, replaced if there (default: defender-hub-forwarder.zip, the template's CodeKey)",
    )
    build_forwarder.add_argument(
        "--architecture",
        choices=sorted(_PLATFORMS),
        default="x86_64",
        help="the forwarder function's architecture in deploy/forwarder.yaml (default: x86_64)",
    )
    build_forwarder.add_argument(
        "--python-version",
        type=_python_version,
        default="3.14",
        metavar="3.N",
        help="the Python of the function's runtime, python3.N (default: 3.14)",
    )
    build_forwarder.add_argument(
        "--project",
        type=Path,
        default=Path(),
        metavar="DIR",
        help="the checkout whose uv.lock says the versions that go in (default: the current directory)",
    )
    build_forwarder.set_defaults(handler=_build_forwarder)


def _python_version(text: str) -> str:
    if re.fullmatch(r"3\.\d+", text) is None:
        raise argparse.ArgumentTypeError(f"not a Python version of the form 3.N: {text!r}")
    return text


def _build_forwarder(args: argparse.Namespace) -> int:
    uv = os.environ.get("UV") or shutil.which("uv")  # `uv run` names itself in UV
    if uv is None:
        print("defender-hub: build-forwarder needs uv: pip install uv", file=sys.stderr)
        return EXIT_USAGE
    try:
        size = build(uv, args.project, args.architecture, args.python_version, args.output)
    except (BuildError, OSError) as exc:
        print(f"defender-hub: build-forwarder: {exc}", file=sys.stderr)
        return EXIT_FAILURES
    print(f"{args.output}: {size} bytes (python{args.python_version}, {args.architecture})")
    return EXIT_OK


def build(uv: str, project: Path, architecture: str, python_version: str, output: Path) -> int:
    """Writes the forwarder's zip for Lambda's `architecture` and Python `python_version` to `output`, with the
    versions `project`'s uv.lock says and the running defender_hub package; returns its size in bytes."""
    with tempfile.TemporaryDirectory(prefix="defender-hub-forwarder-") as folder:
        requirements, installed = Path(folder) / "requirements.txt", Path(folder) / "installed"
        pruned = [argument for name in PRUNED for argument in ("--prune", name)]
        export = ["--frozen", "--project", str(project), "--no-dev", "--no-default-groups", "--no-emit-project"]
        _uv(uv, "export", *export, *pruned, "--format", "requirements-txt", "--output-file", str(requirements))
        platform = ["--python-platform", _PLATFORMS[architecture], "--python-version", python_version]
        wheels = ["--only-binary", ":all:", "--no-deps", "--requirement", str(requirements)]
        _uv(uv, "pip", "install", "--target", str(installed), *platform, *wheels)
        files = _installed_files(installed)
    files.update(_package_files(Path(defender_hub.__file__).parent))
    return _write_zip(files, output)


def _uv(uv: str, *arguments: str) -> None:
    """Runs uv with `arguments`; raises BuildError with the end of what it said when it fails."""
    done = subprocess.run([uv, "--quiet", *arguments], capture_output=True, text=True, check=False)  # noqa: S603 - uv
    if done.returncode != 0:
        said = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise BuildError(f"uv {arguments[0]} failed: {said[-1] if said else done.returncode}")


def _installed_files(installed: Path) -> dict[str, bytes]:
    """What uv installed, as the zip's files: the packages, without their metadata, bytecode or scripts."""
    files = {}
    for path in sorted(installed.rglob("*")):
        relative = path.relative_to(installed)
        if path.is_dir() or relative.parts[0].endswith(".dist-info") or relative.parts[0] == "bin":
            continue
        if "__pycache__" not in relative.parts:
            files[str(PurePosixPath(*relative.parts))] = path.read_bytes()
    return files


def _write_zip(files: dict[str, bytes], output: Path) -> int:
    """Writes `files` to the zip `output`, the same bytes for the same files; returns its size in bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(files):
            entry = zipfile.ZipInfo(path, _DATE)
            entry.external_attr = 0o100644 << 16  # a regular file Lambda's user can read
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, files[path])
    output.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the output and renamed, so that an interrupted build leaves no half zip where the old one was.
    partial = output.with_name(f".{output.name}.partial")
    partial.write_bytes(buffer.getvalue())
    partial.replace(output)
    return output.stat().st_size


def _package_files(package: Path) -> dict[str, bytes]:
    """The project's package as plain files under `defender_hub/`, without what _LEFT_OUT_OF_PACKAGE names."""
    files = {}
    for path in sorted(package.rglob("*")):
        relative = path.relative_to(package)
        if path.is_dir() or _LEFT_OUT_OF_PACKAGE.intersection(relative.parts) or path.suffix == ".pyc":
            continue
        files[str(PurePosixPath(package.name, *relative.parts))] = path.read_bytes()
    return files
