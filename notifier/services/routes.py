"""How each platform is reached, and what a channel is given to render for a notice."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from notifier.domain.deadlines import DeadlineProfile
from notifier.domain.delivery import Channels
from notifier.domain.models import TakedownRequest
from notifier.domain.notices import Authority, MessageKind, Notice, NoticeContent
from notifier.errors import NotifierError
from notifier.ports import Channel


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """How one platform is reached, and its rules."""

    platform: str
    name: str
    language: str
    primary: Channel
    fallback: Channel | None
    max_items: int
    max_wait: timedelta
    rate_per_minute: int
    ack_within: timedelta
    removal_within: timedelta
    callback_url: str | None = None
    # From delivery to its requests' first URL check (None: verification is off, and the timer
    # starts at delivery for whenever it is turned on).
    first_check_after: timedelta | None = None
    # The deadline profiles as they apply on this platform (its overrides applied), by name.
    profiles: Mapping[str, DeadlineProfile] = field(default_factory=dict)

    def profile(self, name: str | None) -> DeadlineProfile | None:
        """The profile a notice or request names, as it applies here; None for the platform's own
        bounds (or a profile no longer configured)."""
        return self.profiles.get(name) if name is not None else None

    def bounds(self, deadline: str | None) -> tuple[timedelta, timedelta]:
        """(ack_within, removal_within) for requests of profile ``deadline``."""
        profile = self.profile(deadline)
        if profile is None:
            return self.ack_within, self.removal_within
        return profile.ack_within, profile.removal_within

    def channel(self, name: str) -> Channel:
        if name == self.primary.name:
            return self.primary
        if self.fallback is not None and name == self.fallback.name:
            return self.fallback
        raise NotifierError(f"platform {self.platform} has no {name} channel configured")

    @property
    def channels(self) -> Channels:
        """The channel names, as the delivery rules know them."""
        return Channels(
            primary=self.primary.name, fallback=self.fallback.name if self.fallback is not None else None
        )


def notice_content(
    notice: Notice,
    route: Route,
    requests: Sequence[TakedownRequest],
    *,
    authority: Authority,
    labels: Mapping[str, str],
    kind: MessageKind,
    sent_at: datetime | None = None,
) -> NoticeContent:
    """What a channel renders for ``notice``: the notice itself, or a reminder or escalation of it.

    The deadlines it states are the ones the SLA is judged against: the bounds run from delivery, so
    they are counted from ``sent_at`` (the moment of this send, which becomes the delivery time when
    the platform takes it), else from the notice's delivery (its reminders and escalations), else from
    its creation. A re-send restates them from its own moment, as a re-delivery restarts the clock.
    """
    base = sent_at or notice.delivered_at or notice.created_at
    ack_within, removal_within = route.bounds(notice.deadline)
    return NoticeContent(
        notice_id=notice.notice_id,
        platform=route.platform,
        platform_name=route.name,
        language=route.language,
        created_at=notice.created_at,
        ack_by=base + ack_within,
        remove_by=base + removal_within,
        authority=authority,
        requests=tuple(requests),
        category_labels=dict(labels),
        callback_url=route.callback_url,
        kind=kind,
        ack_within=ack_within,
        removal_within=removal_within,
        deadline=route.profile(notice.deadline),
        urgent=notice.urgent,
    )


def process_owner() -> str:
    """A lease owner id unique to this process: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
