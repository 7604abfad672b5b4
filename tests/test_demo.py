"""The README's first command: the demo runs the whole pipeline on the local stack and everything arrives."""

from __future__ import annotations

from tests.helpers import run_cli


def test_the_demo_delivers_every_finding_and_shows_the_table() -> None:
    done = run_cli("demo", "--events", "400")

    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()[-2000:]
    expected = int(out.split("distinct findings to expect")[0].rsplit(":", 1)[1])
    assert f"{expected} of {expected} findings in Security Hub" in out
    assert "IoT Device Defender - Detect   ACTIVE" in out
    assert "IoT Device Defender - Audit" in out
