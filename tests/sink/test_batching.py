"""Coalescing by Id and splitting into requests within Security Hub's limits."""

from __future__ import annotations

import json
from typing import Any

import msgspec

from defender_hub.codecs.asff import Finding, encode_finding
from defender_hub.convert import EventConverter
from defender_hub.mapping import MappingOptions
from defender_hub.mapping.common import (
    PRODUCT_NAME_AUDIT,
    PRODUCT_NAME_CONFIG,
    PRODUCT_NAME_DETECT,
    PRODUCT_NAME_HEALTH,
)
from defender_hub.sink.batching import (
    EncodedFinding,
    MappedFinding,
    RecordOrigin,
    as_document,
    coalesce,
    encode_body,
    requests,
)
from tests.helpers import GOLDEN


def finding(finding_id: str, updated: str, title: str = "t", product: str = "p", size: int = 0) -> dict[str, Any]:
    doc = {"ProductArn": product, "Id": finding_id, "UpdatedAt": updated, "Title": title}
    if size:
        doc["Description"] = "x" * size
    return doc


def origin(n: int) -> RecordOrigin:
    return RecordOrigin(shard_id="shard-0", sequence_number=str(n))


def test_the_latest_version_of_a_finding_wins_and_stands_for_the_others() -> None:
    coalesced = coalesce(
        [
            MappedFinding(finding("a", "2024-01-02T00:00:00.000Z", "newest"), origin(1)),
            MappedFinding(finding("a", "2024-01-01T00:00:00.000Z", "older"), origin(2)),
            MappedFinding(finding("b", "2024-01-01T00:00:00.000Z"), origin(3)),
        ]
    )

    assert [(p.doc["Id"], p.doc["Title"]) for p in coalesced] == [("a", "newest"), ("b", "t")]
    assert coalesced[0].origins == [origin(1), origin(2)]


def test_the_winner_keeps_the_earliest_created_at_whichever_order_they_come_in() -> None:
    first = finding("a", "2024-01-01T00:00:00.000Z") | {"CreatedAt": "2024-01-01T00:00:00.000Z"}
    second = finding("a", "2024-01-02T00:00:00.000Z", "newest") | {"CreatedAt": "2024-01-02T00:00:00.000Z"}

    for order in ([first, second], [second, first]):
        [encoded] = coalesce([MappedFinding(doc, origin(n)) for n, doc in enumerate(order)])
        assert (encoded.doc["Title"], encoded.doc["CreatedAt"]) == ("newest", "2024-01-01T00:00:00.000Z")
        assert json.loads(encoded.body) == encoded.doc


def test_on_a_tie_the_later_one_wins() -> None:
    coalesced = coalesce(
        [
            MappedFinding(finding("a", "2024-01-01T00:00:00Z", "first")),
            MappedFinding(finding("a", "2024-01-01T00:00:00.000+00:00", "second")),
        ]
    )

    assert [p.doc["Title"] for p in coalesced] == ["second"]


def test_the_winner_carries_its_own_tag_and_is_chosen_by_the_newness_of_each_version_and_tag() -> None:
    older_but_ranked_higher = MappedFinding(finding("a", "2024-01-02T00:00:00.000Z", "tagged 2"), origin(1), 2)
    newer_but_ranked_lower = MappedFinding(finding("a", "2024-01-03T00:00:00.000Z", "tagged 1"), origin(2), 1)

    for order in ([older_but_ranked_higher, newer_but_ranked_lower], [newer_but_ranked_lower, older_but_ranked_higher]):
        [encoded] = coalesce(order, lambda _doc, rank: rank, own=True)
        assert (encoded.doc["Title"], encoded.tag) == ("tagged 2", 2)
        assert sorted(encoded.origins, key=str) == [origin(1), origin(2)]


def test_the_same_id_under_another_product_is_another_finding() -> None:
    assert (
        len(
            coalesce(
                [MappedFinding(finding("a", "2024", product="p1")), MappedFinding(finding("a", "2024", product="p2"))]
            )
        )
        == 2
    )


def test_the_body_is_what_botocore_sends() -> None:
    [encoded] = coalesce([MappedFinding(finding("a", "2024", title="设备"))])

    assert encoded.body == json.dumps(encoded.doc).encode()
    assert b"\\u8bbe" in encoded.body  # non-ASCII escaped, as on the wire


def test_requests_hold_at_most_100_findings() -> None:
    coalesced = coalesce(MappedFinding(finding(str(i), "2024")) for i in range(250))

    assert [len(batch) for batch in requests(coalesced)] == [100, 100, 50]


def test_requests_stay_under_6_mb() -> None:
    coalesced = coalesce(MappedFinding(finding(str(i), "2024", size=200_000)) for i in range(70))

    batches = list(requests(coalesced))

    assert len(batches) == 3
    for batch in batches:
        assert len(json.dumps({"Findings": [p.doc for p in batch]}).encode()) <= 6_000_000
    assert [p.doc["Id"] for batch in batches for p in batch] == [str(i) for i in range(70)]


GOLDEN_EVENTS = ("reference-events.jsonl", "config-events.jsonl", "health-events.jsonl")


def golden_findings() -> list[Finding]:
    """Every finding the golden events of the three sources map to."""
    converter = EventConverter(MappingOptions())
    return [
        finding
        for name in GOLDEN_EVENTS
        for line in (GOLDEN / name).read_bytes().splitlines()
        if line.strip()
        for finding in converter.findings(line)
    ]


def test_a_mapped_findings_document_is_what_its_json_parses_to() -> None:
    findings = golden_findings()

    assert {finding.product_name for finding in findings} == {
        PRODUCT_NAME_DETECT, PRODUCT_NAME_AUDIT, PRODUCT_NAME_CONFIG, PRODUCT_NAME_HEALTH
    }  # fmt: skip
    for finding in findings:
        assert as_document(finding) == json.loads(encode_finding(finding))  # lists, not tuples, as JSON has them


def test_a_body_is_json_dumps_defaults_byte_for_byte() -> None:
    docs = [as_document(finding) for finding in golden_findings()]
    docs += [
        {"Id": "ascii", "Title": 'tab\tquote" slash\\ nul\x00 del\x7f', "N": [1, -2, 0.5, True, None, {}]},
        {"Id": "non-ascii", "Title": "caf\u00e9 \u2028 \U0001f600"},
        {"Id": "lone-surrogate", "Title": "\ud800"},
    ]

    for doc in docs:
        assert encode_body(doc) == json.dumps(doc).encode()


def test_a_body_keeps_the_compact_json_it_was_made_from_which_is_msgspec_s_of_the_document() -> None:
    docs = [as_document(finding) for finding in golden_findings()]
    docs += [{"Id": "non-ascii", "Title": "caf\u00e9 \u2028 \U0001f600"}, {"Id": "del", "Title": "del\x7f"}]

    for doc in docs:
        encoded = EncodedFinding.of(doc, [None])
        assert encoded.compact is None  # nothing made before the body is asked for
        assert encoded.body == encode_body(doc)
        assert encoded.compact == msgspec.json.encode(doc)

    surrogate = EncodedFinding.of({"Id": "lone-surrogate", "Title": "\ud800"}, [None])
    assert surrogate.body == json.dumps(surrogate.doc).encode()
    assert surrogate.compact is None  # msgspec can't write it: whoever needs it says so itself
