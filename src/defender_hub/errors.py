"""Every error defender-hub raises on purpose, in one hierarchy.

    DefenderHubError
    ├── ConfigError            bad or missing configuration; the job must not start
    │   └── PortTaken          a port the local stack was told to listen on is another process's
    ├── EventSkipped           an event that, by its source's rules, makes no finding; counted, never dead-lettered
    ├── EventError             one event can't become findings; it is reported or dead-lettered, the rest go on
    │   ├── EventDecodeError   not JSON, not UTF-8, nested too deep, or a field of the wrong type
    │   ├── UnknownEventError  valid JSON, but none of the event kinds defender-hub knows
    │   └── EventMappingError  a known kind whose content can't make a valid finding (no account id, say)
    ├── LaneRefused            an account and Region can't be imported in now; its findings are parked, the rest go on
    ├── ForwardError           an SNS message the forwarder can't put on the stream; reported, not retried forever
    └── SinkError              findings could not be delivered; the caller must not checkpoint past them
        ├── SinkStopped        a stop was requested while Security Hub was still being retried
        ├── DeadLetterError    the dead-letter destination failed, so a rejected finding can't be kept
        └── LedgerError        the findings ledger can't be read or written, so a delivery can't be planned or kept

Code that handles one event catches `EventSkipped` (count it, go on) and `EventError` (dead-letter it, go on);
nothing else is swallowed. A `SinkError` ends the work at hand:
what was not delivered is still owed, and a checkpoint past it would lose it.

`NO_CREDENTIALS` is what a `ConfigError` (or the command line, for botocore's own error) says when the credential
chain has none, wherever that is found out.
"""

from __future__ import annotations

__all__ = [
    "NO_CREDENTIALS",
    "ConfigError",
    "DeadLetterError",
    "DefenderHubError",
    "EventDecodeError",
    "EventError",
    "EventMappingError",
    "EventSkipped",
    "ForwardError",
    "LaneRefused",
    "LedgerError",
    "PortTaken",
    "SinkError",
    "SinkStopped",
    "UnknownEventError",
]

NO_CREDENTIALS = (
    "no AWS credentials: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run where a role gives "
    "them"
)


class DefenderHubError(Exception):
    """Base of every error defender-hub raises on purpose."""


class ConfigError(DefenderHubError):
    """Configuration is missing or invalid."""


class EventSkipped(DefenderHubError):
    """A well-formed event that its source's rules turn into no finding (a Health event not about security, say).

    Not an EventError: nothing is wrong with it, so it is counted by `reason` and never dead-lettered.
    """

    def __init__(self, reason: str, source: str) -> None:
        super().__init__(reason)
        self.reason, self.source = reason, source


class EventError(DefenderHubError):
    """One event can't be turned into findings."""


class EventDecodeError(EventError):
    """The event's bytes are not a well-formed event of its kind."""


class UnknownEventError(EventError):
    """The event is well-formed JSON of no known kind."""


class EventMappingError(EventError):
    """A decoded event lacks what a valid finding needs."""


class ForwardError(DefenderHubError):
    """An SNS message that is no Device Defender notification, or whose records Kinesis would not take."""


class LaneRefused(DefenderHubError):
    """Security Hub, or the way to it, refuses one account and Region until a person fixes it."""

    def __init__(self, reason: str, code: str) -> None:
        super().__init__(reason)
        self.reason, self.code = reason, code


class SinkError(DefenderHubError):
    """Findings could not be delivered; nothing past them may be checkpointed."""


class SinkStopped(SinkError):
    """A stop was requested before every finding was accepted or dead-lettered."""


class DeadLetterError(SinkError):
    """The dead-letter destination could not durably keep a rejected finding or record."""


class LedgerError(SinkError):
    """The findings ledger could not be read or written: what it would have recorded is still owed."""


class PortTaken(ConfigError):
    """A port that the local stack was to listen on is another process's."""

    def __init__(self, port: int, host: str) -> None:
        super().__init__(f"port {port} on {host} is taken by another process")
        self.port, self.host = port, host
