"""The errors the domain raises, at the root of the project's hierarchy.

They live here so the domain stays free of every other notifier module; :mod:`notifier.errors`
re-exports them beside the rest of the hierarchy, which is where the other layers import them from.
Messages never carry secrets or the free text of a request: they name the field at fault.
"""

from __future__ import annotations


class NotifierError(Exception):
    """Base of every error notifier raises on purpose."""


class InvalidRequest(NotifierError):
    """A takedown request (or acknowledgement) was rejected; ``reason`` names the field at fault."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
