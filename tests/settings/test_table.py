"""The table of settings, and what the documents say of it."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from defender_hub.cli import _parser
from defender_hub.settings import SETTINGS
from defender_hub.settings.table import PREFIX

DOCS = Path(__file__).parents[2] / "docs"


def run_parser() -> argparse.ArgumentParser:
    """The parser of `run`."""
    commands = next(action for action in _parser()._actions if isinstance(action, argparse._SubParsersAction))
    return commands.choices["run"]


def test_every_variable_is_the_prefix_and_the_settings_name_in_capitals() -> None:
    assert all(setting.variable == PREFIX + name.upper() for name, setting in SETTINGS.items())


def test_the_consumers_list_of_variables_names_every_setting_run_takes_and_no_other() -> None:
    text = (DOCS / "consumer.md").read_text()
    listed = re.search(r"Every setting may come from the environment too \((.*?)\) or from", text, re.DOTALL)
    assert listed is not None

    names = set(re.findall(r"`(?:DEFENDER_HUB)?_([A-Z_]+)`", listed.group(1)))

    assert names == {name.upper() for name in run_parser().get_default("_settings")}
