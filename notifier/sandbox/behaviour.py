"""What the simulated staff of every sandbox platform share: the profiles a notice's treatment is
drawn from, the record of what they did, and the way their mail reaches notifier."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage

import aiosmtplib

__all__ = [
    "HOUR",
    "PROFILES",
    "Action",
    "Behaviour",
    "Inbound",
    "Profile",
    "Record",
    "notice_rng",
    "random_delay",
]

HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class Profile:
    """How one platform's staff treat one notice. Delays are hours after receipt, drawn uniformly."""

    name: str
    auto_reply: bool = True  # a receipt with a ticket, a minute after receipt (email platforms)
    ack_hours: tuple[float, float] | None = None  # the human "received" answer
    removal_hours: tuple[float, float] | None = None  # the removal (after the acknowledgement)
    exact_removal_hours: float | None = None  # removal exactly this long after receipt
    bounce_first: bool = False  # the first delivery soft-bounces (mailbox full); the re-send is answered
    rejected_share: float = 0.0  # API platforms: the share of items refused instead of removed
    # Email platforms: the human answer (at ``ack_hours``) is a question about the notice; the
    # removal comes ``removal_hours`` after the authority's answer to it.
    asks_clarification: bool = False


PROFILES: dict[str, Profile] = {
    "prompt": Profile("prompt", ack_hours=(0.2, 3.0), removal_hours=(1.0, 12.0)),
    "slow": Profile("slow", ack_hours=(5.0, 20.0), removal_hours=(16.0, 33.0)),
    # The regulator's figure: the most reluctant platform removed its last item in exactly 36 h.
    "longest": Profile("longest", ack_hours=(2.0, 6.0), exact_removal_hours=36.0),
    "bouncing": Profile("bouncing", ack_hours=(0.5, 4.0), removal_hours=(2.0, 14.0), bounce_first=True),
    "silent": Profile("silent", auto_reply=False),
    "api": Profile(
        "api", auto_reply=False, ack_hours=(0.1, 2.0), removal_hours=(2.0, 30.0), rejected_share=0.08
    ),
    "portal": Profile("portal", auto_reply=False, removal_hours=(4.0, 26.0)),
    # One-hour removal orders over the API: answered within the hour, or (one of them) hours late.
    "order": Profile("order", auto_reply=False, ack_hours=(0.05, 0.4), removal_hours=(0.2, 0.9)),
    "order_late": Profile("order_late", auto_reply=False, ack_hours=(0.1, 0.4), removal_hours=(2.0, 4.0)),
    "clarify": Profile("clarify", ack_hours=(0.5, 2.0), removal_hours=(2.0, 8.0), asks_clarification=True),
}


@dataclass(frozen=True, slots=True)
class Behaviour:
    """A platform's mix of profiles (weights), and request ids that get a given profile."""

    mix: Mapping[str, float]
    pinned: Mapping[str, str] = field(default_factory=dict)  # request id -> profile name

    def choose(self, rng: random.Random, request_ids: Sequence[str]) -> Profile:
        for request_id in request_ids:
            if request_id in self.pinned:
                return PROFILES[self.pinned[request_id]]
        names = sorted(self.mix)
        return PROFILES[rng.choices(names, weights=[self.mix[n] for n in names])[0]]


@dataclass(frozen=True, slots=True)
class Action:
    """One thing a platform did, at business time ``at``."""

    at: datetime
    platform: str
    notice_id: str
    # notice_received | bounce | auto_reply | received | clarification_asked | removed | rejected
    # | portal_ticket
    what: str
    request_ids: tuple[str, ...] = ()
    detail: str = ""


@dataclass
class Record:
    actions: list[Action] = field(default_factory=list)
    profiles: dict[str, str] = field(default_factory=dict)  # notice id -> profile name

    def add(self, action: Action) -> None:
        self.actions.append(action)


@dataclass(frozen=True, slots=True)
class Inbound:
    """Where staff send mail: notifier's ``inbound_smtp`` listener, and the authority's address."""

    host: str
    port: int
    reply_to: str

    async def send(self, message: EmailMessage | bytes, *, sender: str, recipient: str) -> None:
        """Hand ``message`` to notifier's listener; ``sender=""`` is the null reverse path
        (``MAIL FROM:<>``) of bounces and auto-replies."""
        data = message if isinstance(message, bytes) else message.as_bytes()
        async with aiosmtplib.SMTP(hostname=self.host, port=self.port, start_tls=False, timeout=30) as client:
            await client.sendmail(sender, [recipient], data)


def random_delay(rng: random.Random, bounds: tuple[float, float]) -> timedelta:
    return timedelta(seconds=round(rng.uniform(*bounds) * HOUR))


def notice_rng(seed: int, notice_id: str) -> random.Random:
    # A string seed is hashed with SHA-512: the same on every run and every machine.
    return random.Random(f"{seed}/{notice_id}")  # noqa: S311  (simulation, not security)
