"""Every error defender-hub raises on purpose, in one hierarchy.

    DefenderHubError
    ├── ConfigError            bad or missing configuration; the job must not start
    └── EventError             one event can't become findings; it is reported or dead-lettered, the rest go on
        ├── EventDecodeError   not JSON, not UTF-8, nested too deep, or a field of the wrong type
        ├── UnknownEventError  valid JSON, but none of the event kinds defender-hub knows
        └── EventMappingError  a known kind whose content can't make a valid finding (no account id, say)

Code that handles one event catches `EventError`; nothing else is swallowed.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DefenderHubError",
    "EventDecodeError",
    "EventError",
    "EventMappingError",
    "UnknownEventError",
]


class DefenderHubError(Exception):
    """Base of every error defender-hub raises on purpose."""


class ConfigError(DefenderHubError):
    """Configuration is missing or invalid."""


class EventError(DefenderHubError):
    """One event can't be turned into findings."""


class EventDecodeError(EventError):
    """The event's bytes are not a well-formed event of its kind."""


class UnknownEventError(EventError):
    """The event is well-formed JSON of no known kind."""


class EventMappingError(EventError):
    """A decoded event lacks what a valid finding needs."""
