"""The simulated staff behind an email platform's abuse address: a receipt, a human answer, a
removal, or a soft bounce (:mod:`notifier.sandbox.bounces`) of the first delivery of a notice."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Sequence
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from notifier.clock import Clock
from notifier.sandbox.behaviour import (
    Action,
    Behaviour,
    Inbound,
    Profile,
    Record,
    notice_rng,
    random_delay,
)
from notifier.sandbox.bounces import MAILBOX_FULL_STATUS, mailbox_full_bounce
from notifier.sandbox.content import ContentServer
from notifier.sandbox.smtp import Received
from notifier.sandbox.timeline import Timeline

__all__ = ["MailStaff"]


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
        content: ContentServer | None = None,
    ) -> None:
        self.platform = platform
        self._content = content
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
        # Notices whose staff asked a question: the removal waits for the authority's answer.
        self._asked: dict[str, tuple[str, str, tuple[str, ...], timedelta]] = {}
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
        if kind == "clarification" and notice_id in self._asked:
            self._clarified(notice_id)
            return
        if kind != "notice" or notice_id in self._answered:
            return  # reminders and escalations are read, not answered; a duplicate is ignored
        rng = notice_rng(self._seed, notice_id)
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
        if self._content is not None:
            self._content.received(self.platform, notice_id, request_ids, posts=_posts(mail))
        self._plan(rng, profile, notice_id, (message_id, str(mail["Subject"] or "")), request_ids)

    def _plan(
        self,
        rng: random.Random,
        profile: Profile,
        notice_id: str,
        thread: tuple[str, str],
        request_ids: tuple[str, ...],
    ) -> None:
        """What the staff will send about a notice they received (in ``thread``: its Message-ID
        and subject), and when."""
        message_id, subject = thread
        if profile.auto_reply:
            ticket = f"{self.platform[:2].upper()}-{next(self._tickets)}"
            self._timeline.at(
                self.later(timedelta(minutes=1)),
                f"{notice_id} auto-reply",
                lambda: self._auto_reply(notice_id, message_id, subject, ticket, request_ids),
            )
        ack_after = random_delay(rng, profile.ack_hours) if profile.ack_hours else None
        if profile.asks_clarification and ack_after is not None and profile.removal_hours is not None:
            after_answer = random_delay(rng, profile.removal_hours)
            self._asked[notice_id] = (message_id, subject, request_ids, after_answer)
            self._timeline.at(
                self.later(ack_after),
                f"{notice_id} clarification asked",
                lambda: self._question(notice_id, message_id, subject, request_ids),
            )
            return
        if ack_after is not None:
            self._timeline.at(
                self.later(ack_after),
                f"{notice_id} received",
                lambda: self._reply(notice_id, message_id, subject, request_ids, removed=False),
            )
        removal_after: timedelta | None = None
        if profile.exact_removal_hours is not None:
            removal_after = timedelta(hours=profile.exact_removal_hours)
        elif profile.removal_hours is not None:
            removal_after = random_delay(rng, profile.removal_hours)
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
        if removed and self._content is not None:
            self._content.take_down(self.platform, notice_id, request_ids)
        await self._inbound.send(mail, sender=sender, recipient=self._inbound.reply_to)
        what = "removed" if removed else "received"
        self._record.add(Action(self._clock.now(), self.platform, notice_id, what, request_ids))

    def _clarified(self, notice_id: str) -> None:
        """The authority answered the question: the removal follows, once."""
        message_id, subject, request_ids, removal_after = self._asked.pop(notice_id)
        self._timeline.at(
            self.later(removal_after),
            f"{notice_id} removed",
            lambda: self._reply(notice_id, message_id, subject, request_ids, removed=True),
        )

    async def _question(
        self, notice_id: str, message_id: str, subject: str, request_ids: tuple[str, ...]
    ) -> None:
        sender = f"trust-safety@{self._domain}"
        body = (
            "Hello,\n\nThank you for your notice. Before we act on it, could you clarify which posts of "
            "the channel you are asking us to remove? Several posts at the reported address were "
            "published on the same day.\n\nRegards,\nTrust & Safety\n"
        )
        mail = self._mail(sender=sender, subject=f"Re: {subject}", body=body, in_reply_to=message_id)
        await self._inbound.send(mail, sender=sender, recipient=self._inbound.reply_to)
        self._record.add(
            Action(self._clock.now(), self.platform, notice_id, "clarification_asked", request_ids)
        )

    async def _bounce(
        self, received: Received, original: EmailMessage, notice_id: str, request_ids: tuple[str, ...]
    ) -> None:
        """A soft bounce (full mailbox) of the notice, to the VERP address it was sent from."""
        raw = mailbox_full_bounce(
            original=original,
            verp=received.sender,
            recipient=received.recipients[0],
            host=f"mx.{self._domain}",
            at=self._clock.now(),
        )
        await self._inbound.send(raw, sender="", recipient=received.sender)
        what = Action(self._clock.now(), self.platform, notice_id, "bounce", request_ids, MAILBOX_FULL_STATUS)
        self._record.add(what)


def _reports(mail: EmailMessage) -> list[dict[str, object]]:
    """The reports a notice email carries in its JSON attachment (one report per URL)."""
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
            return [r for r in reports if isinstance(r, dict)]
    return []


def _request_ids(mail: EmailMessage) -> tuple[str, ...]:
    """The request ids a notice email carries."""
    ids = [str(r.get("request_id")) for r in _reports(mail) if r.get("request_id")]
    return tuple(dict.fromkeys(ids))


def _posts(mail: EmailMessage) -> list[tuple[str, str]]:
    """The (request id, URL) pairs a notice email reports."""
    return [
        (str(r["request_id"]), str(r["url"])) for r in _reports(mail) if r.get("request_id") and r.get("url")
    ]
