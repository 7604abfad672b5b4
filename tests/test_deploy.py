"""The deployment: exactly the actions the README lists and the code calls, none wider than it must be; the rules that
put AWS Config's and AWS Health's events on the stream match what they must and target only what they may; what holds
state outlives its stack; the external ID is a secret; fan-out is granted only with FANOUT."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cfnlint.data.AdditionalSpecs
import pytest
import yaml
from cfnlint.helpers import load_resource
from packaging.specifiers import SpecifierSet

from defender_hub.checkpoints.dynamodb_items import INDEXES, KEY_ATTRIBUTES, index_definition
from defender_hub.mapping.health import CRITICAL_EVENT_TYPE_CODES, SECURITY_SERVICES, is_security_related
from defender_hub.settings import RETRIEVAL_MODES, variable

ROOT = Path(__file__).parents[1]
TEMPLATES = sorted((ROOT / "deploy").glob("*.yaml"))
UNNAMEABLE = {"cloudwatch:PutMetricData", "iot:ListAuditFindings", "iot:DescribeAuditTask"}
"""Actions that have no resource type: `Resource: "*"` is all IAM allows for them."""


class _Template(yaml.SafeLoader):
    """YAML with CloudFormation's short forms (!Ref, !Sub, !If…) read as plain values."""


def _tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return {suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {suffix: loader.construct_sequence(node, deep=True)}
    return {suffix: loader.construct_mapping(node, deep=True)}  # type: ignore[arg-type]


_Template.add_multi_constructor("!", _tagged)


def statements() -> Iterator[tuple[str, dict[str, Any]]]:
    """(template, statement) of every permission policy the templates grant (trust policies are not permissions)."""
    for path in TEMPLATES:
        template = yaml.load(path.read_text(), Loader=_Template)
        for resource in template["Resources"].values():
            for written_policy in resource.get("Properties", {}).get("Policies", []):
                policy = written_policy["If"][1] if "If" in written_policy else written_policy  # !If: granted branch
                for written in policy["PolicyDocument"]["Statement"]:
                    yield path.name, written["If"][1] if "If" in written else written  # !If: its granted branch


def load(name: str) -> dict[str, Any]:
    return yaml.load((ROOT / "deploy" / name).read_text(), Loader=_Template)  # type: ignore[no-any-return]


def resource_statements() -> Iterator[tuple[str, dict[str, Any]]]:
    """(template, statement) of every grant in a resource's own policy: queues', event buses', Lambda's permissions."""
    for path in TEMPLATES:
        for resource in yaml.load(path.read_text(), Loader=_Template)["Resources"].values():
            properties = resource.get("Properties", {})
            if resource["Type"] == "AWS::SQS::QueuePolicy":
                yield from ((path.name, s) for s in properties["PolicyDocument"]["Statement"])
            elif resource["Type"] == "AWS::Events::EventBusPolicy":
                yield path.name, properties["Statement"]
            elif resource["Type"] == "AWS::Lambda::Permission":
                principal = properties["Principal"]
                yield path.name, {"Effect": "Allow", "Action": properties["Action"], "Principal": principal}


def actions_of(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def readme_table() -> dict[str, str]:
    """Action → who calls it, from the README's Deploy section and docs/deploy.md's IAM section (the grants a
    parameter turns on, and what the encrypted topics ask of Device Defender's role)."""
    readme = (ROOT / "README.md").read_text().split("## Deploy", 1)[1].split("\n## ", 1)[0]
    deploy = (ROOT / "docs/deploy.md").read_text().split("\n## IAM", 1)[1].split("\n## ", 1)[0]
    called: dict[str, str] = {}
    for section in (readme, deploy):
        for row in re.findall(r"^\| (`[a-z0-9]+:[A-Za-z]+`.*?) \| .*? \| (.*?) \|$", section, re.MULTILINE):
            for action in re.findall(r"`([a-z0-9]+:[A-Za-z]+)`", row[0]):
                called[action] = called.get(action, "") + row[1]
    return called


def test_there_are_templates_to_check() -> None:
    assert {path.name for path in TEMPLATES} >= {
        "stream.yaml",
        "consumer.yaml",
        "forwarder.yaml",
        "member-account.yaml",
        "events.yaml",
    }
    assert sum(1 for _ in statements()) >= 20
    assert sum(1 for _ in resource_statements()) >= 5


def test_no_action_is_a_wildcard_and_a_resource_is_named_wherever_one_can_be() -> None:
    for template, statement in [*statements(), *resource_statements()]:
        assert statement["Effect"] == "Allow"
        for action in actions_of(statement):
            assert "*" not in action, f"{template}: {action}"
        if statement.get("Resource", "*") == "*" and "Principal" not in statement:
            assert set(actions_of(statement)) <= UNNAMEABLE, f"{template}: {statement.get('Sid')} could name a resource"


def test_the_templates_grant_exactly_what_the_readme_lists() -> None:
    granted = {action for _, statement in [*statements(), *resource_statements()] for action in actions_of(statement)}

    assert granted == set(readme_table())


@pytest.mark.parametrize("action", sorted(a for a, caller in readme_table().items() if "defender-hub" in caller))
def test_each_action_defender_hub_is_granted_for_is_one_its_code_calls(action: str) -> None:
    operation = re.sub(r"(?<!^)(?=[A-Z])", "_", action.split(":")[1]).lower()  # BatchGetItem → batch_get_item
    source = "\n".join(path.read_text() for path in (ROOT / "src").rglob("*.py"))

    assert re.search(rf"\b{operation}\w*\(|\"{operation}\"", source), f"{action}: no {operation} call in src/"


# The EventBridge rules (events.yaml; member-account.yaml forwards the same events to the central bus)


def rules(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == "AWS::Events::Rule"}


def pattern_of(template: str, source: str) -> dict[str, Any]:
    """The event pattern of the template's rule for a source (aws.config, aws.health)."""
    (pattern,) = [r["Properties"]["EventPattern"] for r in rules(load(template)).values() if source in str(r)]
    return pattern  # type: ignore[no-any-return]


def targets_of(rule: dict[str, Any]) -> list[dict[str, Any]]:
    """A rule's targets, every branch of an !If."""
    targets = rule["Properties"]["Targets"]
    return [t for branch in targets["If"][1:] for t in branch] if "If" in targets else list(targets)


def matches(pattern: dict[str, Any], event: Any) -> bool:
    """EventBridge's event pattern matching, for the features the rules use: values, prefix, anything-but (a value,
    a list or a prefix), wildcard, exists and $or. Any other operator raises, so a rule can't outgrow this."""
    for key, rule in pattern.items():
        if key == "$or":
            if not any(matches(alternative, event) for alternative in rule):
                return False
            continue
        value = event.get(key, _MISSING) if isinstance(event, dict) else _MISSING
        if isinstance(rule, dict):
            if not isinstance(value, dict) or not matches(rule, value):
                return False
        elif value is _MISSING:
            if {"exists": False} not in rule:
                return False
        elif not any(_matches_one(alternative, v) for alternative in rule for v in _values(value)):
            return False
    return True


_MISSING = object()


def _values(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _matches_one(alternative: Any, value: Any) -> bool:
    if not isinstance(alternative, dict):
        return bool(alternative == value)
    (operator, operand), *more = alternative.items()
    assert not more, alternative
    if operator == "exists":
        return bool(operand)
    if not isinstance(value, str):
        return operator == "anything-but" and not isinstance(operand, dict) and value not in _values(operand)
    if operator == "prefix":
        return value.startswith(operand)
    if operator == "wildcard":
        return re.fullmatch(".*".join(map(re.escape, operand.split("*"))), value, re.DOTALL) is not None
    if operator == "anything-but":
        if isinstance(operand, dict):
            (inner, prefix), *more = operand.items()
            assert inner == "prefix" and not more, operand
            return not value.startswith(prefix)
        return value not in _values(operand)
    raise AssertionError(f"an operator this test does not implement: {operator}")


def test_the_pattern_matcher_is_eventbridges_for_what_the_rules_use() -> None:
    assert matches({"a": ["x", "y"]}, {"a": "y"}) and not matches({"a": ["x"]}, {"a": "z"})
    assert matches({"a": ["x"]}, {"a": ["z", "x"]})  # an array matches if any element does
    assert not matches({"a": ["x"]}, {}) and not matches({"a": [{"anything-but": "x"}]}, {})
    assert matches({"a": [{"exists": False}]}, {}) and not matches({"a": [{"exists": True}]}, {})
    assert matches({"a": [{"prefix": "ab"}]}, {"a": "abc"}) and not matches({"a": [{"prefix": "ab"}]}, {"a": "ba"})
    assert matches({"a": [{"anything-but": {"prefix": "s-"}}]}, {"a": "t-1"})
    assert not matches({"a": [{"anything-but": {"prefix": "s-"}}]}, {"a": "s-1"})
    assert matches({"a": [{"wildcard": "*SEC*"}]}, {"a": "AWS_SEC_X"})
    assert matches({"a": [{"wildcard": "*SEC*"}]}, {"a": "SEC"})
    assert not matches({"a": [{"wildcard": "*SEC*"}]}, {"a": "AWS_SE_C"})
    assert matches({"d": {"$or": [{"a": ["1"]}, {"b": ["2"]}]}}, {"d": {"b": "2"}})
    assert not matches({"d": {"$or": [{"a": ["1"]}, {"b": ["2"]}]}}, {"d": {"a": "2", "b": "1"}})
    assert not matches({"d": {"a": ["1"]}}, {"d": "1"})


CONFIG_CHANGE = {
    "version": "0",
    "id": "2a5f4bd4-7ad4-4b2a-8a3a-0e7c1c9f3c11",
    "detail-type": "Config Rules Compliance Change",
    "source": "aws.config",
    "account": "123456789012",
    "time": "2022-04-19T21:20:15Z",
    "region": "eu-central-1",
    "resources": [],
    "detail": {
        "resourceId": "config-integration-demo-bucket",
        "awsRegion": "eu-central-1",
        "awsAccountId": "123456789012",
        "configRuleName": "s3-bucket-level-public-access-prohibited-config-integration-demo",
        "recordVersion": "1.0",
        "configRuleARN": "arn:aws:config:eu-central-1:123456789012:config-rule/config-rule-mburzq",
        "messageType": "ComplianceChangeNotification",
        "newEvaluationResult": {
            "evaluationResultIdentifier": {
                "evaluationResultQualifier": {
                    "configRuleName": "s3-bucket-level-public-access-prohibited-config-integration-demo",
                    "resourceType": "AWS::S3::Bucket",
                    "resourceId": "config-integration-demo-bucket",
                },
                "orderingTimestamp": "2022-04-19T21:20:06.563Z",
            },
            "complianceType": "NON_COMPLIANT",
            "resultRecordedTime": "2022-04-19T21:20:15.056Z",
            "configRuleInvokedTime": "2022-04-19T21:20:14.813Z",
        },
        "oldEvaluationResult": None,
        "notificationCreationTime": "2022-04-19T21:20:15.538Z",
        "resourceType": "AWS::S3::Bucket",
    },
}


def health_event(service: str, code: str, detail_type: str = "AWS Health Event") -> dict[str, Any]:
    """An AWS Health event as EventBridge delivers it (the user guide's schema), of a service and event type code."""
    arn = f"arn:aws:health:us-east-1::event/{service}/{code}/{code}_303388638044_33fe2115-8dad-40ce-b533-78e29f49de96"
    return {
        "version": "0",
        "id": "7bf73129-1428-4cd3-a780-95db273d1602",
        "detail-type": detail_type,
        "source": "aws.health",
        "account": "123456789012",
        "time": "2022-01-07T19:17:43Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "eventArn": arn,
            "service": service,
            "eventScopeCode": "ACCOUNT_SPECIFIC",
            "communicationId": "1a2b3c4d",
            "eventTypeCode": code,
            "eventTypeCategory": "accountNotification",
            "startTime": "Fri, 7 Jan 2022 16:34:04 GMT",
            "lastUpdatedTime": "Fri, 7 Jan 2022 19:17:43 GMT",
            "statusCode": "open",
            "eventRegion": "us-east-1",
            "eventDescription": [{"language": "en_US", "latestDescription": "..."}],
            "affectedAccount": "123456789012",
        },
    }


def security_related(event: dict[str, Any]) -> bool:
    """The consumer's own filter (sources.md §2), which the Health rule must let through, at least."""
    return is_security_related(event["detail"]["service"], event["detail"]["eventTypeCode"])


SOME_CODES = [
    "AWS_SES_CMF_PENDING_TO_SUCCESS",  # the brief's example finding's
    "AWS_RISK_CREDENTIALS_EXPOSED",
    "AWS_ABUSE_DOS_REPORT",
    "AWS_EC2_SECURITY_NOTIFICATION",
    "AWS_IAM_ABUSE_DETECTION",
    "AWS_RDS_CERTIFICATE_EXPIRATION",
    "AWS_ACM_RENEWAL_STATE_CHANGE",
    "AWS_LAMBDA_RUNTIME_END_OF_SUPPORT",
    "AWS_EC2_INSTANCE_STORE_DRIVE_PERFORMANCE_DEGRADED",
    "AWS_EC2_OPERATIONAL_ISSUE",
    *sorted(CRITICAL_EVENT_TYPE_CODES),
]
SOME_SERVICES = [*sorted(SECURITY_SERVICES), "RISK", "ABUSE", "EC2", "S3", "RDS", "LAMBDA", "ELASTICLOADBALANCING"]


@pytest.mark.parametrize("template", ["events.yaml", "member-account.yaml"])
def test_the_config_rule_takes_compliance_changes_but_not_service_linked_rules_nor_other_config_events(
    template: str,
) -> None:
    pattern = pattern_of(template, "aws.config")
    service_linked = copy.deepcopy(CONFIG_CHANGE)
    service_linked["detail"]["configRuleName"] = "securityhub-s3-bucket-public-read-prohibited-a1b2c3"
    item_change = copy.deepcopy(CONFIG_CHANGE)
    item_change["detail-type"] = "Config Configuration Item Change"
    item_change["detail"]["messageType"] = "ConfigurationItemChangeNotification"
    other_message = copy.deepcopy(CONFIG_CHANGE)
    other_message["detail"]["messageType"] = "OversizedConfigurationItemChangeNotification"

    assert matches(pattern, CONFIG_CHANGE)
    assert not matches(pattern, service_linked)
    assert not matches(pattern, item_change)
    assert not matches(pattern, other_message)
    assert not matches(pattern, health_event("CONFIG", "AWS_CONFIG_SECURITY_NOTIFICATION"))


@pytest.mark.parametrize("template", ["events.yaml", "member-account.yaml"])
def test_the_health_rule_is_never_narrower_than_the_consumers_filter_and_leaves_out_plain_operations(
    template: str,
) -> None:
    pattern = pattern_of(template, "aws.health")
    events = [health_event(service, code) for service in SOME_SERVICES for code in SOME_CODES]

    for event in events:
        if security_related(event):
            assert matches(pattern, event), event["detail"]
    assert matches(pattern, health_event("ABUSE", "AWS_ABUSE_DOS_REPORT", "AWS Health Abuse Event"))
    assert matches(pattern, health_event("SES", "AWS_SES_CMF_PENDING_TO_SUCCESS"))  # the brief's example
    assert not matches(pattern, health_event("EC2", "AWS_EC2_INSTANCE_STORE_DRIVE_PERFORMANCE_DEGRADED"))
    assert not matches(pattern, health_event("EC2", "AWS_EC2_OPERATIONAL_ISSUE"))
    assert not matches(pattern, health_event("RISK", "AWS_RISK_CREDENTIALS_EXPOSED", "AWS Health Something Else"))
    other_source = health_event("RISK", "AWS_RISK_CREDENTIALS_EXPOSED")
    other_source["source"] = "com.example.health"
    assert not matches(pattern, other_source)
    # wider than the filter only by END_OF_SUPPORT codes, which the brief's severity table names
    assert {e["detail"]["eventTypeCode"] for e in events if matches(pattern, e) and not security_related(e)} == {
        "AWS_LAMBDA_RUNTIME_END_OF_SUPPORT"
    }


@pytest.mark.parametrize("source", ["config", "health"])
def test_the_rules_take_the_golden_events_of_the_briefs_examples(source: str) -> None:
    events = [json.loads(line) for line in (ROOT / f"tests/golden/{source}-events.jsonl").read_text().splitlines()]
    for template in ("events.yaml", "member-account.yaml"):
        patterns = [r["Properties"]["EventPattern"] for r in rules(load(template)).values()]
        for event in events:
            assert [matches(p, event) for p in patterns].count(True) == 1, (template, event["detail-type"])


def test_the_member_accounts_forward_exactly_the_events_the_central_rules_take() -> None:
    def patterns(template: str) -> list[Any]:
        return sorted((r["Properties"]["EventPattern"] for r in rules(load(template)).values()), key=str)

    assert patterns("member-account.yaml") == patterns("events.yaml")


def test_each_rule_retries_for_a_day_where_it_may_and_dead_letters_what_it_could_not_deliver() -> None:
    for template in ("events.yaml", "member-account.yaml"):
        resources = load(template)["Resources"]
        for name, rule in rules(load(template)).items():
            assert rule["Properties"]["State"] == "ENABLED"
            for target in targets_of(rule):
                if ":event-bus/" in str(target["Arn"]):  # EventBridge takes no retry policy for an event bus target
                    assert "RetryPolicy" not in target, f"{template}: {name}"
                else:
                    assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 86400, "MaximumRetryAttempts": 185}
                queue = target["DeadLetterConfig"]["Arn"]["GetAtt"].removesuffix(".Arn")
                assert resources[queue]["Type"] == "AWS::SQS::Queue", f"{template}: {name}"
                assert "Arn" in target["RoleArn"]["GetAtt"], f"{template}: {name}"


def test_the_central_rules_put_on_the_stream_with_a_partition_key_of_the_finding_or_forward_to_its_region() -> None:
    template = load("events.yaml")
    stream = "arn:${AWS::Partition}:kinesis:${AWS::Region}:${AWS::AccountId}:stream/${StreamName}"
    keys = {}
    for name, rule in rules(template).items():
        at_the_stream, forwarding = (rule["Properties"]["Targets"]["If"][i] for i in (1, 2))
        assert rule["Properties"]["Targets"]["If"][0] == "AtTheStream"
        ((kinesis,), (bus,)) = at_the_stream, forwarding
        assert kinesis["Arn"] == {"Sub": stream}
        assert kinesis["RoleArn"] == {"GetAtt": "PutOnTheStream.Arn"}
        keys[name] = kinesis["KinesisParameters"]["PartitionKeyPath"]
        assert bus["Arn"] == {"Sub": "arn:${AWS::Partition}:events:${StreamRegion}:${AWS::AccountId}:event-bus/default"}
        assert bus["RoleArn"] == {"GetAtt": "ForwardToTheStreamsRegion.Arn"}
    # one finding's news on one shard: a Config finding is a rule's (and a resource's), a Health one an event type's
    assert keys == {"ConfigRule": "$.detail.configRuleARN", "HealthRule": "$.detail.eventTypeCode"}


def role_statements(template: str, role: str) -> list[dict[str, Any]]:
    properties = load(template)["Resources"][role]["Properties"]
    return [s for policy in properties["Policies"] for s in policy["PolicyDocument"]["Statement"]]


def test_eventbridges_roles_are_its_own_for_this_accounts_rules_only() -> None:
    roles = [
        ("events.yaml", "PutOnTheStream"),
        ("events.yaml", "ForwardToTheStreamsRegion"),
        ("member-account.yaml", "ForwardToTheCentralBus"),
    ]
    for template, role in roles:
        (trust,) = load(template)["Resources"][role]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Principal"] == {"Service": "events.amazonaws.com"}
        assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
        assert trust["Condition"]["ArnLike"] == {
            "aws:SourceArn": {"Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:rule/*"}
        }
    every = [load(t)["Resources"][r] for t in ("events.yaml", "member-account.yaml") for r in load(t)["Resources"]]
    services = [r for r in every if r["Type"] == "AWS::IAM::Role" and "events.amazonaws.com" in str(r)]
    assert len(services) == len(roles)


def test_the_events_role_may_put_only_on_the_stream() -> None:
    put, encrypt = role_statements("events.yaml", "PutOnTheStream")
    stream = "arn:${AWS::Partition}:kinesis:${AWS::Region}:${AWS::AccountId}:stream/${StreamName}"

    assert (put["Action"], put["Resource"]) == ("kinesis:PutRecord", {"Sub": stream})
    assert encrypt["Action"] == "kms:GenerateDataKey"
    assert encrypt["Condition"]["StringEquals"] == {
        "kms:ViaService": {"Sub": "kinesis.${AWS::Region}.amazonaws.com"},
        "kms:EncryptionContext:aws:kinesis:arn": {"Sub": stream},
    }
    (forward,) = role_statements("events.yaml", "ForwardToTheStreamsRegion")
    assert (forward["Action"], forward["Resource"]) == (
        "events:PutEvents",
        {"Sub": "arn:${AWS::Partition}:events:${StreamRegion}:${AWS::AccountId}:event-bus/default"},
    )


def test_the_member_accounts_forwarding_targets_only_the_central_bus() -> None:
    template = load("member-account.yaml")
    central_bus = {
        "Sub": [
            "arn:${AWS::Partition}:events:${CentralRegion}:${CentralAccount}:event-bus/default",
            {"CentralAccount": {"Select": [4, {"Split": [":", {"Ref": "ConsumerRoleArn"}]}]}},
        ]
    }
    (put,) = role_statements("member-account.yaml", "ForwardToTheCentralBus")

    assert (put["Action"], put["Resource"]) == ("events:PutEvents", central_bus)
    assert len(rules(template)) == 2
    for rule in rules(template).values():
        assert rule["Condition"] == "ForwardsEvents"
        assert [(t["Arn"], t["RoleArn"]) for t in targets_of(rule)] == [
            (central_bus, {"GetAtt": "ForwardToTheCentralBus.Arn"})
        ]
    # never in the central account itself, whose own rules take its events
    forwards = template["Conditions"]["ForwardsEvents"]["And"]
    assert {"Not": [{"Equals": [{"Ref": "AWS::AccountId"}, central_bus["Sub"][1]["CentralAccount"]]}]} in forwards


def test_the_central_bus_admits_the_organization_only() -> None:
    resources = load("events.yaml")["Resources"]
    (policy,) = [r for r in resources.values() if r["Type"] == "AWS::Events::EventBusPolicy"]
    statement = policy["Properties"]["Statement"]

    assert policy["Condition"] == "AdmitsTheOrganization"
    assert (statement["Principal"], statement["Action"]) == ("*", "events:PutEvents")
    assert statement["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": {"Ref": "OrgId"}}}
    assert statement["Resource"] == {
        "Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/default"
    }


def test_dead_letter_queues_take_messages_from_their_own_rules_only() -> None:
    for template, statement in resource_statements():
        if statement["Action"] != "sqs:SendMessage":
            continue
        assert statement["Principal"] == {"Service": "events.amazonaws.com"}, template
        sources = statement["Condition"]["ArnEquals"]["aws:SourceArn"]
        rule_arns = {s["If"][1]["GetAtt"] if "If" in s else s["GetAtt"] for s in sources}
        assert rule_arns == {f"{name}.Arn" for name in rules(load(template))}, template


def test_findings_are_updated_only_to_resolve_them_and_only_in_the_own_hub() -> None:
    hub = "arn:${AWS::Partition}:securityhub:*:${AWS::AccountId}:hub/default"
    updates = [s for _, s in statements() if s["Action"] == "securityhub:BatchUpdateFindings"]

    assert len(updates) == 2  # the consumer's task role, the member accounts' import role
    for statement in updates:
        assert statement["Resource"] == {"Sub": hub}
        assert statement["Condition"] == {"StringEquals": {"securityhub:ASFFSyntaxPath/Workflow.Status": "RESOLVED"}}


def test_the_ledger_table_has_the_indexes_the_ledger_makes_and_the_role_may_query_them() -> None:
    template = load("consumer.yaml")
    table = template["Resources"]["Ledger"]["Properties"]
    [grant] = [s for name, s in statements() if name == "consumer.yaml" and s.get("Sid") == "TheLedger"]

    assert {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]} == KEY_ATTRIBUTES
    assert table["GlobalSecondaryIndexes"] == [index_definition(name) for name in INDEXES]
    assert {f"${{Ledger.Arn}}/index/{name}" for name in INDEXES} <= {r.get("Sub") for r in grant["Resource"]}


# What a template makes under given parameters: its !If resolved by the conditions' values


def resolved(node: Any, conditions: dict[str, bool]) -> Any:
    """`node` with each !If replaced by its branch under `conditions`, and AWS::NoValue left out."""
    if isinstance(node, dict):
        if set(node) == {"If"}:
            name, granted, otherwise = node["If"]
            return resolved(granted if conditions[name] else otherwise, conditions)
        kept = {key: resolved(value, conditions) for key, value in node.items()}
        return {key: value for key, value in kept.items() if value != _NO_VALUE}
    if isinstance(node, list):
        return [item for item in (resolved(item, conditions) for item in node) if item != _NO_VALUE]
    return node


_NO_VALUE = {"Ref": "AWS::NoValue"}


def granted(template: str, role: str, conditions: dict[str, bool]) -> list[dict[str, Any]]:
    """The statements of a role's policies under `conditions`."""
    properties = resolved(load(template)["Resources"][role]["Properties"], conditions)
    return [s for policy in properties.get("Policies", []) for s in policy["PolicyDocument"]["Statement"]]


# State outlives its stack (docs/deploy.md, "What a deleted stack leaves")

STATEFUL_TYPES = set(load_resource(cfnlint.data.AdditionalSpecs, "StatefulResources.json")["ResourceTypes"])
"""What cfn-lint takes for stateful (I3011 checks those of them that CloudFormation can delete with data in them; the
S3 bucket, which must be empty to go, is here too)."""
REMADE_FROM_PARAMETERS = {("consumer.yaml", "ExternalIdSecret")}
"""Stateful by type, but a copy of a parameter that the stack makes again: deleted with it."""


def test_every_stateful_resource_is_retained_when_its_stack_is_deleted_or_it_is_replaced() -> None:
    retained = set()
    for path in TEMPLATES:
        for name, resource in load(path.name)["Resources"].items():
            if resource["Type"] not in STATEFUL_TYPES:
                continue
            policies = (resource.get("DeletionPolicy"), resource.get("UpdateReplacePolicy"))
            if (path.name, name) in REMADE_FROM_PARAMETERS:
                assert policies == ("Delete", "Delete"), f"{path.name}: {name}"
            else:
                assert policies == ("Retain", "Retain"), f"{path.name}: {name}"  # none of these types has Snapshot
                retained.add((path.name, resource["Type"]))

    assert retained == {
        ("stream.yaml", "AWS::Kinesis::Stream"),
        ("consumer.yaml", "AWS::DynamoDB::Table"),
        ("consumer.yaml", "AWS::SQS::Queue"),
        ("consumer.yaml", "AWS::S3::Bucket"),
        ("consumer.yaml", "AWS::Logs::LogGroup"),
        ("forwarder.yaml", "AWS::SQS::Queue"),
        ("forwarder.yaml", "AWS::Logs::LogGroup"),
        ("events.yaml", "AWS::SQS::Queue"),
        ("member-account.yaml", "AWS::SQS::Queue"),
    }


def test_the_deploy_guide_names_the_kcls_own_tables_the_stacks_leave_behind() -> None:
    guide = (ROOT / "docs/deploy.md").read_text()
    tables = re.findall(r"table/\$\{Application\}(-\w+)?\"", (ROOT / "deploy/consumer.yaml").read_text())

    assert sorted(tables) == ["", "-CoordinatorState", "-WorkerMetricStats"]  # KCL 3's: lease, coordinator, metrics
    for suffix in tables:
        assert f"`APP{suffix}`" in guide


# The external ID: a secret the task reads, never in the task definition


def test_the_external_id_reaches_the_container_as_a_secret_not_in_its_environment() -> None:
    template = load("consumer.yaml")
    resources = template["Resources"]
    (container,) = resources["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    secret = resources["ExternalIdSecret"]
    name = variable("external_id")

    assert template["Parameters"]["ExternalId"]["NoEcho"] is True
    assert template["Conditions"]["WithExternalId"] == {"Not": [{"Equals": [{"Ref": "ExternalId"}, ""]}]}
    assert (secret["Type"], secret["Condition"]) == ("AWS::SecretsManager::Secret", "WithExternalId")
    assert secret["Properties"]["SecretString"] == {"Ref": "ExternalId"}
    assert "KmsKeyId" not in secret["Properties"]  # aws/secretsmanager: the execution role needs no kms:Decrypt
    assert name not in {variable["Name"] for variable in container["Environment"]}
    assert resolved(container, {"WithExternalId": True})["Secrets"] == [
        {"Name": name, "ValueFrom": {"Ref": "ExternalIdSecret"}}
    ]
    assert "Secrets" not in resolved(container, {"WithExternalId": False})
    # the parameter goes into the secret and nowhere else
    references = re.findall(r"!Ref ExternalId\b|\$\{ExternalId\}", (ROOT / "deploy/consumer.yaml").read_text())
    assert len(references) == 2, references  # the condition's and the secret's


def test_only_the_execution_role_may_read_the_secret_and_only_that_one() -> None:
    assert granted("consumer.yaml", "ExecutionRole", {"WithExternalId": True}) == [
        {
            "Sid": "ReadTheExternalIdSecret",
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": {"Ref": "ExternalIdSecret"},
        }
    ]
    assert granted("consumer.yaml", "ExecutionRole", {"WithExternalId": False}) == []
    reads = [s for _, s in statements() if any(a.startswith("secretsmanager:") for a in actions_of(s))]
    assert len(reads) == 1


# Enhanced fan-out: granted with RetrievalMode FANOUT only

FAN_OUT_ACTIONS = {
    "kinesis:RegisterStreamConsumer",
    "kinesis:DescribeStreamConsumer",
    "kinesis:SubscribeToShard",
    "kinesis:ListStreamConsumers",
    "kinesis:DeregisterStreamConsumer",
}


def test_the_retrieval_mode_is_a_parameter_passed_to_the_container() -> None:
    template = load("consumer.yaml")
    (container,) = template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    parameter = template["Parameters"]["RetrievalMode"]

    assert (tuple(parameter["AllowedValues"]), parameter["Default"]) == (RETRIEVAL_MODES, "POLLING")
    assert {"Name": variable("retrieval_mode"), "Value": {"Ref": "RetrievalMode"}} in container["Environment"]
    assert template["Conditions"]["FanOut"] == {"Equals": [{"Ref": "RetrievalMode"}, "FANOUT"]}


def test_the_task_role_may_use_fan_out_only_with_fanout_and_only_the_applications_consumer() -> None:
    stream = "arn:${AWS::Partition}:kinesis:${AWS::Region}:${AWS::AccountId}:stream/${StreamName}"
    others = {"SeveralAccounts": True, "WithExternalId": True}

    def fan_out(mode: str) -> dict[str, set[str]]:
        statements = granted("consumer.yaml", "TaskRole", {**others, "FanOut": mode == "FANOUT"})
        grants: dict[str, set[str]] = {}
        for statement in statements:
            for action in set(actions_of(statement)) & FAN_OUT_ACTIONS:
                grants.setdefault(action, set()).add(statement["Resource"]["Sub"])
        return grants

    assert fan_out("POLLING") == {}
    # what the KCL (3.1.3) calls for it, besides DescribeStreamSummary and ListShards, which polling needs too: it
    # registers the consumer (named after the application) on the stream, describes it by stream and name until it
    # is ACTIVE, and subscribes to each shard through its ARN. It never lists nor deregisters consumers.
    assert fan_out("FANOUT") == {
        "kinesis:RegisterStreamConsumer": {stream},
        "kinesis:DescribeStreamConsumer": {stream, f"{stream}/consumer/${{Application}}:*"},
        "kinesis:SubscribeToShard": {f"{stream}/consumer/${{Application}}:*"},
    }
    polling = granted("consumer.yaml", "TaskRole", {**others, "FanOut": False})
    assert {"kinesis:DescribeStreamSummary", "kinesis:ListShards"} <= {a for s in polling for a in actions_of(s)}


# The encrypted topics: what Device Defender's role needs on their key


def test_device_defender_may_publish_to_the_encrypted_topics_and_use_their_key_through_sns_for_them_only() -> None:
    resources = load("forwarder.yaml")["Resources"]
    topics = [{"Ref": name} for name, r in resources.items() if r["Type"] == "AWS::SNS::Topic"]
    publish, key = role_statements("forwarder.yaml", "DeviceDefenderPublishes")

    assert len(topics) == 2
    assert all(resources[t["Ref"]]["Properties"]["KmsMasterKeyId"] == "alias/aws/sns" for t in topics)
    assert (publish["Action"], publish["Resource"]) == ("sns:Publish", topics)
    # SNS's "publishers to an encrypted topic": kms:GenerateDataKey* and kms:Decrypt; SNS generates with
    # GenerateDataKey, so that alone of the four GenerateDataKey* actions (and no action with a *)
    assert sorted(actions_of(key)) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert key["Resource"] == {"Sub": "arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:key/*"}
    assert key["Condition"] == {
        "StringEquals": {
            "kms:ViaService": {"Sub": "sns.${AWS::Region}.amazonaws.com"},
            "kms:EncryptionContext:aws:sns:topicArn": topics,
        }
    }


# The forwarder's runtime


def test_the_forwarder_runs_a_python_the_project_supports_on_an_architecture_the_lock_has_wheels_for() -> None:
    template = load("forwarder.yaml")
    function = template["Resources"]["Forwarder"]["Properties"]
    architecture = template["Parameters"]["Architecture"]
    project = (ROOT / "pyproject.toml").read_text()
    (requires,) = re.findall(r'^requires-python = "(.+)"$', project, re.MULTILINE)
    version = re.fullmatch(r"python(3)\.(\d+)", function["Runtime"])
    assert version is not None, function["Runtime"]
    lock = (ROOT / "uv.lock").read_text()

    assert function["Runtime"] == "python3.14"
    assert f"{version[1]}.{version[2]}" in SpecifierSet(requires)
    assert function["Architectures"] == [{"Ref": "Architecture"}]
    assert (architecture["AllowedValues"], architecture["Default"]) == (["x86_64", "arm64"], "x86_64")
    tag = f"cp{version[1]}{version[2]}"
    for machine in ("x86_64", "aarch64"):  # Lambda's arm64 is manylinux's aarch64
        assert re.search(rf"msgspec-[\d.]+-{tag}-{tag}-manylinux2014_{machine}\b", lock), (tag, machine)
