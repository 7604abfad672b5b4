"""Dead letters are kept durably with reason and origin, and a redrive forgets them only once handled."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from botocore.config import Config

from defender_hub.errors import DeadLetterError
from defender_hub.local.aws import LocalAws
from defender_hub.sink import (
    DeadLetter,
    EncodedFinding,
    JsonlDeadLetters,
    RecordOrigin,
    SqsDeadLetters,
    open_dead_letters,
)
from defender_hub.sink.deadletters import S3Overflow
from tests.helpers import local_client, unique

ORIGIN = RecordOrigin(shard_id="shardId-000000000001", sequence_number="4959", sub_sequence_number=2)


def test_both_kinds_of_letter_survive_the_file(tmp_path: Path) -> None:
    store = JsonlDeadLetters(tmp_path / "letters.jsonl")
    store.put(
        [
            *DeadLetter.for_finding(EncodedFinding.of({"Id": "f-1"}, [ORIGIN]), "refused", "InvalidInput"),
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


@pytest.mark.slow
def test_letters_too_large_for_a_batch_or_the_queue_are_kept_and_come_back(local_aws: LocalAws) -> None:
    sqs = local_client("sqs", local_aws.endpoint_url)
    s3 = local_client("s3", local_aws.endpoint_url, config=Config(s3={"addressing_style": "path"}))
    queue = sqs.create_queue(QueueName=unique("dead-letters"), Attributes={"MaximumMessageSize": "262144"})["QueueUrl"]
    bucket = unique("defender-hub-overflow")
    s3.create_bucket(Bucket=bucket)
    store = SqsDeadLetters(queue, sqs, S3Overflow(f"s3://{bucket}/letters", s3))
    # Ten 150 KiB records (200 KiB as base64: two can't share a batch) and one of 600 KiB (too large for the queue)
    records = [bytes([65 + n]) * 150 * 1024 for n in range(10)] + [b"Z" * 600 * 1024]
    store.put(
        [DeadLetter.for_record(data, "poison", RecordOrigin("shard-1", str(n))) for n, data in enumerate(records)]
    )
    assert next(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]).startswith("letters/")

    drained: list[bytes | None] = []
    for letters, forget in store.drain():
        drained += [letter.record_bytes() for letter in letters]
        forget()

    assert sorted(drained, key=lambda data: data or b"") == sorted(records)
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert (
        sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"][
            "ApproximateNumberOfMessages"
        ]
        == "0"
    )


def test_a_letter_too_large_for_the_queue_without_an_overflow_says_what_to_configure(local_aws: LocalAws) -> None:
    sqs = local_client("sqs", local_aws.endpoint_url)
    queue = sqs.create_queue(QueueName=unique("small"), Attributes={"MaximumMessageSize": "1024"})["QueueUrl"]

    with pytest.raises(DeadLetterError, match="--dead-letter-overflow"):
        SqsDeadLetters(queue, sqs).put([DeadLetter.for_record(b"x" * 2048, "too big", None)])


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


def parked_and_poison() -> list[DeadLetter]:
    parked = DeadLetter.for_finding(
        EncodedFinding.of({"Id": "f-1"}, [ORIGIN]), "refused", "InvalidAccess", "111/us-east-1"
    )
    return [DeadLetter.for_record(b"poison", "not JSON", ORIGIN), *parked, DeadLetter.for_record(b"two", "x", None)]


def test_a_selective_drain_takes_the_chosen_letters_and_leaves_the_others_in_place(tmp_path: Path) -> None:
    store = JsonlDeadLetters(tmp_path / "letters.jsonl")
    store.put(parked_and_poison())

    [(letters, forget)] = list(store.drain(lambda letter: letter.lane is not None))
    forget()

    assert [letter.finding for letter in letters] == [{"Id": "f-1"}]
    assert list(store.drain(lambda letter: letter.lane is not None)) == []
    assert [letter.record_bytes() for letters, _ in store.drain() for letter in letters] == [b"poison", b"two"]


def test_a_selective_drain_of_a_queue_leaves_the_others_visible(local_aws: LocalAws) -> None:
    sqs = local_client("sqs", local_aws.endpoint_url)
    store = SqsDeadLetters(sqs.create_queue(QueueName=unique("dead-letters"))["QueueUrl"], sqs)
    store.put(parked_and_poison())

    chosen = []
    for letters, forget in store.drain(lambda letter: letter.lane is not None):
        chosen += letters
        forget()
    rest = [letter.record_bytes() for letters, _ in store.drain() for letter in letters]

    assert [letter.lane for letter in chosen] == ["111/us-east-1"]
    assert sorted(rest) == [b"poison", b"two"]  # type: ignore[type-var]


def test_a_drain_of_a_queue_ends_though_what_it_drains_is_put_back_again(local_aws: LocalAws) -> None:
    sqs = local_client("sqs", local_aws.endpoint_url)
    store = SqsDeadLetters(sqs.create_queue(QueueName=unique("dead-letters"))["QueueUrl"], sqs)
    store.put(parked_and_poison() * 4)
    rounds: list[int] = []

    def parked_again() -> None:  # a lane still refused: each group of parked letters is parked again
        for letters, forget in store.drain(lambda letter: letter.lane is not None):
            store.put(letters)
            forget()
            rounds.append(len(letters))

    drain = threading.Thread(target=parked_again, daemon=True)
    drain.start()
    drain.join(timeout=60)

    assert not drain.is_alive(), f"the drain never ended: {len(rounds)} rounds"
    assert sum(rounds) == 4
    left = [letter for letters, _ in store.drain() for letter in letters]
    assert sorted(letter.lane or "" for letter in left) == [""] * 8 + ["111/us-east-1"] * 4
