"""A finding's shape as botocore's parameter validation checks it, checked with msgspec at a tenth of the cost.

The Security Hub clients send with botocore's validation off (`lanes.SecurityHubClients`), because it took more CPU
than anything else on the send path. What it checked of a finding is checked here instead, before a finding is sent:
the types botocore's validator accepts of each member, the required members, no unknown member and the minimum
lengths and values of botocore's own model of AwsSecurityFinding. The types are built once from that model, so a
newer botocore brings its newer model here too. Without this check a finding of the wrong type would go out for
Security Hub to refuse, and one with a member botocore does not know would break its serializer (a KeyError, not a
refusal), so every finding must pass it before it is sent.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
from typing import Annotated, Any

import msgspec

__all__ = ["shape_problem"]

_PATH = re.compile(r"(?P<what>.*) - at `\$\.?(?P<path>.*)`$", re.DOTALL)


def shape_problem(doc: Any) -> str | None:
    """What botocore's parameter validation would refuse in `doc`, a finding as parsed JSON, or None when it would
    send it."""
    try:
        msgspec.convert(doc, _finding_type())
    except msgspec.ValidationError as exc:
        return _described(str(exc))
    return None


def _described(message: str) -> str:
    """msgspec's message as a strict check's problem: the member's path first ("Resources[0].Id: expected…")."""
    match = _PATH.fullmatch(message)
    what, path = (match["what"], match["path"]) if match else (message, "")
    return f"{path or 'finding'}: {what[:1].lower()}{what[1:]} (botocore's model)"


_BUILDING = threading.Lock()


@functools.cache
def _finding_type() -> Any:
    """The msgspec type of a finding that botocore's validator would pass, built once from its service model, with
    msgspec's plan of it."""
    # botocore is loaded here, not at import, as everywhere else: commands that send nothing never load it.
    import botocore.session  # noqa: PLC0415

    with _BUILDING:
        model = botocore.session.get_session().get_service_model("securityhub")
        findings = model.operation_model("BatchImportFindings").input_shape.members["Findings"]
        finding = _type(findings.member, {})
        # msgspec makes its plan of a struct type on first use, and two threads making it at once crash the
        # interpreter (a process may screen in two threads at once, a delivery's and a sweep's): it is made here,
        # under the lock.
        with contextlib.suppress(msgspec.ValidationError):
            msgspec.convert({}, finding)
        return finding


def _type(shape: Any, made: dict[str, Any]) -> Any:
    """The msgspec type accepting what botocore's validator accepts for `shape` of parsed JSON (`made`: the structs
    built so far, by shape name)."""
    kind = shape.type_name
    least = shape.metadata.get("min")
    if kind == "structure":
        if shape.is_document_type:  # any JSON at all, as botocore's document check takes it
            return Any
        if shape.name not in made:
            made[shape.name] = _struct(shape, made)
        return made[shape.name]
    if kind == "list":
        return _at_least(list[_type(shape.member, made)], least, length=True)  # type: ignore[misc]
    if kind == "map":
        return dict[_type(shape.key, made), _type(shape.value, made)]  # type: ignore[misc]
    if kind == "string":
        return _at_least(str, least, length=True)
    # botocore's check is isinstance(value, int), which a bool passes; and a float takes an int as well.
    if kind in ("integer", "long"):
        return _at_least(int, least, length=False) | bool
    if kind in ("double", "float"):
        return _at_least(float, least, length=False) | bool
    if kind == "boolean":
        return bool
    # Neither is in the model of a finding today; a botocore that adds one leaves it to Security Hub to judge.
    return Any


def _at_least(kind: Any, least: int | None, *, length: bool) -> Any:
    if least is None:
        return kind
    return Annotated[kind, msgspec.Meta(min_length=least) if length else msgspec.Meta(ge=least)]


def _struct(shape: Any, made: dict[str, Any]) -> Any:
    """A struct of `shape`'s members: its required ones required, the others optional, no other allowed."""
    required = set(shape.metadata.get("required", ()))
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    # Members are named by position, so that any member name (a keyword, a leading underscore) is a field's.
    for index, (name, member) in enumerate(shape.members.items()):
        kind = _type(member, made)
        fields.append(
            (f"m{index}", kind) if name in required else (f"m{index}", kind | msgspec.UnsetType, msgspec.UNSET)
        )
    names = {f"m{index}": name for index, name in enumerate(shape.members)}
    return msgspec.defstruct(shape.name, fields, kw_only=True, forbid_unknown_fields=True, rename=names)
