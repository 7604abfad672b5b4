"""Every setting of defender-hub: one table (`table`), one resolver and the shard processes' environment
(`resolving`).

A value comes from the flag first, then the environment variable, then the settings file's `[run]` table (for `run`),
then the default. `run` hands its shard processes the settings they read as variables, which they read back with
`shard_settings`; nothing else writes or reads those variables.
"""

from defender_hub.settings.resolving import (
    add_flags,
    resolve,
    said,
    say_deprecated,
    shard_environment,
    shard_settings,
)
from defender_hub.settings.table import (
    INITIAL_POSITIONS,
    MAX_RECORDS,
    OUTAGE_LIMIT_SECONDS,
    PARKED_RETRY_SECONDS,
    POLL_MILLIS,
    REFRESH_HOURS,
    RETRIEVAL_MODES,
    SETTINGS,
    Setting,
    from_environment,
    named,
    variable,
)

__all__ = [
    "INITIAL_POSITIONS",
    "MAX_RECORDS",
    "OUTAGE_LIMIT_SECONDS",
    "PARKED_RETRY_SECONDS",
    "POLL_MILLIS",
    "REFRESH_HOURS",
    "RETRIEVAL_MODES",
    "SETTINGS",
    "Setting",
    "add_flags",
    "from_environment",
    "named",
    "resolve",
    "said",
    "say_deprecated",
    "shard_environment",
    "shard_settings",
    "variable",
]
