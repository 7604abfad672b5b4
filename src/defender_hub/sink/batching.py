"""Findings to requests: coalesced by Id, split within Security Hub's per-request limits. Pure."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec

from defender_hub.codecs.asff import Finding, encode_document
from defender_hub.codecs.asff_rules import MAX_FINDINGS_PER_REQUEST, MAX_REQUEST_BYTES

__all__ = [
    "REQUEST_OVERHEAD",
    "SEPARATOR",
    "EncodedFinding",
    "MappedFinding",
    "RecordOrigin",
    "as_document",
    "coalesce",
    "encode_body",
    "requests",
    "take_fitting",
    "take_request",
]

Item = TypeVar("Item")
_as_json = msgspec.json.Decoder(dict[str, Any]).decode
REQUEST_OVERHEAD = len(b'{"Findings": []}')
"""The bytes a BatchImportFindings request adds to its findings' bodies."""
SEPARATOR = len(b", ")
"""The bytes between two findings of a request."""


class RecordOrigin(msgspec.Struct, frozen=True, omit_defaults=True, gc=False):
    """Where a finding came from, so a dead letter can be traced and re-driven. Never in a reference cycle (text and
    numbers), so the garbage collector need not track the many a batch makes."""

    shard_id: str | None = None
    sequence_number: str | None = None
    sub_sequence_number: int | None = None
    line: int | None = None


@dataclass(frozen=True, slots=True)
class MappedFinding:
    """A finding handed to a sink, as a source's mapping made it (a `Finding`) or as ASFF parsed from JSON (`import`,
    `redrive`), with where it came from and what the caller keeps with it."""

    finding: Finding | Mapping[str, Any]
    origin: RecordOrigin | None = None
    tag: Any = None
    """What the caller keeps with this version of the finding (the lifecycle's facts): `coalesce` hands it on with
    the version that wins."""


@dataclass(slots=True)
class EncodedFinding:
    """A finding encoded as a request carries it: its document, its body and size there, and every origin it stands
    for (after `coalesce`, those of the versions it replaced too)."""

    document: dict[str, Any] | None
    """The finding as parsed JSON; None until asked for (`doc`) where only its body came, as to the worker's
    sender."""
    encoded: bytes | None = None
    """Its body once made (`body`); None until then: most findings a replay reads are never sent."""
    origins: list[RecordOrigin | None] = field(default_factory=list)
    version_ms: int | None = None
    """The time of the news it carries, when that is not its UpdatedAt (the lifecycle moves UpdatedAt past earlier
    sends): a dead letter keeps it, so a redrive sends the news, not a time."""
    failures: int = 0
    """Times Security Hub failed this finding alone (FailedFindings), for the sink to stop trying at some point."""
    tag: Any = None
    """The `MappedFinding.tag` of the version it is."""
    finding_id: str | None = None
    """Its Id where that came with the body; else read from the document."""
    compact: bytes | None = None
    """Its document as compact JSON (`encode_document`): None until its body is made (`body`), or where msgspec can't
    write the document."""

    def __post_init__(self) -> None:
        if self.document is None and self.encoded is None:
            raise ValueError("an encoded finding needs its document or its body")  # each is made from the other

    @property
    def doc(self) -> dict[str, Any]:
        """The finding as parsed JSON, decoded from its body the first time where none came with it."""
        if self.document is None:
            self.document = _as_json(self.body)
        return self.document

    @property
    def body(self) -> bytes:
        """The finding as the request carries it (`encode_body`), whose size is what Security Hub's limits apply
        to; encoded the first time it is asked for."""
        if self.encoded is None:
            self.compact, self.encoded = _compact_and_body(self.doc)
        return self.encoded

    @classmethod
    def of(
        cls, doc: dict[str, Any], origins: list[RecordOrigin | None], version_ms: int | None = None
    ) -> EncodedFinding:
        """The finding `doc`, to be encoded as botocore will send it once its body is asked for."""
        return cls(doc, None, origins, version_ms)

    @property
    def id(self) -> str:
        """The finding's Id, or "" when it has none (the strict check will say so)."""
        value = self.finding_id if self.finding_id is not None else self.doc.get("Id")
        return value if isinstance(value, str) else ""


def encode_body(doc: Mapping[str, Any]) -> bytes:
    """`doc` as botocore's encoding writes it: json.dumps' defaults, a space after each separator, non-ASCII and DEL
    escaped.

    msgspec writes it, reformatted with those spaces, at a third of json.dumps' time (the body is made for every
    finding sent), where that gives json.dumps' bytes: text of printable ASCII; json.dumps writes the rest. Floats
    alone may differ, and the mappings make none: msgspec writes the shortest form (1e-7 for json.dumps' 1e-07, 0.00001
    for 1e-05) and NaN and the infinities as null (json.dumps' NaN is no JSON, and Security Hub would refuse it).
    """
    return _compact_and_body(doc)[1]


def _compact_and_body(doc: Mapping[str, Any]) -> tuple[bytes | None, bytes]:
    """`doc` as compact JSON (`encode_document`; None where msgspec can't write it) and as `encode_body` writes it:
    the ledger keeps the compact JSON of what it records, so it is kept rather than written twice."""
    try:
        compact = encode_document(doc)
    except (TypeError, UnicodeEncodeError):  # a lone surrogate, say: json.dumps escapes it, or says what is wrong
        return None, json.dumps(doc).encode()
    body = msgspec.json.format(compact, indent=0)
    if body.isascii() and b"\x7f" not in body:
        return compact, body
    return compact, json.dumps(doc).encode()


def _instant(value: Any) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return datetime.min.replace(tzinfo=UTC)  # no usable time: loses to any finding that has one
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _updated_at(doc: Mapping[str, Any], _tag: Any) -> Any:
    return _instant(doc.get("UpdatedAt"))


def as_document(finding: Finding | Mapping[str, Any]) -> dict[str, Any]:
    """The finding as parsed JSON would give it: a mapped `Finding` as builtins, its tuples lists; a mapping copied."""
    if not isinstance(finding, Finding):
        return dict(finding)
    # msgspec's builtins without the JSON text between: a third of the time, for what every finding goes through.
    # They keep a Struct's tuples, which JSON would make lists; the Types are the only ones (a test holds this).
    doc: dict[str, Any] = msgspec.to_builtins(finding)
    doc["Types"] = list(doc["Types"])
    provider_fields = doc["FindingProviderFields"]
    provider_fields["Types"] = list(provider_fields["Types"])
    return doc


def coalesce(
    findings: Iterable[MappedFinding],
    newness: Callable[[Mapping[str, Any], Any], Any] = _updated_at,
    *,
    own: bool = False,
) -> list[EncodedFinding]:
    """Returns one encoded finding per (ProductArn, Id), the newest winning and the later one on a tie.

    Newest by `newness` of a version and its tag (by default the latest UpdatedAt). The winner keeps the earliest
    CreatedAt of the versions (the finding was first seen then), carries its own tag, and stands for the origins of
    those it replaced: once it is delivered, so are they. With `own`, the findings are dicts the caller hands over:
    each winner is one of them, not a copy.
    """
    chosen: dict[tuple[Any, Any], EncodedFinding] = {}
    for item in findings:
        doc = item.finding if own and isinstance(item.finding, dict) else as_document(item.finding)
        product_arn, finding_id = doc.get("ProductArn"), doc.get("Id")
        # An Id or ProductArn that is no text names no finding: the finding goes on alone, to be screened and
        # dead-lettered as invalid, rather than stop the delivery as an unhashable key.
        key: tuple[Any, Any] = (
            (product_arn, finding_id)
            if isinstance(product_arn, str | None) and isinstance(finding_id, str | None)
            else (None, id(doc))
        )
        previous = chosen.get(key)
        if previous is None:
            chosen[key] = encoded = EncodedFinding.of(doc, [item.origin])
            encoded.tag = item.tag
            continue
        if newness(doc, item.tag) < newness(previous.doc, previous.tag):
            winner, loser = previous, doc
            winner.origins.append(item.origin)
        else:
            winner, loser = EncodedFinding(doc, None, [*previous.origins, item.origin], tag=item.tag), previous.doc
            del chosen[key]  # re-inserted below, so the request order follows the latest version
            chosen[key] = winner
        if "CreatedAt" in loser and _instant(loser["CreatedAt"]) < _instant(winner.doc.get("CreatedAt")):
            winner.doc["CreatedAt"] = loser["CreatedAt"]
            winner.encoded = winner.compact = None  # made again from the document, when asked for
    return list(chosen.values())


def requests(encoded: Sequence[EncodedFinding]) -> Iterator[list[EncodedFinding]]:
    """Yields the findings in order, grouped into requests of at most 100 findings and 6 MB."""
    queue = deque(encoded)
    while queue:
        yield take_request(queue)


def take_request(queue: deque[EncodedFinding]) -> list[EncodedFinding]:
    """Takes from the front of `queue` the findings of one request: as many as fit in 100 findings and 6 MB."""
    return take_fitting(queue, _body_of)


def take_fitting(
    queue: deque[Item], body_of: Callable[[Item], bytes], key_of: Callable[[Item], Hashable] | None = None
) -> list[Item]:
    """Takes from the front of `queue` the items of one request: as many as fit in 100 findings and 6 MB, each item
    the size of its `body_of` there. With `key_of`, no key goes twice: an item whose key is taken already stays at the
    front, for the next request (two versions of one finding, say)."""
    batch: list[Item] = []
    kept: list[Item] = []
    keys: set[Hashable] = set()
    size = REQUEST_OVERHEAD
    while queue:
        item_size = len(body_of(queue[0])) + SEPARATOR
        if batch and (len(batch) == MAX_FINDINGS_PER_REQUEST or size + item_size > MAX_REQUEST_BYTES):
            break
        item = queue.popleft()
        if key_of is not None:
            key = key_of(item)
            if key in keys:
                kept.append(item)
                continue
            keys.add(key)
        batch.append(item)
        size += item_size
    queue.extendleft(reversed(kept))
    return batch


def _body_of(item: EncodedFinding) -> bytes:
    return item.body
