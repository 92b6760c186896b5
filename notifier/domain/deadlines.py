"""Deadline profiles (SPEC §14): the bounds a legal basis sets, whichever platform receives the request.

A request's profile is the one it names (``"deadline"``), else its category's, else none: the
platform's own bounds apply as before. A platform may set its own bounds for a profile, but not
looser than the profile's unless its configuration says ``loosen = true``. A notice holds requests
of one profile, so its bounds are that profile's (as the platform sets them). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

# A request waits in a batch at most this share of its profile's acknowledgement bound.
MAX_BATCH_SHARE = 0.05


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadlineProfile:
    """One profile's bounds, as they apply on one platform."""

    name: str
    label: str
    ack_within: timedelta
    removal_within: timedelta
    remind_at: float = 0.66
    urgent: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.remind_at < 1:
            raise ValueError("remind_at must be between 0 and 1")
        if min(self.ack_within, self.removal_within) <= timedelta(0):
            raise ValueError("deadline bounds must be positive")
        if self.removal_within < self.ack_within:
            raise ValueError("removal_within must not be shorter than ack_within")


def resolve_deadline(
    requested: str | None, category: str, category_deadlines: Mapping[str, str]
) -> str | None:
    """The profile a request is judged by: the one it names, else its category's, else None."""
    return requested if requested is not None else category_deadlines.get(category)


def batch_wait(max_wait: timedelta, profile: DeadlineProfile | None) -> timedelta:
    """How long a request of ``profile`` may wait in a batch: the platform's ``max_wait``, capped
    at 5 % of the profile's acknowledgement bound; nothing at all for an urgent profile."""
    if profile is None:
        return max_wait
    if profile.urgent:
        return timedelta(0)
    return min(max_wait, profile.ack_within * MAX_BATCH_SHARE)


def looser_keys(
    base: DeadlineProfile, ack_within: timedelta | None, removal_within: timedelta | None
) -> list[str]:
    """The bounds a platform's override makes looser than the profile's (longer), by key."""
    looser: list[str] = []
    if ack_within is not None and ack_within > base.ack_within:
        looser.append("ack_within")
    if removal_within is not None and removal_within > base.removal_within:
        looser.append("removal_within")
    return looser
