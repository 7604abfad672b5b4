"""Every option of every command says what it is and what it is when not given."""

from __future__ import annotations

import argparse

import pytest

from defender_hub.cli import _parser


def commands() -> dict[str, argparse.ArgumentParser]:
    """The subcommands' parsers by name (`deliver`'s import and redrive among them)."""
    found: dict[str, argparse.ArgumentParser] = {}
    pending = [("defender-hub", _parser())]
    while pending:
        name, parser = pending.pop()
        found[name] = parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                pending += [(f"{name} {sub}", subparser) for sub, subparser in action.choices.items()]
    return found


@pytest.mark.parametrize(("name", "parser"), sorted(commands().items()), ids=sorted(commands()))
def test_every_option_has_help_that_shows_its_default(name: str, parser: argparse.ArgumentParser) -> None:
    silent = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction) or action.dest == "version":
            continue
        text = action.help or ""
        is_switch = isinstance(action, argparse._StoreTrueAction)
        says_default = "default" in text or "required" in text or not action.option_strings
        if not text or not (is_switch or says_default):
            silent.append("/".join(action.option_strings) or action.dest)
    assert silent == [], f"{name}: options without help or a default shown"
