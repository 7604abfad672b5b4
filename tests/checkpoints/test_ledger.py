"""The ledger contract, on both back ends: entries round-trip, and no writer moves a finding or a check backwards."""

from __future__ import annotations

import random
import threading

from defender_hub.checkpoints import Ledger
from defender_hub.lifecycle import ACTIVE, ARCHIVED, CheckCompletion, LedgerEntry
from tests.checkpoints.conftest import another_connection


def entry(key: str, updated_ms: int, state: str = ACTIVE, check: str = "", task_ms: int = 0) -> LedgerEntry:
    return LedgerEntry(
        key=key, created_at="2026-01-01T00:00:00.000Z", updated_ms=updated_ms,
        record_state=state, fingerprint=f"f{updated_ms}", check=check, task_ms=task_ms,
        finding=b'{"Id": "%s"}' % key.encode(),
    )  # fmt: skip


def test_entries_round_trip_and_unknown_keys_are_absent(ledger: Ledger) -> None:
    written = [entry("arn|a", 5, check="arn|CHECK", task_ms=4), entry("arn|b", 7, ARCHIVED)]
    ledger.record(written)

    assert ledger.entries(["arn|a", "arn|b", "arn|missing"]) == {e.key: e for e in written}


def test_an_older_or_equal_version_never_replaces_a_newer_one(ledger: Ledger) -> None:
    ledger.record([entry("arn|a", 10)])
    ledger.record([entry("arn|a", 9), entry("arn|a", 10, ARCHIVED)])

    assert ledger.entries(["arn|a"])["arn|a"] == entry("arn|a", 10)


def test_concurrent_writers_cannot_move_updated_at_backwards(ledger: Ledger) -> None:
    keys = [f"arn|finding-{n}" for n in range(20)]
    versions = {key: list(range(1, 31)) for key in keys}

    def writer(seed: int) -> None:
        connection = another_connection(ledger)  # each writer its own, as each worker has
        chance = random.Random(seed)
        for _ in range(4):
            chosen = [entry(key, chance.choice(versions[key])) for key in chance.sample(keys, 10)]
            connection.record(chosen)
        connection.record(entry(key, 30 - seed) for key in keys)
        connection.close()

    writers = [threading.Thread(target=writer, args=(seed,)) for seed in range(4)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()

    assert {key: e.updated_ms for key, e in ledger.entries(keys).items()} == dict.fromkeys(keys, 30)


def test_a_check_keeps_its_latest_completion(ledger: Ledger) -> None:
    ledger.record_completions([CheckCompletion("arn|CHECK", "task-2", 200)])
    ledger.record_completions([CheckCompletion("arn|CHECK", "task-1", 100), CheckCompletion("arn|OTHER", "t", 5)])

    assert ledger.completions(["arn|CHECK", "arn|OTHER", "arn|NONE"]) == {
        "arn|CHECK": CheckCompletion("arn|CHECK", "task-2", 200),
        "arn|OTHER": CheckCompletion("arn|OTHER", "t", 5),
    }


def test_active_in_lists_only_the_active_findings_of_the_check(ledger: Ledger) -> None:
    ledger.record([
        entry("arn|a", 1, check="arn|CHECK", task_ms=1), entry("arn|b", 1, ARCHIVED, "arn|CHECK", 1),
        entry("arn|c", 1, check="arn|OTHER", task_ms=1), entry("arn|d", 1),
    ])  # fmt: skip

    assert [e.key for e in ledger.active_in("arn|CHECK")] == ["arn|a"]


def test_refresh_claims_keep_a_second_sweep_off_and_lapse(ledger: Ledger) -> None:
    ledger.record([entry("arn|old", 10), entry("arn|new", 500), entry("arn|gone", 10, ARCHIVED)])
    due = ledger.due_for_refresh(100, now_ms=1000, limit=10)
    assert [e.key for e in due] == ["arn|old"]

    assert ledger.claim(due[0], now_ms=1000, until_ms=2000)
    assert not another_connection(ledger).claim(due[0], now_ms=1500, until_ms=2500)
    assert ledger.due_for_refresh(100, now_ms=1500, limit=10) == []
    assert [e.key for e in ledger.due_for_refresh(100, now_ms=2000, limit=10)] == ["arn|old"]  # the claim lapsed


def test_a_claim_fails_when_the_finding_changed_since_it_was_read(ledger: Ledger) -> None:
    ledger.record([entry("arn|a", 10)])
    [seen] = ledger.due_for_refresh(100, now_ms=1000, limit=10)
    ledger.record([entry("arn|a", 20)])

    assert not ledger.claim(seen, now_ms=1000, until_ms=2000)
