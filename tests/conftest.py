"""Fixtures shared by every test: reference events and findings, the converter, a local Security Hub."""

from __future__ import annotations

import fcntl
import inspect
import json
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import CodeType, FunctionType
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, settings

from defender_hub.codecs.asff import encode_finding
from defender_hub.convert import EventConverter
from defender_hub.local.aws import LocalAws
from defender_hub.local.securityhub import LocalSecurityHub
from defender_hub.mapping import MappingOptions
from tests.helpers import GOLDEN, Convert, read_jsonl

# HYPOTHESIS_PROFILE=deep for a longer hunt; CI (CI set) runs three times the examples of the quick default.
_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile("default", max_examples=100, deadline=None, suppress_health_check=_SLOW_OK)
settings.register_profile("ci", max_examples=300, deadline=None, suppress_health_check=_SLOW_OK)
settings.register_profile("deep", max_examples=5_000, deadline=None, suppress_health_check=_SLOW_OK)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "default"))

# The `daemon` marker (pyproject.toml) is on every test that starts the KCL MultiLangDaemon (Java) or builds or runs
# the container image: each takes seconds to minutes. `pytest -m "not daemon"` is the quick loop; `pytest` runs all.
# The rule, applied below so that a new test written the usual way gets the marker without asking:
#   - a test that uses the `podman` or `image` fixture (tests/docker/conftest.py) is a daemon test;
#   - so is a test whose body, a lambda or closure in it, or a function of tests/ it calls by name (followed down)
#     names `start_consumer` (tests/consumer/test_processor.py), or `consumer_command` / `run_daemon` (what starts
#     the daemon in src/): a call to one of them starts the daemon;
#   - a test that starts the daemon in another way, through another program (the demo, benchmarks/loadtest.py),
#     carries the marker itself: `pytestmark = pytest.mark.daemon` for a module of such tests (tests/test_demo.py,
#     tests/test_loadtest.py), `@pytest.mark.daemon` on one test.
# `defender-hub run` refused before it starts the daemon (tests/consumer/test_launcher.py) is no daemon test.
# The `slow` marker is on the few other tests that take over ~5 s each (by --durations), marked by hand;
# `pytest -m "not daemon and not slow"` leaves them out too.
# The tests run in four processes (pyproject.toml): the slow tests first, so that no process is left with a long one
# at the end; the daemon tests last, each only while no other runs one (two cores run one daemon at a time well), so
# that the other processes are not kept waiting for the lock with quick tests in hand.
DAEMON_FIXTURES = frozenset({"podman", "image"})
DAEMON_LAUNCHERS = frozenset({"start_consumer", "consumer_command", "run_daemon"})
DAEMON_LOCK = Path(tempfile.gettempdir()) / f"defender-hub-tests-{os.getuid()}.daemon.lock"
"""Held by the test process running a daemon test: the test processes of one run, or of two runs at once."""


def _starts_daemon(code: CodeType, namespace: dict[str, Any], seen: set[CodeType]) -> bool:
    """`code` names a daemon launcher, itself or through its nested code or the functions of tests/ it calls."""
    if code in seen:
        return False
    seen.add(code)
    if DAEMON_LAUNCHERS.intersection(code.co_names):
        return True
    for constant in code.co_consts:
        if isinstance(constant, CodeType) and _starts_daemon(constant, namespace, seen):
            return True
    for name in code.co_names:
        called = namespace.get(name)
        if (
            isinstance(called, FunctionType)
            and called.__module__.startswith("tests.")
            and _starts_daemon(called.__code__, called.__globals__, seen)
        ):
            return True
    return False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        function = inspect.unwrap(getattr(item, "function", None))
        if DAEMON_FIXTURES.intersection(getattr(item, "fixturenames", ())) or (
            isinstance(function, FunctionType) and _starts_daemon(function.__code__, function.__globals__, set())
        ):
            item.add_marker(pytest.mark.daemon)
    items.sort(key=lambda item: 2 if item.get_closest_marker("daemon") else 0 if item.get_closest_marker("slow") else 1)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)  # outside pytest-timeout's: time waiting for the lock is no hang
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    """Runs a daemon test, its fixtures' setup and teardown too, only while no other test process of this user runs
    one."""
    if item.get_closest_marker("daemon") is None:
        yield
        return
    with DAEMON_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # let go when the file closes
        yield


@pytest.fixture(scope="session", autouse=True)
def _state_directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keeps what the commands under test write by default out of the user's own state directory."""
    previous = os.environ.get("DEFENDER_HUB_STATE_DIR")
    os.environ["DEFENDER_HUB_STATE_DIR"] = str(tmp_path_factory.mktemp("state"))
    yield
    if previous is None:
        del os.environ["DEFENDER_HUB_STATE_DIR"]
    else:
        os.environ["DEFENDER_HUB_STATE_DIR"] = previous


@pytest.fixture
def reference_events() -> list[dict[str, Any]]:
    return read_jsonl(GOLDEN / "reference-events.jsonl")


@pytest.fixture
def reference_findings() -> list[dict[str, Any]]:
    return read_jsonl(GOLDEN / "reference-findings.jsonl")


@pytest.fixture
def convert() -> Convert:
    """Converts one event (a dict, or raw bytes) to its findings as the JSON `convert` writes, parsed."""

    def run(event: dict[str, Any] | bytes, **options: Any) -> list[dict[str, Any]]:
        data = event if isinstance(event, bytes) else msgspec.json.encode(event)
        findings = EventConverter(MappingOptions(**options)).findings(data)
        return [json.loads(encode_finding(finding)) for finding in findings]

    return run


@pytest.fixture
def unreachable() -> Iterator[str]:
    """An endpoint on loopback that refuses every connection while the test runs: its port is held bound and never
    listened on. (A port found free and let go could be taken by a server another test starts meanwhile, which then
    answers what was meant to find nobody: a refresh then waited on it for good.)"""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{held.getsockname()[1]}"


@pytest.fixture(scope="session")
def local_aws() -> Iterator[LocalAws]:
    """One local AWS (moto) for the session, as starting one takes seconds: each test names what it makes uniquely."""
    with LocalAws() as stack:
        yield stack


@pytest.fixture
def hub() -> Iterator[LocalSecurityHub]:
    """A strict local Security Hub of the test's own."""
    with LocalSecurityHub() as running:
        yield running
