"""How each platform is reached, and what a channel is given to render for a notice."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

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
    return NoticeContent(
        notice_id=notice.notice_id,
        platform=route.platform,
        platform_name=route.name,
        language=route.language,
        created_at=notice.created_at,
        ack_by=base + route.ack_within,
        remove_by=base + route.removal_within,
        authority=authority,
        requests=tuple(requests),
        category_labels=dict(labels),
        callback_url=route.callback_url,
        kind=kind,
        ack_within=route.ack_within,
        removal_within=route.removal_within,
    )


def process_owner() -> str:
    """A lease owner id unique to this process: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
