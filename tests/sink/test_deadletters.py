"""Dead letters are kept durably with reason and origin, and a redrive forgets them only once handled."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from defender_hub.errors import DeadLetterError
from defender_hub.sink import DeadLetter, JsonlDeadLetters, Pending, RecordOrigin, SqsDeadLetters, open_dead_letters
from defender_hub.sink.deadletters import SQS_MESSAGE_BYTES

ORIGIN = RecordOrigin(shard_id="shardId-000000000001", sequence_number="4959", sub_sequence_number=2)


def test_both_kinds_of_letter_survive_the_file(tmp_path: Path) -> None:
    store = JsonlDeadLetters(tmp_path / "letters.jsonl")
    store.put(
        [
            *DeadLetter.for_finding(Pending.of({"Id": "f-1"}, [ORIGIN]), "refused", "InvalidInput"),
            DeadLetter.for_record(b"\xff not json", "not UTF-8", ORIGIN),
        ]
    )

    [(letters, forget)] = list(store.drain())

    assert letters[0].finding == {"Id": "f-1"}
    assert (letters[0].reason, letters[0].error_code, letters[0].origin) == ("refused", "InvalidInput", ORIGIN)
    assert letters[1].record_bytes() == b"\xff not json"
    assert letters[1].at.endswith("Z")
    forget()
    assert list(store.drain()) == []


def test_an_interrupted_redrive_leaves_its_letters_for_the_next(tmp_path: Path) -> None:
    store = JsonlDeadLetters(tmp_path / "letters.jsonl")
    store.put([DeadLetter.for_record(b"one", "down", ORIGIN)])
    next(iter(store.drain()))  # taken, never forgotten: the redrive died
    store.put([DeadLetter.for_record(b"two", "down", ORIGIN)])

    taken = [letter.record_bytes() for letters, _ in store.drain() for letter in letters]

    assert sorted(taken) == [b"one", b"two"]


def test_each_line_is_one_letter(tmp_path: Path) -> None:
    store = JsonlDeadLetters(tmp_path / "deep" / "letters.jsonl")
    store.put([DeadLetter.for_record(b"x\ny", "r", None)] * 3)

    assert [json.loads(line)["reason"] for line in store.path.read_text().splitlines()] == ["r"] * 3


def test_a_letter_too_large_for_sqs_is_refused_before_sending() -> None:
    store = SqsDeadLetters("http://127.0.0.1:1/000000000000/q", client=None)

    with pytest.raises(DeadLetterError, match="over SQS"):
        store.put([DeadLetter.for_record(b"x" * SQS_MESSAGE_BYTES, "too big", None)])


def test_the_destination_is_told_by_its_form(tmp_path: Path) -> None:
    assert isinstance(open_dead_letters(str(tmp_path / "l.jsonl"), lambda _: None), JsonlDeadLetters)
    assert isinstance(open_dead_letters("https://sqs.eu-west-1.amazonaws.com/1/q", lambda _: None), SqsDeadLetters)


def test_a_torn_last_line_is_kept_and_reported_and_the_rest_is_drained(tmp_path: Path) -> None:
    path = tmp_path / "letters.jsonl"
    store = JsonlDeadLetters(path)
    store.put([DeadLetter.for_record(b"one", "bad", ORIGIN), DeadLetter.for_record(b"two", "bad", ORIGIN)])
    with path.open("ab") as file:
        file.write(b'{"reason": "a crash mid-wri')  # what a kill during an append leaves

    drained = []
    for letters, forget in store.drain():
        drained += [letter.record_bytes() for letter in letters]
        forget()

    assert drained == [b"one", b"two"]
    [kept] = list(tmp_path.glob("letters.jsonl.unreadable*"))
    assert kept.read_bytes() == b'{"reason": "a crash mid-wri\n'
    assert store.unreadable == 1


def test_no_letter_is_lost_to_an_append_racing_a_redrive(tmp_path: Path) -> None:
    path = tmp_path / "letters.jsonl"
    writer, redriver = JsonlDeadLetters(path), JsonlDeadLetters(path)
    count = 400
    drained: list[bytes | None] = []

    def append() -> None:
        for number in range(count):
            writer.put([DeadLetter.for_record(str(number).encode(), "bad", ORIGIN)])

    appending = threading.Thread(target=append)
    appending.start()
    while appending.is_alive():
        for letters, forget in redriver.drain():
            drained += [letter.record_bytes() for letter in letters]
            forget()
    appending.join()
    for letters, forget in redriver.drain():
        drained += [letter.record_bytes() for letter in letters]
        forget()

    assert sorted(drained, key=lambda data: int(data or b"0")) == [str(n).encode() for n in range(count)]
