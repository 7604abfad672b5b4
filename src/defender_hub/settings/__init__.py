"""Every setting of defender-hub is a row of one table (`table`); one resolver gives each its value (`resolving`).

A value comes from the flag first, then the environment variable, then the settings file's `[run]` table (for `run`),
then the default. `run` hands its shard processes the settings they read as variables, and they read them back with
`resolving.shard_settings`; nothing else writes or reads those variables.

This package's own namespace holds the table alone, so that what reads one setting (the Lambda forwarder, the sink's
defaults) loads no more than the table; the commands import the resolver from `resolving`.
"""

from defender_hub.settings.table import (
    DEAD_LETTERS_FILE,
    INITIAL_POSITIONS,
    LEDGER_FILE,
    MAX_CLOCK_SKEW_MINUTES,
    MAX_RECORDS,
    OUTAGE_LIMIT_SECONDS,
    PARKED_RETRY_SECONDS,
    POLL_MILLIS,
    REFRESH_HOURS,
    RETRIEVAL_MODES,
    SEND_WAIT_MILLIS,
    SETTINGS,
    Setting,
    from_environment,
    named,
    said,
    variable,
)

__all__ = [
    "DEAD_LETTERS_FILE",
    "INITIAL_POSITIONS",
    "LEDGER_FILE",
    "MAX_CLOCK_SKEW_MINUTES",
    "MAX_RECORDS",
    "OUTAGE_LIMIT_SECONDS",
    "PARKED_RETRY_SECONDS",
    "POLL_MILLIS",
    "REFRESH_HOURS",
    "RETRIEVAL_MODES",
    "SEND_WAIT_MILLIS",
    "SETTINGS",
    "Setting",
    "from_environment",
    "named",
    "said",
    "variable",
]
