"""The two account flags, --default-account and --import-account, and the deprecation of the one they replace."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from defender_hub.commands.common import env

__all__ = ["default_account_flag", "import_account_flag"]

_FORMER_ACCOUNT_FLAG = "--account-id"
_FORMER_ACCOUNT_VARIABLE = "ACCOUNT_ID"
"""The one account flag and variable (after DEFENDER_HUB_) of before, with two meanings: still taken, with a warning."""


def _say_deprecated(former: str, current: str, meaning: str) -> None:
    """Says on stderr, in one line, that `former` is deprecated and `current` is the name to use."""
    print(f"defender-hub: warning: {former} is deprecated here: use {current} ({meaning})", file=sys.stderr)


class _FormerVariableValue(str):
    """An account read from DEFENDER_HUB_ACCOUNT_ID for a flag's default: argparse passes a string default through
    the flag's `type` only when the flag is not given, which is when its deprecation is said."""

    __slots__ = ()


def _account_type(variable: str, meaning: str) -> Callable[[str], str]:
    """The `type` of an account flag: the account as given, with a warning when it came from the former variable."""

    def account(value: str) -> str:
        if isinstance(value, _FormerVariableValue):
            _say_deprecated(f"DEFENDER_HUB_{_FORMER_ACCOUNT_VARIABLE}", f"DEFENDER_HUB_{variable}", meaning)
        return str(value)

    return account


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
        _say_deprecated(_FORMER_ACCOUNT_FLAG, self._current, self._meaning)
        setattr(namespace, self.dest, values)


def _account_flag(parser: argparse.ArgumentParser, name: str, meaning: str, default_help: str) -> None:
    """Adds --`name` (and DEFENDER_HUB_`NAME`) for the account `meaning` says, as the argument `name` names, with
    --account-id and DEFENDER_HUB_ACCOUNT_ID still taken, with a warning, where they had this meaning."""
    flag, variable, dest = f"--{name}", name.upper().replace("-", "_"), name.replace("-", "_")
    former = env(_FORMER_ACCOUNT_VARIABLE)
    parser.add_argument(
        flag,
        dest=dest,
        type=_account_type(variable, meaning),
        default=env(variable) or (_FormerVariableValue(former) if former else None),
        metavar="ACCOUNT",
        help=f"{meaning} (DEFENDER_HUB_{variable}; default: {default_help})",
    )
    parser.add_argument(
        _FORMER_ACCOUNT_FLAG,
        dest=dest,
        action=_FormerAccountFlag,
        current=flag,
        meaning=meaning,
        default=argparse.SUPPRESS,
        metavar="ACCOUNT",
        help=f"deprecated: the same as {flag} (default: none)",
    )


def default_account_flag(parser: argparse.ArgumentParser) -> None:
    """Adds --default-account, read as `default_account`: the account of events that carry none."""
    _account_flag(parser, "default-account", "the account of events that carry none", "none, such events are refused")


def import_account_flag(parser: argparse.ArgumentParser) -> None:
    """Adds --import-account, read as `import_account`: the account imported into without a role."""
    _account_flag(parser, "import-account", "the account imported into without a role", "STS says")
