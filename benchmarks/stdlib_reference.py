"""The same mapping as defender-hub, written as a hand-rolled Lambda would: stdlib json, dicts, no memo.

The benchmark's comparison point; `bench_convert.py` checks that it produces exactly defender-hub's findings
before it times anything. Run as a program it converts stdin to stdout like `defender-hub convert`.
It shares defender-hub's pure helpers (text cleaning, time formatting, the check and resource tables), so the
difference measured is the wire handling and the data structures, not the helpers.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from defender_hub.codecs.asff_rules import SEVERITY_LABELS
from defender_hub.mapping.aws import console_url, iot_arn, product_arn, resolve_origin, url_part
from defender_hub.mapping.checks import check_severity, check_types
from defender_hub.mapping.common import finding_id
from defender_hub.mapping.detect import trigger_text
from defender_hub.mapping.options import MappingOptions
from defender_hub.mapping.resources import audited_resource
from defender_hub.text import bounded, clean
from defender_hub.timestamps import format_iso, to_epoch_ms

OPTIONS = MappingOptions()
STATES = {
    "in-alarm": "is in alarm for",
    "alarm-cleared": "is no longer in alarm (cleared) for",
    "alarm-invalidated": "is no longer in alarm (invalidated) for",
}


def frame(origin: Any, product: str, finding: dict[str, Any], label: str, types: list[str]) -> dict[str, Any]:
    severity = {"Label": label}
    return {
        "SchemaVersion": "2018-10-08",
        "Id": finding["Id"],
        "ProductArn": product_arn(origin),
        "ProductName": product,
        "CompanyName": OPTIONS.company_name,
        "GeneratorId": finding["GeneratorId"],
        "AwsAccountId": origin.account_id,
        "Types": types,
        "CreatedAt": finding["CreatedAt"],
        "UpdatedAt": finding["UpdatedAt"],
        "Severity": severity,
        "Title": bounded(finding["Title"], 256),
        "Description": bounded(finding["Description"], 1024),
        "Resources": finding["Resources"],
        "RecordState": finding["RecordState"],
        "FindingProviderFields": {"Severity": severity, "Types": types},
        "SourceUrl": finding["SourceUrl"],
        "ProductFields": finding["ProductFields"],
    }


def value_text(value: dict[str, Any] | None) -> tuple[str, str] | None:
    if not value:
        return None
    for key, name in (("count", "Count"), ("number", "Number")):
        if value.get(key) is not None:
            return name, str(value[key]) if key == "count" else f"{value[key]:g}"
    for key, name in (("numbers", "Numbers"), ("cidrs", "Cidrs"), ("ports", "Ports"), ("strings", "Strings")):
        if value.get(key) is not None:
            items = value[key]
            shown = [clean(f"{item:g}" if isinstance(item, float) else str(item), 64) for item in items[:64]]
            more = f", … {len(items) - 64} more" if len(items) > 64 else ""
            return name, bounded(f"[{', '.join(shown)}{more}]", 2048)
    return None


def detect(event: dict[str, Any]) -> list[dict[str, Any]]:
    origin = resolve_origin(event.get("accountId"), event.get("region"), OPTIONS)
    behavior = event["behavior"]
    criteria = behavior.get("criteria") or {}
    kind = (
        "ML" if "mlDetectionConfig" in criteria else "STATISTICAL" if "statisticalThreshold" in criteria else "STATIC"
    )
    thing = clean(event["thingName"], 128)
    profile = clean(event["securityProfileName"], 128)
    name = clean(behavior["name"], 128)
    event_type = event["violationEventType"]
    fields = {"SecurityProfileName": profile, "BehaviorName": name, "BehaviorCriteriaType": kind}
    if behavior.get("metric"):
        fields["MetricName"] = clean(behavior["metric"], 128)
    if behavior.get("suppressAlerts") is not None:
        fields["SuppressAlerts"] = "true" if behavior["suppressAlerts"] else "false"
    if behavior.get("metricDimension"):
        fields["DimensionName"] = clean(behavior["metricDimension"]["dimensionName"], 128)
        if behavior["metricDimension"].get("operator"):
            fields["DimensionOperator"] = clean(behavior["metricDimension"]["operator"], 64)
    if criteria.get("comparisonOperator"):
        fields["ComparisonOperator"] = clean(criteria["comparisonOperator"], 64)
    for key, field in (
        ("durationSeconds", "DurationSeconds"),
        ("consecutiveDatapointsToAlarm", "ConsecutiveDatapointsToAlarm"),
        ("consecutiveDatapointsToClear", "ConsecutiveDatapointsToClear"),
    ):
        if criteria.get(key) is not None:
            fields[field] = str(criteria[key])
    threshold = value_text(criteria.get("value"))
    if threshold:
        fields[threshold[0]] = threshold[1]
    if (criteria.get("statisticalThreshold") or {}).get("statistic"):
        fields["Statistic"] = clean(criteria["statisticalThreshold"]["statistic"], 64)
    if (criteria.get("mlDetectionConfig") or {}).get("confidenceLevel"):
        fields["ConfidenceLevel"] = clean(criteria["mlDetectionConfig"]["confidenceLevel"], 64)
    trigger = trigger_text(kind, fields, threshold[1] if threshold else None)
    updated = to_epoch_ms(event["violationEventTime"], "violationEventTime")
    created = updated
    fields |= {
        "ViolationId": event["violationId"],
        "ViolationEventType": event_type if event_type in STATES else clean(event_type, 64),
        "ThingName": thing,
    }
    if event.get("violationStartTime") is not None:
        created = to_epoch_ms(event["violationStartTime"], "violationStartTime")
        fields["ViolationStartTime"] = str(created)
    observed = value_text(event.get("metricValue"))
    if observed:
        fields["MetricValue"] = observed[1]
    if (event.get("violationEventAdditionalInfo") or {}).get("confidenceLevel"):
        fields["ViolationConfidenceLevel"] = clean(event["violationEventAdditionalInfo"]["confidenceLevel"], 64)
    if event.get("verificationState"):
        fields["VerificationState"] = clean(event["verificationState"], 64)
    if event.get("verificationStateDescription"):
        fields["VerificationStateDescription"] = clean(event["verificationStateDescription"])
    state = STATES.get(event_type) or f"reported {fields['ViolationEventType']} for"
    label = (
        OPTIONS.behavior_severity.get(behavior["name"])
        or OPTIONS.security_profile_severity.get(event["securityProfileName"])
        or OPTIONS.detect_severity
    )
    finding = {
        "Id": event["violationId"],
        "GeneratorId": iot_arn(origin, f"securityprofile/{profile}"),
        "CreatedAt": format_iso(min(created, updated)),
        "UpdatedAt": format_iso(updated),
        "Title": f"Registered thing {thing} {state} {kind} behavior {name}.",
        "Description": (
            f"Registered thing {thing} violates {kind} behavior {name} of security profile {profile}. "
            f"Violation was triggered because the device did not conform to {trigger}."
        ),
        "Resources": [
            {
                "Type": "AwsIotRegisteredThing",
                "Id": thing,
                "Partition": origin.partition,
                "Region": origin.region,
                "Details": {
                    "Other": {
                        "SourceUrl": bounded(console_url(origin, f"/thing/{url_part(thing)}?tab=violations"), 1024),
                        "IsRegisteredThing": "true",
                        "ThingArn": iot_arn(origin, f"thing/{thing}"),
                    }
                },
            }
        ],
        "RecordState": "ARCHIVED" if event_type in ("alarm-cleared", "alarm-invalidated") else "ACTIVE",
        "SourceUrl": console_url(origin, f"/dd/securityProfile/{url_part(profile)}?tab=violations"),
        "ProductFields": fields,
    }
    return [frame(origin, "IoT Device Defender - Detect", finding, label, ["Unusual Behaviors"])]


def sentence(text: str) -> str:
    return text if text.endswith((".", "!", "?")) else text + "."


def audit_finding(event: dict[str, Any]) -> list[dict[str, Any]]:
    origin = resolve_origin(event.get("accountId"), event.get("region"), OPTIONS)
    check = clean(event["checkName"], 128)
    code = clean(event["reasonForNonComplianceCode"], 128)
    task = clean(event["taskId"], 128)
    resource = event["nonCompliantResource"]
    resource_type = clean(resource["resourceType"], 128)
    named = audited_resource(resource_type, resource["resourceIdentifier"])
    updated = to_epoch_ms(event.get("findingTime") or event["taskStartTime"], "findingTime")
    fields = {"TaskId": task}
    if event.get("taskType") is not None:
        fields["TaskType"] = clean(event["taskType"], 128)
    if event.get("scheduledAuditName"):
        fields["ScheduledAuditName"] = clean(event["scheduledAuditName"], 128)
    if event.get("taskStartTime") is not None:
        fields["TaskStartTime"] = str(to_epoch_ms(event["taskStartTime"], "taskStartTime"))
    fields |= {
        "ReportType": "AuditFinding",
        "CheckName": check,
        "FindingId": clean(event["findingId"], 128),
        "ResourceType": resource_type,
        "ReasonForNonComplianceCode": code,
        "IsSuppressed": "true" if event.get("isSuppressed") else "false",
    }
    for member, value in named.members.items():
        fields.setdefault(member, value)
    details = named.details()
    for key, value in list((resource.get("additionalInfo") or {}).items())[:20]:
        details.setdefault(clean(key, 128) or "_", clean(value, 1024))
    described: dict[str, Any] = {
        "Type": named.asff_type,
        "Id": named.resource_id,
        "Partition": origin.partition,
        "Region": origin.region,
    }
    if details:
        described["Details"] = {"Other": details}
    page = (
        named.console_prefix + url_part(named.name_parts[0])
        if named.console_prefix is not None
        else f"/dd/audit/results/{url_part(task)}/{url_part(check)}"
    )
    reason = clean(event["reasonForNonCompliance"]) if event.get("reasonForNonCompliance") else code
    label = event.get("severity") if event.get("severity") in SEVERITY_LABELS else check_severity(event["checkName"])
    finding = {
        "Id": finding_id(f"{origin.account_id}/{resource_type}", named.name_parts, f"{check}/{code}"),
        "GeneratorId": fields["FindingId"],
        "CreatedAt": format_iso(updated),
        "UpdatedAt": format_iso(updated),
        "Title": f"{check}: {code}",
        "Description": (
            f"{resource_type} {named.display} is reported as non-compliant for {check} by Audit task {task}. "
            f"The non-compliant reason is {sentence(reason)}"
        ),
        "Resources": [described],
        "RecordState": "ARCHIVED" if event.get("isSuppressed") else "ACTIVE",
        "SourceUrl": console_url(origin, page),
        "ProductFields": fields,
    }
    return [frame(origin, "IoT Device Defender - Audit", finding, str(label), list(check_types(event["checkName"])))]


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def audit_task(event: dict[str, Any]) -> list[dict[str, Any]]:
    origin = resolve_origin(event.get("accountId"), event.get("region"), OPTIONS)
    task = clean(event["taskId"], 128)
    task_type = clean(event["taskType"], 128)
    name = clean(event["scheduledAuditName"], 128) if event.get("scheduledAuditName") else None
    status = event["taskStatus"]
    started = format_iso(to_epoch_ms(event["taskStartTime"], "taskStartTime"))
    ending = {"COMPLETED": "completes", "FAILED": "failed", "CANCELED": "was canceled"}.get(status) or (
        f"ended {clean(status, 128)}"
    )
    opening = f"Task {task} of {f'scheduled Audit {name}' if name else 'on-demand Audit'} {ending}. "
    head = f"{origin.account_id}/{task_type}" + (f"/{name}" if name else "")
    findings = []
    for details in event["auditDetails"]:
        check = clean(details["checkName"], 128)
        check_status = details["checkRunStatus"]
        bad = details.get("nonCompliantResourcesCount") or 0
        total = details.get("totalResourcesCount") or 0
        if check_status == "COMPLETED_NON_COMPLIANT":
            title = f"Completed with {plural(bad, 'non-compliant resource')}"
            text = (
                f"{plural(bad, 'non-compliant resource')} {'is' if bad == 1 else 'are'} found for {check} "
                f"out of {plural(total, 'resource')} in the account."
            )
            if total:
                text += f" The percentage of non-compliant resources is {100 * bad / total:.4g}%."
        elif check_status == "COMPLETED_COMPLIANT":
            title = "Completed with no non-compliant resources"
            text = (
                f"No non-compliant resources are found for {check} out of {plural(total, 'resource')} in the account."
            )
        else:
            reason = clean(details["errorCode"], 128) if details.get("errorCode") else ""
            message = f" {sentence(clean(details['message'], 512))}" if details.get("message") else ""
            if check_status == "FAILED":
                title = f"Failed{f' ({reason})' if reason else ''}"
                text = f"{check} failed{f': {reason}' if reason else ''}.{message}"
            elif check_status == "CANCELED":
                title, text = "Canceled", f"{check} was canceled.{message}"
            else:
                shown = clean(check_status, 128)
                title, text = f"Ended {shown}", f"{check} ended {shown}.{message}"
        fields = {"TaskId": task, "TaskType": task_type, "ReportType": "CheckSummary", "CheckName": check}
        if name:
            fields["ScheduledAuditName"] = name
        if status != "COMPLETED":
            fields["TaskStatus"] = clean(status, 128)
        fields["CheckRunStatus"] = clean(check_status, 128)
        fields["NonCompliantResourcesCount"] = str(bad)
        fields["TotalResourcesCount"] = str(total)
        if details.get("suppressedNonCompliantResourcesCount") is not None:
            fields["SuppressedNonCompliantResourcesCount"] = str(details["suppressedNonCompliantResourcesCount"])
        if details.get("errorCode"):
            fields["ErrorCode"] = clean(details["errorCode"], 128)
        if details.get("message"):
            fields["Message"] = clean(details["message"])
        archived = status == "CANCELED" or check_status in ("COMPLETED_COMPLIANT", "CANCELED")
        finding = {
            "Id": finding_id(head, (), check),
            "GeneratorId": task,
            "CreatedAt": started,
            "UpdatedAt": started,
            "Title": f"{check} Summary: {title}",
            "Description": opening + text,
            "Resources": [
                {"Type": "AwsIotAuditTask", "Id": task, "Partition": origin.partition, "Region": origin.region}
            ],
            "RecordState": "ARCHIVED" if archived else "ACTIVE",
            "SourceUrl": console_url(origin, f"/dd/audit/results/{url_part(task)}/{url_part(check)}"),
            "ProductFields": fields,
        }
        label = check_severity(details["checkName"])
        findings.append(
            frame(origin, "IoT Device Defender - Audit", finding, label, list(check_types(details["checkName"])))
        )
    return findings


def convert_line(line: bytes) -> list[dict[str, Any]]:
    """Returns the findings of one bare event line (the benchmark corpus has no envelopes)."""
    event = json.loads(line)
    if "violationId" in event:
        return detect(event)
    if "nonCompliantResource" in event:
        return audit_finding(event)
    return audit_task(event)


def main() -> None:
    out = sys.stdout
    for line in sys.stdin.buffer:
        for finding in convert_line(line):
            out.write(json.dumps(finding, separators=(",", ":"), ensure_ascii=False))
            out.write("\n")


if __name__ == "__main__":
    main()
