"""The sink's shape screen against botocore's own parameter validation, which it stands in for."""

from __future__ import annotations

import copy
import functools
import random
from collections.abc import Iterator
from typing import Any

import botocore.session
from botocore.validate import ParamValidator

from defender_hub.sink.shapes import shape_problem

MUTATIONS = 1500
VALUES: list[Any] = [None, "x", "", 1, 0, -1, 1.5, True, [], ["a"], [1], {}, {"a": "b"}, {"a": 1}, {"Zz": 1}]


@functools.cache
def request_shape() -> Any:
    """botocore's model of a BatchImportFindings request, loaded once."""
    model = botocore.session.get_session().get_service_model("securityhub")
    return model.operation_model("BatchImportFindings").input_shape


def botocore_refuses(doc: Any) -> bool:
    """Whether botocore's validation refuses a BatchImportFindings of `doc` alone."""
    return bool(ParamValidator().validate({"Findings": [doc]}, request_shape()).has_errors())


def paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a member or an item within `value`."""
    yield path
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield from paths(item, (*path, key))


def mutated(doc: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """`doc` with one member or item removed, given another value, or beside a member unknown to ASFF."""
    changed = copy.deepcopy(doc)
    path = rng.choice(list(paths(doc))[1:])
    parent = changed
    for key in path[:-1]:
        parent = parent[key]
    roll = rng.random()
    if roll < 0.15 and isinstance(parent, dict):
        del parent[path[-1]]
    elif roll < 0.3 and isinstance(parent, dict):
        parent[f"Unknown{path[-1]}"] = "x"
    else:
        parent[path[-1]] = rng.choice(VALUES)
    return changed


def test_a_mapped_finding_has_the_shape_botocore_sends(template: dict[str, Any]) -> None:
    assert shape_problem(template) is None
    assert not botocore_refuses(template)


def test_the_screen_refuses_what_botocore_refuses_and_nothing_else(template: dict[str, Any]) -> None:
    rng = random.Random(23)
    disagreements = []
    refused = 0
    for _ in range(MUTATIONS):
        doc = mutated(template, rng)
        refuses = botocore_refuses(doc)
        refused += refuses
        if (shape_problem(doc) is not None) != refuses:
            disagreements.append((doc, shape_problem(doc)))

    assert disagreements == []
    assert MUTATIONS / 2 < refused < MUTATIONS  # both outcomes are tried, each many times


def test_every_top_level_member_is_typed_as_botocore_types_it(template: dict[str, Any]) -> None:
    finding = request_shape().members["Findings"].member

    disagreements = [
        (name, value)
        for name in finding.members
        for value in VALUES
        if (shape_problem(template | {name: value}) is not None) != botocore_refuses(template | {name: value})
    ]

    assert disagreements == []


def test_the_problem_names_the_member_at_fault(template: dict[str, Any]) -> None:
    resources = [{**template["Resources"][0], "Details": {"Other": {"key": 1}}}]

    assert shape_problem(template | {"Confidence": "very"}) == (
        "Confidence: expected `bool | int`, got `str` (botocore's model)"
    )
    assert shape_problem(template | {"Resources": resources}) == (
        "Resources[0].Details.Other[...]: expected `str`, got `int` (botocore's model)"
    )
    assert shape_problem(template | {"Colour": "red"}) == (
        "finding: object contains unknown field `Colour` (botocore's model)"
    )
    assert shape_problem([template]) == "finding: expected `object`, got `array` (botocore's model)"
