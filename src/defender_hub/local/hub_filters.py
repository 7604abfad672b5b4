"""GetFindings' request for the local Security Hub: its filters, sort criteria and pages, as the service reads them."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from defender_hub.local.hub_core import instant, invalid_input

__all__ = ["DATE_FILTERS", "STRING_FILTERS", "FindingsQuery", "parse_query"]

Getter = Callable[[Mapping[str, Any]], Any]


def _member(*path: str) -> Getter:
    """Reads the member at `path` of a finding, None where a step is missing."""

    def read(doc: Mapping[str, Any]) -> Any:
        value: Any = doc
        for name in path:
            value = value.get(name) if isinstance(value, Mapping) else None
        return value

    return read


STRING_FILTERS: Mapping[str, Getter] = {
    name: _member(name) for name in ("Id", "ProductArn", "ProductName", "AwsAccountId", "GeneratorId", "RecordState")
} | {
    "Title": _member("Title"),
    "WorkflowStatus": _member("Workflow", "Status"),
    "ComplianceStatus": _member("Compliance", "Status"),
}
"""The string filters it implements, by the service's filter names, and the member of a finding each one reads."""
DATE_FILTERS = frozenset({"CreatedAt", "UpdatedAt"})
MAP_FILTERS = frozenset({"ProductFields"})
MAX_RESULTS = 100


def _string_match(value: Any, filters: list[Mapping[str, Any]]) -> bool:
    """Applies Security Hub's StringFilter semantics: positive filters are ORed, negative ones ANDed."""
    text = "" if value is None else str(value)
    positive, matched = False, False
    for spec in filters:
        wanted, comparison = str(spec.get("Value", "")), spec.get("Comparison", "EQUALS")
        outcome = {
            "EQUALS": text == wanted,
            "PREFIX": text.startswith(wanted),
            "CONTAINS": wanted in text,
            "NOT_EQUALS": text != wanted,
            "PREFIX_NOT_EQUALS": not text.startswith(wanted),
            "NOT_CONTAINS": wanted not in text,
        }.get(comparison)
        if outcome is None:
            raise invalid_input(f"unknown Comparison {comparison}")
        if comparison.startswith(("NOT_", "PREFIX_NOT")):
            if not outcome:
                return False
        else:
            positive = True
            matched = matched or outcome
    return matched or not positive


def _date_match(value: Any, filters: list[Mapping[str, Any]], now: datetime) -> bool:
    if value is None:
        return False
    moment = instant(value)
    for spec in filters:
        if "DateRange" in spec:
            days = spec["DateRange"].get("Value", 0)
            if moment < now - timedelta(days=days):
                return False
        if "Start" in spec and moment < instant(spec["Start"]):
            return False
        if "End" in spec and moment > instant(spec["End"]):
            return False
    return True


def _map_match(fields: Mapping[str, str], filters: list[Mapping[str, Any]]) -> bool:
    for spec in filters:
        value = fields.get(spec.get("Key", ""))
        comparison = spec.get("Comparison", "EQUALS")
        if not _string_match(value, [{"Value": spec.get("Value", ""), "Comparison": comparison}]):
            return False
    return True


def _sort_key(field_name: Any) -> Callable[[Mapping[str, Any]], Any]:
    """How GetFindings' SortCriteria order findings by `field_name`: dates as instants, the rest as text."""
    if not isinstance(field_name, str):
        raise invalid_input("SortCriteria' Field must be a string")
    if field_name in DATE_FILTERS:
        return lambda doc: instant(doc[field_name]) if doc.get(field_name) else datetime.min.replace(tzinfo=UTC)
    if field_name in STRING_FILTERS:
        read = STRING_FILTERS[field_name]
        return lambda doc: str(read(doc) or "")
    raise invalid_input(f"the local Security Hub can't sort by {field_name}")


@dataclass(frozen=True)
class FindingsQuery:
    """A checked GetFindings request."""

    filters: Mapping[str, list[Mapping[str, Any]]]
    max_results: int
    offset: int
    sorts: list[tuple[Callable[[Mapping[str, Any]], Any], bool]]
    """Sort keys, each with whether it is descending, in the order they are applied (the first criterion last)."""

    def matches(self, doc: Mapping[str, Any], now: datetime) -> bool:
        """Whether `doc` passes every filter, date ranges counted back from `now`."""
        for name, specs in self.filters.items():
            if name in STRING_FILTERS:
                passed = _string_match(STRING_FILTERS[name](doc), specs)
            elif name in DATE_FILTERS:
                passed = _date_match(doc.get(name), specs, now)
            else:
                passed = _map_match(doc.get(name) or {}, specs)
            if not passed:
                return False
        return True

    def page(self, matching: list[dict[str, Any]]) -> dict[str, Any]:
        """Sorts the matching findings and answers the page asked for, with the next page's token."""
        ordered = list(matching)
        for key, descending in self.sorts:
            ordered.sort(key=key, reverse=descending)
        page = ordered[self.offset : self.offset + self.max_results]
        response: dict[str, Any] = {"Findings": copy.deepcopy(page)}
        if self.offset + self.max_results < len(ordered):
            response["NextToken"] = base64.b64encode(str(self.offset + self.max_results).encode()).decode()
        return response


def parse_query(body: bytes) -> FindingsQuery:
    """Reads a GetFindings request body; raises HubError for what it refuses, a filter it does not implement among
    them (refused, not ignored)."""
    try:
        return _parsed_query(json.loads(body or b"{}"))
    except (TypeError, ValueError, AttributeError) as exc:  # a member of the wrong shape: the service refuses it
        raise invalid_input(f"malformed GetFindings request: {type(exc).__name__}: {exc}") from None


def _parsed_query(request: Any) -> FindingsQuery:
    filters: Any = (request.get("Filters") or {}) if isinstance(request, dict) else None
    if not isinstance(filters, dict) or not all(
        isinstance(specs, list) and all(isinstance(spec, dict) for spec in specs) for specs in filters.values()
    ):
        raise invalid_input("a GetFindings request is an object, and its Filters an object of lists of filters")
    unknown = set(filters) - set(STRING_FILTERS) - DATE_FILTERS - MAP_FILTERS
    if unknown:
        raise invalid_input(f"the local Security Hub does not implement the filter(s) {', '.join(sorted(unknown))}")
    max_results = int(request.get("MaxResults") or MAX_RESULTS)
    if not 1 <= max_results <= MAX_RESULTS:
        raise invalid_input(f"MaxResults must be 1 to {MAX_RESULTS}")
    offset = int(base64.b64decode(request["NextToken"])) if request.get("NextToken") else 0
    # The first criterion sorts last, so that it wins; each is checked before anything is answered.
    sorts = [
        (_sort_key(criterion.get("Field")), criterion.get("SortOrder") == "desc")
        for criterion in reversed(request.get("SortCriteria") or [])
    ]
    return FindingsQuery(filters, max_results, offset, sorts)
