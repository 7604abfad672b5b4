"""`defender-hub put` and `findings`: your own events onto a stream, and what Security Hub holds of what defender-hub
imports."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from defender_hub.codecs.asff_rules import WORKFLOW_STATUSES
from defender_hub.commands.aws import aws_region
from defender_hub.commands.common import EXIT_FAILURES, EXIT_OK
from defender_hub.errors import ConfigError
from defender_hub.mapping.common import (
    PRODUCT_NAME_AUDIT,
    PRODUCT_NAME_CONFIG,
    PRODUCT_NAME_DETECT,
    PRODUCT_NAME_HEALTH,
)
from defender_hub.settings import said
from defender_hub.settings.resolving import add_flags

__all__ = ["SOURCES", "add", "findings_table"]

FINDINGS_SHOWN = 50
TITLE_SHOWN = 60
"""Characters of a title a table row shows: a terminal's width, with the other columns."""
ALL_SOURCES = "all"
SOURCES: Mapping[str, tuple[str, ...]] = {
    "device-defender": (PRODUCT_NAME_DETECT, PRODUCT_NAME_AUDIT),
    "config": (PRODUCT_NAME_CONFIG,),
    "health": (PRODUCT_NAME_HEALTH,),
}
"""The ProductName of each source's findings, by the name `findings --source` takes."""
PRODUCTS_SHOWN = {
    PRODUCT_NAME_DETECT: "Detect",
    PRODUCT_NAME_AUDIT: "Audit",
    PRODUCT_NAME_CONFIG: "Config",
    PRODUCT_NAME_HEALTH: "Health",
}
"""How a table row names each product."""


def add(commands: Any) -> None:
    """Declares `put` and `findings`."""
    put = commands.add_parser(
        "put",
        help="put Device Defender events from files on a stream (one JSON event a line)",
        description=(
            "Puts each line of the files (or of stdin) on the Kinesis stream as one record, keyed as the forwarder "
            "keys it (the thing, or the account for audits). Blank lines are skipped; a line that is not a JSON "
            "object is named on stderr and not put (exit status 1). Against the local stack (after `defender-hub "
            "local`, with its environment) or AWS."
        ),
    )
    put.add_argument("files", nargs="*", type=Path, metavar="FILE", help="JSON-lines files (default: stdin)")
    add_flags(put, "stream", required=("stream",))
    put.set_defaults(handler=_put)
    findings = commands.add_parser(
        "findings",
        help="list the findings defender-hub imports that Security Hub holds, newest first",
        description=(
            "Lists the findings of the sources defender-hub imports (Device Defender's Detect and Audit, AWS Config, "
            "AWS Health) that Security Hub holds, newest update first, with their workflow status (and compliance, "
            "where set): the local Security Hub with the local stack's environment, else your account's. "
            "GetFindings is limited to 3 requests a second; a long list takes a while."
        ),
    )
    findings.add_argument(
        "--source",
        choices=[*SOURCES, ALL_SOURCES],
        default=ALL_SOURCES,
        help=f"whose findings: device-defender (Detect and Audit), config, health or all (default: {ALL_SOURCES})",
    )
    findings.add_argument(
        "--workflow",
        choices=sorted(WORKFLOW_STATUSES),
        help="only findings of this Workflow.Status (default: any)",
    )
    findings.add_argument(
        "--limit", type=int, default=FINDINGS_SHOWN, help=f"at most this many findings (default: {FINDINGS_SHOWN})"
    )
    findings.add_argument("--archived", action="store_true", help="ARCHIVED findings too (default: ACTIVE only)")
    findings.add_argument("--json", action="store_true", help="the findings as JSON lines, not a table")
    findings.set_defaults(handler=_findings)


def _put(args: argparse.Namespace) -> int:
    import boto3  # noqa: PLC0415

    from defender_hub.loadgen import put_lines  # noqa: PLC0415 - boto3 for AWS commands only

    if not args.stream:
        raise ConfigError(f"put needs {said('stream')}")
    kinesis = boto3.client("kinesis", region_name=aws_region())
    try:
        kinesis.describe_stream_summary(StreamName=args.stream)
    except kinesis.exceptions.ResourceNotFoundException:
        raise ConfigError(f"there is no stream {args.stream!r} (`defender-hub local --put FILE` makes one)") from None
    missing = [str(path) for path in args.files if not path.is_file()]
    if missing:
        raise ConfigError(f"no such file: {', '.join(missing)}")
    opened = [path.open("rb") for path in args.files] if args.files else [sys.stdin.buffer]
    try:
        put, skipped = put_lines(kinesis, args.stream, opened, sys.stderr)
    finally:
        for file in opened:
            if file is not sys.stdin.buffer:
                file.close()
    print(f"defender-hub: put {put} events on {args.stream}; {skipped} lines not put", file=sys.stderr)
    return EXIT_FAILURES if skipped else EXIT_OK


def _status(doc: Mapping[str, Any], member: str) -> str:
    """The Status of a finding's Workflow or Compliance, or "" when it has none."""
    value = doc.get(member)
    return str(value.get("Status", "")) if isinstance(value, Mapping) else ""


def findings_table(findings: list[dict[str, Any]]) -> str:
    """The findings as a table: updated, state, workflow, compliance (when any finding has one), severity, product,
    title and resource."""
    compliance = any(_status(doc, "Compliance") for doc in findings)
    rows = [
        f"{'updated':20s} {'state':8s} {'workflow':10s} "
        + (f"{'compliance':13s} " if compliance else "")
        + f"{'severity':13s} {'product':7s} {'title':{TITLE_SHOWN}s} resource"
    ]
    for doc in findings:
        product = PRODUCTS_SHOWN.get(doc.get("ProductName", ""), "?")
        resource = (doc.get("Resources") or [{}])[0].get("Id", "")
        rows.append(
            f"{doc.get('UpdatedAt', '')[:19]:20s} {doc.get('RecordState', ''):8s} "
            f"{_status(doc, 'Workflow') or '-':10s} "
            + (f"{_status(doc, 'Compliance') or '-':13s} " if compliance else "")
            + f"{doc.get('Severity', {}).get('Label', ''):13s} {product:7s} "
            f"{doc.get('Title', '')[:TITLE_SHOWN]:{TITLE_SHOWN}s} {resource}"
        )
    return "\n".join(rows)


def _findings(args: argparse.Namespace) -> int:
    import boto3  # noqa: PLC0415

    if args.limit < 1:
        raise ConfigError("--limit must be 1 or more")
    products = [name for source, names in SOURCES.items() if args.source in (source, ALL_SOURCES) for name in names]
    filters: dict[str, Any] = {"ProductName": [{"Value": name, "Comparison": "EQUALS"} for name in products]}
    if not args.archived:
        filters["RecordState"] = [{"Value": "ACTIVE", "Comparison": "EQUALS"}]
    if args.workflow:
        filters["WorkflowStatus"] = [{"Value": args.workflow, "Comparison": "EQUALS"}]
    pages = (
        boto3.client("securityhub", region_name=aws_region())
        .get_paginator("get_findings")
        .paginate(
            Filters=filters,
            SortCriteria=[{"Field": "UpdatedAt", "SortOrder": "desc"}],
            PaginationConfig={"MaxItems": args.limit, "PageSize": min(100, args.limit)},
        )
    )
    found = [doc for page in pages for doc in page["Findings"]]
    if args.json:
        for doc in found:
            print(json.dumps(doc))
    else:
        print(findings_table(found))
        print(f"{len(found)} findings{' (--limit reached)' if len(found) == args.limit else ''}", file=sys.stderr)
    return EXIT_OK
