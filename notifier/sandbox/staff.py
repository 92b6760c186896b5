"""Simulated platform staff: how each sandbox platform answers the notices it receives.

Every notice gets a behaviour drawn from its platform's mix of :class:`Profile` s, with random
delays from a generator seeded by the sandbox seed and the notice id, so a run is reproducible
whatever order concurrent sends arrive in. Staff answer the way real platforms do:

* email platforms: an RFC 3834 auto-reply with a ticket (a receipt), a human reply saying the
  notice was received (an acknowledgement), a later one saying the content was removed, or a
  delivery-status bounce to the VERP address for a full mailbox (the notice is sent again), or
  nothing at all (the silent platform);
* the API platform: a ticket in the 2xx answer, then signed Standard Webhooks callbacks: received,
  then per item removed or rejected;
* the portal platform: after staff of the authority submit a notice on the :class:`Portal` and get
  its ticket, an email naming that ticket (no thread headers, no notice id) saying it was removed.

Everything the staff do is kept in :attr:`Record.actions` with its business time, so tests can
compare what notifier recorded with what the platforms actually did.
"""

from __future__ import annotations

import itertools
import json
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

import aiohttp
import aiosmtplib
from standardwebhooks.webhooks import Webhook

from notifier.clock import Clock
from notifier.sandbox.api import ReceivedNotice
from notifier.sandbox.smtp import Received
from notifier.sandbox.timeline import Timeline

HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class Profile:
    """How one platform's staff treat one notice. Delays are hours after receipt, drawn uniformly."""

    name: str
    auto_reply: bool = True  # a receipt with a ticket, a minute after receipt (email platforms)
    ack_hours: tuple[float, float] | None = None  # the human "received" answer
    removal_hours: tuple[float, float] | None = None  # the removal (after the acknowledgement)
    exact_removal_hours: float | None = None  # removal exactly this long after receipt
    bounce_first: bool = False  # the first delivery bounces (mailbox full); the re-send is answered
    rejected_share: float = 0.0  # API platforms: the share of items refused instead of removed


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
    what: str  # notice_received | bounce | auto_reply | received | removed | rejected | portal_ticket
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


def _hours(rng: random.Random, bounds: tuple[float, float]) -> timedelta:
    return timedelta(seconds=round(rng.uniform(*bounds) * HOUR))


def _rng(seed: int, notice_id: str) -> random.Random:
    # A string seed is hashed with SHA-512: the same on every run and every machine.
    return random.Random(f"{seed}/{notice_id}")  # noqa: S311  (simulation, not security)


class MailStaff:
    """The staff behind one email platform's abuse address."""

    def __init__(
        self,
        *,
        platform: str,
        addresses: Sequence[str],
        behaviour: Behaviour,
        timeline: Timeline,
        clock: Clock,
        record: Record,
        inbound: Inbound,
        seed: int,
        scale: float = 1.0,
    ) -> None:
        self.platform = platform
        self.addresses = {a.lower() for a in addresses}
        self._behaviour = behaviour
        self._timeline = timeline
        self._clock = clock
        self._record = record
        self._inbound = inbound
        self._seed = seed
        self._scale = scale
        self._domain = next(iter(sorted(self.addresses))).rpartition("@")[2]
        self._answered: set[str] = set()  # notices handled (a re-send after a bounce is answered)
        self._bounced: set[str] = set()
        self._tickets = itertools.count(48_210)

    def later(self, delay: timedelta) -> datetime:
        return self._clock.now() + delay * self._scale

    def on_mail(self, received: Received) -> None:
        """The sink's listener: a message arrived for one of the platform's addresses."""
        if not self.addresses.intersection(r.lower() for r in received.recipients):
            return
        mail = received.message()
        message_id = str(mail["Message-ID"] or "")
        local = message_id.strip("<>").partition("@")[0]
        notice_id, _, kind = local.rpartition(".")
        if kind != "notice" or notice_id in self._answered:
            return  # reminders and escalations are read, not answered; a duplicate is ignored
        rng = _rng(self._seed, notice_id)
        request_ids = _request_ids(mail)
        profile = self._behaviour.choose(rng, request_ids)
        self._record.profiles.setdefault(notice_id, profile.name)
        if profile.bounce_first and notice_id not in self._bounced:
            self._bounced.add(notice_id)
            self._timeline.at(
                self.later(timedelta(minutes=2)),
                f"{notice_id} bounce",
                lambda: self._bounce(received, mail, notice_id, request_ids),
            )
            return
        self._answered.add(notice_id)
        self._record.add(Action(self._clock.now(), self.platform, notice_id, "notice_received", request_ids))
        subject = str(mail["Subject"] or "")
        if profile.auto_reply:
            ticket = f"{self.platform[:2].upper()}-{next(self._tickets)}"
            self._timeline.at(
                self.later(timedelta(minutes=1)),
                f"{notice_id} auto-reply",
                lambda: self._auto_reply(notice_id, message_id, subject, ticket, request_ids),
            )
        ack_after = _hours(rng, profile.ack_hours) if profile.ack_hours else None
        if ack_after is not None:
            self._timeline.at(
                self.later(ack_after),
                f"{notice_id} received",
                lambda: self._reply(notice_id, message_id, subject, request_ids, removed=False),
            )
        removal_after = None
        if profile.exact_removal_hours is not None:
            removal_after = timedelta(hours=profile.exact_removal_hours)
        elif profile.removal_hours is not None:
            removal_after = _hours(rng, profile.removal_hours)
            if ack_after is not None:
                removal_after = max(removal_after, ack_after + timedelta(minutes=30))
        if removal_after is not None:
            self._timeline.at(
                self.later(removal_after),
                f"{notice_id} removed",
                lambda: self._reply(notice_id, message_id, subject, request_ids, removed=True),
            )

    # -- what they send ---------------------------------------------------------------------------

    def _mail(self, *, sender: str, subject: str, body: str, in_reply_to: str | None) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = sender
        mail["To"] = self._inbound.reply_to
        mail["Subject"] = subject
        mail["Date"] = format_datetime(self._clock.now())
        mail["Message-ID"] = make_msgid(domain=self._domain)
        if in_reply_to:
            mail["In-Reply-To"] = in_reply_to
            mail["References"] = in_reply_to
        mail.set_content(body)
        return mail

    async def _auto_reply(
        self, notice_id: str, message_id: str, subject: str, ticket: str, request_ids: tuple[str, ...]
    ) -> None:
        sender = f"noreply@{self._domain}"
        mail = self._mail(
            sender=sender,
            subject=f"Automatic reply: {subject}",
            body=(
                "This is an automatic message. Your report has been received and will be reviewed.\n"
                f"Ticket number: {ticket}\n"
            ),
            in_reply_to=message_id,
        )
        mail["Auto-Submitted"] = "auto-replied"
        mail["X-Autoreply"] = "yes"
        await self._inbound.send(mail, sender="", recipient=self._inbound.reply_to)
        self._record.add(
            Action(self._clock.now(), self.platform, notice_id, "auto_reply", request_ids, ticket)
        )

    async def _reply(
        self, notice_id: str, message_id: str, subject: str, request_ids: tuple[str, ...], *, removed: bool
    ) -> None:
        sender = f"trust-safety@{self._domain}"
        body = (
            "Hello,\n\nWe have removed the content reported in your notice. Thank you for the report.\n"
            if removed
            else "Hello,\n\nThank you for your notice. We are reviewing the reported content.\n"
        )
        mail = self._mail(sender=sender, subject=f"Re: {subject}", body=body, in_reply_to=message_id)
        await self._inbound.send(mail, sender=sender, recipient=self._inbound.reply_to)
        what = "removed" if removed else "received"
        self._record.add(Action(self._clock.now(), self.platform, notice_id, what, request_ids))

    async def _bounce(
        self, received: Received, original: EmailMessage, notice_id: str, request_ids: tuple[str, ...]
    ) -> None:
        """A Postfix-style delivery-status notification (RFC 3464) for a full mailbox, to the VERP
        sender, with the returned message's headers."""
        recipient = received.recipients[0]
        boundary = f"bounce-{notice_id}"
        returned = b"".join(
            f"{name}: {value}\r\n".encode("utf-8", "replace")
            for name, value in original.items()
            if name.lower() in ("from", "to", "subject", "date", "message-id")
        )
        head = (
            f"From: MAILER-DAEMON@mx.{self._domain} (Mail Delivery System)\r\n"
            f"To: {received.sender}\r\n"
            "Subject: Undelivered Mail Returned to Sender\r\n"
            f"Date: {format_datetime(self._clock.now())}\r\n"
            f"Message-ID: {make_msgid(domain=f'mx.{self._domain}')}\r\n"
            "Auto-Submitted: auto-replied\r\n"
            "MIME-Version: 1.0\r\n"
            f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n'
            "\r\n"
            f"--{boundary}\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
            f"This is the mail system at host mx.{self._domain}.\r\n\r\n"
            "I'm sorry to have to inform you that your message could not be delivered\r\n"
            f"to one or more recipients.\r\n\r\n<{recipient}>: mailbox full\r\n\r\n"
            f"--{boundary}\r\n"
            "Content-Type: message/delivery-status\r\n\r\n"
            f"Reporting-MTA: dns; mx.{self._domain}\r\n\r\n"
            f"Final-Recipient: rfc822; {recipient}\r\n"
            "Action: failed\r\nStatus: 5.2.2\r\n"
            "Diagnostic-Code: smtp; 552 5.2.2 Mailbox full\r\n\r\n"
            f"--{boundary}\r\n"
            "Content-Type: text/rfc822-headers\r\n\r\n"
        ).encode()
        raw = head + returned + f"\r\n--{boundary}--\r\n".encode()
        await self._inbound.send(raw, sender="", recipient=received.sender)
        self._record.add(Action(self._clock.now(), self.platform, notice_id, "bounce", request_ids, "5.2.2"))


class ApiStaff:
    """The staff behind the API platform: signed callbacks to the notice's ``callback_url``."""

    def __init__(
        self,
        *,
        platform: str,
        behaviour: Behaviour,
        secret: str,
        timeline: Timeline,
        clock: Clock,
        record: Record,
        seed: int,
        scale: float = 1.0,
    ) -> None:
        self.platform = platform
        self._behaviour = behaviour
        self._webhook = Webhook(secret)
        self._timeline = timeline
        self._clock = clock
        self._record = record
        self._seed = seed
        self._scale = scale
        self._session: aiohttp.ClientSession | None = None
        self._answered: set[str] = set()
        self._ids = itertools.count(1)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def on_notice(self, notice: ReceivedNotice) -> None:
        payload = notice.payload
        notice_id = str(payload.get("notice_id", ""))
        callback_url = payload.get("callback_url")
        if not notice_id or notice_id in self._answered or not isinstance(callback_url, str):
            return
        self._answered.add(notice_id)
        request_ids = tuple(str(item["request_id"]) for item in payload.get("items", []))
        rng = _rng(self._seed, notice_id)
        profile = self._behaviour.choose(rng, request_ids)
        self._record.profiles.setdefault(notice_id, profile.name)
        now = self._clock.now()
        self._record.add(
            Action(now, self.platform, notice_id, "notice_received", request_ids, notice.ticket or "")
        )
        ack_after = _hours(rng, profile.ack_hours) if profile.ack_hours else None
        if ack_after is not None:
            body = {"notice_id": notice_id, "status": "received", "ticket": notice.ticket}
            self._timeline.at(
                now + ack_after * self._scale,
                f"{notice_id} received",
                lambda: self._callback(callback_url, body, notice_id, "received", request_ids),
            )
        if profile.removal_hours is not None:
            removal_after = _hours(rng, profile.removal_hours)
            if ack_after is not None:
                removal_after = max(removal_after, ack_after + timedelta(minutes=30))
            rejected = tuple(r for r in request_ids if rng.random() < profile.rejected_share)
            removed = tuple(r for r in request_ids if r not in rejected)
            items = [{"request_id": r, "status": "removed"} for r in removed]
            items += [{"request_id": r, "status": "rejected"} for r in rejected]
            final = {"notice_id": notice_id, "status": "partial", "items": items, "ticket": notice.ticket}
            self._timeline.at(
                now + removal_after * self._scale,
                f"{notice_id} outcome",
                lambda: self._outcome(callback_url, final, notice_id, removed, rejected),
            )

    async def _outcome(
        self,
        url: str,
        body: dict[str, Any],
        notice_id: str,
        removed: tuple[str, ...],
        rejected: tuple[str, ...],
    ) -> None:
        await self._post(url, body)
        now = self._clock.now()
        if removed:
            self._record.add(Action(now, self.platform, notice_id, "removed", removed))
        if rejected:
            self._record.add(Action(now, self.platform, notice_id, "rejected", rejected))

    async def _callback(
        self, url: str, body: dict[str, Any], notice_id: str, what: str, request_ids: tuple[str, ...]
    ) -> None:
        await self._post(url, body)
        self._record.add(Action(self._clock.now(), self.platform, notice_id, what, request_ids))

    async def _post(self, url: str, body: dict[str, Any]) -> None:
        body = {**body, "at": self._clock.now().isoformat().replace("+00:00", "Z")}
        data = json.dumps(body, separators=(",", ":"))
        webhook_id = f"msg_{self.platform}_{next(self._ids):06d}"
        # Transport signatures stay on real time: notifier checks them against its wall clock.
        signed_at = datetime.fromtimestamp(time.time()).astimezone()
        signature = self._webhook.sign(webhook_id, signed_at, data)
        headers = {
            "content-type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(signed_at.timestamp())),
            "webhook-signature": signature,
        }
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        async with self._session.post(url, data=data.encode(), headers=headers) as response:
            if response.status != 204:
                raise RuntimeError(f"callback answered {response.status}: {(await response.text())[:200]}")


class Portal:
    """The portal platform's web form: a submission gets a ticket; its staff answer by email later."""

    def __init__(
        self,
        *,
        platform: str,
        address: str,
        behaviour: Behaviour,
        timeline: Timeline,
        clock: Clock,
        record: Record,
        inbound: Inbound,
        seed: int,
        scale: float = 1.0,
    ) -> None:
        self.platform = platform
        self._address = address
        self._domain = address.rpartition("@")[2]
        self._behaviour = behaviour
        self._timeline = timeline
        self._clock = clock
        self._record = record
        self._inbound = inbound
        self._seed = seed
        self._scale = scale
        self._tickets = itertools.count(1001)
        self.submissions: dict[str, str] = {}  # notice id -> ticket

    def submit(self, notice_id: str, request_ids: Sequence[str]) -> str:
        """Staff of the authority filed ``notice_id`` on the portal: its ticket number."""
        if notice_id in self.submissions:
            return self.submissions[notice_id]
        ticket = f"CS-{next(self._tickets)}"
        self.submissions[notice_id] = ticket
        ids = tuple(request_ids)
        self._record.add(Action(self._clock.now(), self.platform, notice_id, "portal_ticket", ids, ticket))
        rng = _rng(self._seed, notice_id)
        profile = self._behaviour.choose(rng, ids)
        self._record.profiles.setdefault(notice_id, profile.name)
        if profile.removal_hours is not None:
            self._timeline.at(
                self._clock.now() + _hours(rng, profile.removal_hours) * self._scale,
                f"{notice_id} removed",
                lambda: self._confirm(notice_id, ticket, ids),
            )
        return ticket

    async def _confirm(self, notice_id: str, ticket: str, request_ids: tuple[str, ...]) -> None:
        # No thread headers and no notice id: notifier ties it to the notice by the ticket it learnt.
        mail = EmailMessage()
        mail["From"] = self._address
        mail["To"] = self._inbound.reply_to
        mail["Subject"] = f"Report ticket {ticket}: processed"
        mail["Date"] = format_datetime(self._clock.now())
        mail["Message-ID"] = make_msgid(domain=self._domain)
        mail.set_content(
            f"Hello,\n\nRegarding ticket {ticket}: we have removed the content you reported.\n\n"
            "안녕하세요. 신고하신 콘텐츠는 삭제되었습니다.\n"
        )
        await self._inbound.send(mail, sender=self._address, recipient=self._inbound.reply_to)
        self._record.add(Action(self._clock.now(), self.platform, notice_id, "removed", request_ids, ticket))


def _request_ids(mail: EmailMessage) -> tuple[str, ...]:
    """The request ids a notice email carries, from its JSON attachment (one report per URL)."""
    for part in mail.iter_attachments():
        if part.get_content_type() == "application/json" or str(part.get_filename() or "").endswith(".json"):
            payload = part.get_payload(decode=True)
            if not isinstance(payload, bytes):
                continue
            try:
                reports = json.loads(payload)
            except ValueError:
                continue
            if isinstance(reports, dict):
                reports = reports.get("reports", [])
            ids = [str(r.get("request_id")) for r in reports if isinstance(r, dict) and r.get("request_id")]
            return tuple(dict.fromkeys(ids))
    return ()
