"""The deployment's IAM: exactly the actions the README lists and the code calls, none wider than it must be."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

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
            for policy in resource.get("Properties", {}).get("Policies", []):
                for written in policy["PolicyDocument"]["Statement"]:
                    yield path.name, written["If"][1] if "If" in written else written  # !If: its granted branch


def actions_of(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def readme_table() -> dict[str, str]:
    """Action → who calls it, from the README's Deploy section."""
    section = (ROOT / "README.md").read_text().split("## Deploy", 1)[1].split("\n## ", 1)[0]
    called: dict[str, str] = {}
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
    }
    assert sum(1 for _ in statements()) >= 15


def test_no_action_is_a_wildcard_and_a_resource_is_named_wherever_one_can_be() -> None:
    for template, statement in statements():
        assert statement["Effect"] == "Allow"
        for action in actions_of(statement):
            assert "*" not in action, f"{template}: {action}"
        if statement["Resource"] == "*":
            assert set(actions_of(statement)) <= UNNAMEABLE, f"{template}: {statement.get('Sid')} could name a resource"


def test_the_templates_grant_exactly_what_the_readme_lists() -> None:
    granted = {action for _, statement in statements() for action in actions_of(statement)}

    assert granted == set(readme_table())


@pytest.mark.parametrize("action", sorted(a for a, caller in readme_table().items() if "defender-hub" in caller))
def test_each_action_defender_hub_is_granted_for_is_one_its_code_calls(action: str) -> None:
    operation = re.sub(r"(?<!^)(?=[A-Z])", "_", action.split(":")[1]).lower()  # BatchGetItem → batch_get_item
    source = "\n".join(path.read_text() for path in (ROOT / "src").rglob("*.py"))

    assert re.search(rf"\b{operation}\w*\(|\"{operation}\"", source), f"{action}: no {operation} call in src/"
