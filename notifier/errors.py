"""The project's exceptions, classified once.

Every error notifier raises on purpose derives from :class:`NotifierError`. Messages never carry
secrets or the free text of a request (explanations and notes may name victims): they name the
file, key, field or record at fault instead.
"""

from __future__ import annotations

# The root of the hierarchy and the rejection the domain raises are defined beside the domain,
# which imports nothing of notifier's but itself; every other layer imports them from here.
from notifier.domain.errors import InvalidRequest, NotifierError

__all__ = [
    "AlreadyRunning",
    "ConfigError",
    "InvalidRequest",
    "NotifierError",
    "PermanentError",
    "QueueUnavailable",
    "StoreUnavailable",
    "TransientError",
]


class ConfigError(NotifierError):
    """The configuration cannot be used; the message names the file and key at fault."""


class TransientError(NotifierError):
    """A failure worth retrying: the same operation may succeed later."""


class PermanentError(NotifierError):
    """A failure that retrying will not cure."""


class StoreUnavailable(TransientError):
    """The store could not be reached or refused the operation for a reason that may pass."""


class QueueUnavailable(TransientError):
    """The queue broker could not be reached."""


class AlreadyRunning(NotifierError):
    """Another ``notifier run`` already owns this SQLite file."""
