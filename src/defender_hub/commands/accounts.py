"""The two account flags, --default-account and --import-account, and the deprecation of the one they replace."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from defender_hub.settings import named
from defender_hub.settings.resolving import add_flags, say_deprecated

__all__ = ["default_account_flag", "import_account_flag"]

_FORMER_ACCOUNT_FLAG = "--account-id"
"""The one account flag of before, with two meanings: still taken, with a warning (its variable likewise, by
`settings`)."""


class _FormerAccountFlag(argparse.Action):
    """--account-id where it was: stores the account as the flag that took its place does, and says to use that."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, current: str, meaning: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self._current, self._meaning = current, meaning

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        say_deprecated(_FORMER_ACCOUNT_FLAG, self._current, self._meaning)
        setattr(namespace, self.dest, values)


def _account_flag(parser: argparse.ArgumentParser, name: str) -> None:
    """Adds the flag of the account setting `name`, with --account-id still taken, with a warning, where it had this
    meaning."""
    setting = named(name)
    add_flags(parser, name)
    parser.add_argument(
        _FORMER_ACCOUNT_FLAG,
        dest=name,
        action=_FormerAccountFlag,
        current=setting.option,
        meaning=setting.help,
        default=argparse.SUPPRESS,
        metavar="ACCOUNT",
        help=f"deprecated: the same as {setting.option} (default: none)",
    )


def default_account_flag(parser: argparse.ArgumentParser) -> None:
    """Adds --default-account, read as `default_account`: the account of events that carry none."""
    _account_flag(parser, "default_account")


def import_account_flag(parser: argparse.ArgumentParser) -> None:
    """Adds --import-account, read as `import_account`: the account imported into without a role."""
    _account_flag(parser, "import_account")
