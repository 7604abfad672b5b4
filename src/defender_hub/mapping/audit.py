"""Audit events to findings: one per non-compliant resource, one check summary per check of a task."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from defender_hub.codecs.asff import Finding, FindingProviderFields, Resource, ResourceDetails
from defender_hub.codecs.asff_rules import SEVERITY_LABELS, Limits
from defender_hub.codecs.events import AuditCheckDetails, AuditFinding, AuditTaskNotification, RelatedResource
from defender_hub.errors import EventMappingError
from defender_hub.mapping.aws import Origin, OriginResolver, console_url, url_part
from defender_hub.mapping.checks import check_severity, check_types
from defender_hub.mapping.common import (
    CHECK_SUMMARY,
    NAME_LIMIT,
    PRODUCT_NAME_AUDIT,
    classification,
    finding_id,
    make_finding,
)
from defender_hub.mapping.options import MappingOptions
from defender_hub.mapping.resources import AuditedResource, audited_resource
from defender_hub.text import clean, required_text
from defender_hub.timestamps import Timestamp, to_epoch_ms

__all__ = ["AuditFindingMapper", "AuditTaskMapper"]

MAX_ADDITIONAL_INFO = 20
"""The most `additionalInfo` members carried into a resource's details."""

MAX_PREPARED_TASKS = 10_000
"""Bound on the memo of prepared tasks; a task's findings arrive together, so few need remembering."""

_ARCHIVED_CHECK_STATUSES = frozenset({"COMPLETED_COMPLIANT", "CANCELED"})
_TASK_ENDINGS = {"COMPLETED": "completes", "FAILED": "failed", "CANCELED": "was canceled"}


@lru_cache(maxsize=1024)
def _check_classification(check_name: str, severity: str | None) -> FindingProviderFields:
    """Returns the check's classification, at `severity` when it is a label, else at the check's default."""
    label = severity if severity in SEVERITY_LABELS else check_severity(check_name)
    return classification(label, check_types(check_name))


def _sentence(text: str) -> str:
    return text if text.endswith((".", "!", "?")) else text + "."


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


@dataclass(frozen=True, slots=True)
class _PreparedTask:
    """What every finding of one audit task shares, worked out once for all of them."""

    task_id: str
    fields: dict[str, str]
    results_page: str
    """The console page of the task's results, less the check name."""


def _prepare_task(
    origin: Origin,
    task_id: str,
    task_type: str | None,
    scheduled_audit_name: str | None,
    task_start_time: Timestamp | None,
) -> _PreparedTask:
    task = required_text(task_id, "taskId", NAME_LIMIT)
    fields = {"TaskId": task}
    if task_type is not None:
        fields["TaskType"] = required_text(task_type, "taskType", NAME_LIMIT)
    if scheduled_audit_name:
        fields["ScheduledAuditName"] = required_text(scheduled_audit_name, "scheduledAuditName", NAME_LIMIT)
    if task_start_time is not None:
        fields["TaskStartTime"] = str(to_epoch_ms(task_start_time, "taskStartTime"))
    return _PreparedTask(task, fields, console_url(origin, f"/dd/audit/results/{url_part(task)}/"))


class _TaskMemo:
    """Remembers prepared tasks by everything that shapes them."""

    def __init__(self) -> None:
        self._tasks: dict[tuple[object, ...], _PreparedTask] = {}

    def get(self, origin: Origin, event: AuditFinding) -> _PreparedTask:
        """Returns the prepared task of the finding `event`, preparing it on first sight."""
        key = (origin, event.task_id, event.task_type, event.scheduled_audit_name, event.task_start_time)
        prepared = self._tasks.get(key)
        if prepared is None:
            if len(self._tasks) >= MAX_PREPARED_TASKS:
                self._tasks.clear()
            prepared = self._tasks[key] = _prepare_task(
                origin, event.task_id, event.task_type, event.scheduled_audit_name, event.task_start_time
            )
        return prepared


def _details(resource: AuditedResource, additional_info: dict[str, str] | None) -> ResourceDetails | None:
    other = resource.details()
    if additional_info:
        for key, value in list(additional_info.items())[:MAX_ADDITIONAL_INFO]:
            other.setdefault(clean(key, Limits.DETAILS_OTHER_KEY) or "_", clean(value, Limits.DETAILS_OTHER_VALUE))
    return ResourceDetails(other) if other else None


def _related(origin: Origin, related: list[RelatedResource]) -> list[Resource]:
    resources: list[Resource] = []
    for item in related:
        if len(resources) >= Limits.RESOURCES - 1:
            break
        if not item.resource_identifier:
            continue
        try:
            named = audited_resource(item.resource_type, item.resource_identifier)
        except EventMappingError:
            continue  # a related resource that names nothing adds nothing
        details = _details(named, item.additional_info)
        resources.append(Resource(named.asff_type, named.resource_id, origin.partition, origin.region, details))
    return resources


class AuditFindingMapper:
    """Maps audit findings to findings, one per non-compliant resource; a later task's finding updates it."""

    def __init__(self, options: MappingOptions) -> None:
        self._options = options
        self._origin = OriginResolver(options)
        self._tasks = _TaskMemo()

    def __call__(self, event: AuditFinding) -> list[Finding]:
        """Returns the finding, ARCHIVED when Device Defender has it suppressed, else ACTIVE."""
        origin = self._origin(event.account_id, event.region)
        task = self._tasks.get(origin, event)
        check = required_text(event.check_name, "checkName", NAME_LIMIT)
        code = required_text(event.reason_for_non_compliance_code, "reasonForNonComplianceCode", NAME_LIMIT)
        resource_type = required_text(event.non_compliant_resource.resource_type, "resourceType", NAME_LIMIT)
        named = audited_resource(resource_type, event.non_compliant_resource.resource_identifier)
        when = event.finding_time if event.finding_time is not None else event.task_start_time
        if when is None:
            raise EventMappingError("audit finding has neither findingTime nor taskStartTime")
        updated_ms = to_epoch_ms(when, "findingTime")
        reason = clean(event.reason_for_non_compliance) if event.reason_for_non_compliance else code
        fields = task.fields.copy()
        fields["ReportType"] = "AuditFinding"
        fields["CheckName"] = check
        fields["FindingId"] = finding_ref = required_text(event.finding_id, "findingId", NAME_LIMIT)
        fields["ResourceType"] = resource_type
        fields["ReasonForNonComplianceCode"] = code
        fields["IsSuppressed"] = "true" if event.is_suppressed else "false"
        for member, value in named.members.items():
            fields.setdefault(member, value)
        page = (
            console_url(origin, named.console_prefix + url_part(named.name_parts[0]))
            if named.console_prefix is not None
            else task.results_page + url_part(check)
        )
        resources = [
            Resource(
                named.asff_type,
                named.resource_id,
                origin.partition,
                origin.region,
                _details(named, event.non_compliant_resource.additional_info),
            )
        ]
        if event.related_resources:
            resources += _related(origin, event.related_resources)
        return [
            make_finding(
                origin=origin,
                options=self._options,
                id=finding_id(f"{origin.account_id}/{resource_type}", named.name_parts, f"{check}/{code}"),
                product_name=PRODUCT_NAME_AUDIT,
                generator_id=finding_ref,
                provider_fields=_check_classification(event.check_name, event.severity),
                created_ms=updated_ms,
                updated_ms=updated_ms,
                title=f"{check}: {code}",
                description=(
                    f"{resource_type} {named.display} is reported as non-compliant for {check} by Audit task "
                    f"{task.task_id}. The non-compliant reason is {_sentence(reason)}"
                ),
                resources=resources,
                record_state="ARCHIVED" if event.is_suppressed else "ACTIVE",
                source_url=page,
                product_fields=fields,
            )
        ]


def _summary_texts(check: str, details: AuditCheckDetails) -> tuple[str, str]:
    """Returns the check summary's title and the sentence about the check."""
    non_compliant = details.non_compliant_resources_count or 0
    total = details.total_resources_count or 0
    status = details.check_run_status
    if status == "COMPLETED_NON_COMPLIANT":
        sentence = (
            f"{_plural(non_compliant, 'non-compliant resource')} "
            f"{'is' if non_compliant == 1 else 'are'} found for {check} out of "
            f"{_plural(total, 'resource')} in the account."
        )
        if total:
            sentence += f" The percentage of non-compliant resources is {100 * non_compliant / total:.4g}%."
        return f"Completed with {_plural(non_compliant, 'non-compliant resource')}", sentence
    if status == "COMPLETED_COMPLIANT":
        return (
            "Completed with no non-compliant resources",
            f"No non-compliant resources are found for {check} out of {_plural(total, 'resource')} in the account.",
        )
    reason = clean(details.error_code, NAME_LIMIT) if details.error_code else ""
    message = f" {_sentence(clean(details.message, 512))}" if details.message else ""
    if status == "FAILED":
        return f"Failed{f' ({reason})' if reason else ''}", f"{check} failed{f': {reason}' if reason else ''}.{message}"
    if status == "CANCELED":
        return "Canceled", f"{check} was canceled.{message}"
    shown = clean(status, NAME_LIMIT)
    return f"Ended {shown}", f"{check} ended {shown}.{message}"


class AuditTaskMapper:
    """Maps an audit task's notification to one check summary per check; the audit's next task updates them."""

    def __init__(self, options: MappingOptions) -> None:
        self._options = options
        self._origin = OriginResolver(options)

    def __call__(self, event: AuditTaskNotification) -> list[Finding]:
        """Returns the summaries: ACTIVE for non-compliant or failed checks, ARCHIVED for compliant or canceled."""
        origin = self._origin(event.account_id, event.region)
        task = _prepare_task(origin, event.task_id, event.task_type, event.scheduled_audit_name, None)
        task_type = task.fields["TaskType"]
        audit_name = task.fields.get("ScheduledAuditName")
        task_status = event.task_status
        started_ms = to_epoch_ms(event.task_start_time, "taskStartTime")
        audit = f"scheduled Audit {audit_name}" if audit_name else "on-demand Audit"
        ending = _TASK_ENDINGS.get(task_status) or f"ended {clean(task_status, NAME_LIMIT)}"
        opening = f"Task {task.task_id} of {audit} {ending}. "
        head = f"{origin.account_id}/{task_type}" + (f"/{audit_name}" if audit_name else "")
        base_fields = task.fields | {"ReportType": CHECK_SUMMARY}
        if task_status != "COMPLETED":
            base_fields["TaskStatus"] = clean(task_status, NAME_LIMIT)
        resource = Resource("AwsIotAuditTask", task.task_id, origin.partition, origin.region)
        findings = []
        for details in event.audit_details:
            check = required_text(details.check_name, "auditDetails.checkName", NAME_LIMIT)
            check_status = details.check_run_status
            title, sentence = _summary_texts(check, details)
            fields = base_fields.copy()
            fields["CheckName"] = check
            fields["CheckRunStatus"] = clean(check_status, NAME_LIMIT)
            fields["NonCompliantResourcesCount"] = str(details.non_compliant_resources_count or 0)
            fields["TotalResourcesCount"] = str(details.total_resources_count or 0)
            if details.suppressed_non_compliant_resources_count is not None:
                fields["SuppressedNonCompliantResourcesCount"] = str(details.suppressed_non_compliant_resources_count)
            if details.error_code:
                fields["ErrorCode"] = clean(details.error_code, NAME_LIMIT)
            if details.message:
                fields["Message"] = clean(details.message)
            archived = task_status == "CANCELED" or check_status in _ARCHIVED_CHECK_STATUSES
            findings.append(
                make_finding(
                    origin=origin,
                    options=self._options,
                    id=finding_id(head, (), check),
                    product_name=PRODUCT_NAME_AUDIT,
                    generator_id=task.task_id,
                    provider_fields=_check_classification(details.check_name, None),
                    created_ms=started_ms,
                    updated_ms=started_ms,
                    title=f"{check} Summary: {title}",
                    description=opening + sentence,
                    resources=[resource],
                    # Non-compliant, failed, or a status not known here: keep it in front of an analyst.
                    record_state="ARCHIVED" if archived else "ACTIVE",
                    source_url=task.results_page + url_part(check),
                    product_fields=fields,
                )
            )
        return findings
