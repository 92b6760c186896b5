"""The email channel (SPEC §6.1): notices as threaded emails over a pool of SMTP connections.

A notice becomes one ``multipart/mixed`` email: the text and HTML bodies as alternatives, then
``<notice_id>.csv`` and ``<notice_id>.json`` attached. Its ``Message-ID`` is derived from the notice
id and the kind of message (:func:`message_id_for`), so a re-send of the same notice carries the same
id and the platform's mail system can drop the duplicate, while the reminder and the escalation get
ids of their own and thread under the notice with ``In-Reply-To``/``References``. The envelope
sender is the VERP address ``smtp.envelope_from`` with ``{notice_id}`` filled in: the notice id for
the notice, ``<notice_id>.<tag>`` for a reminder or an escalation
(:func:`~notifier.domain.replies.envelope_token`), so a bounce names the notice *and* the message it
returns. Notices carry no ``Auto-Submitted`` header: auto-responders skip messages that have one, and
their automated receipts are worth having.

Headers are only ever built with the :mod:`email` package's structured API under
:data:`email.policy.SMTP`, from values that went through :func:`~notifier.channels.rendering.one_line`
first; a CR or LF that got past both would make the policy refuse the header, never write a second one.

The connection pool, STARTTLS and AUTH live in :mod:`notifier.channels.smtp` (re-exported here);
every failure reaches the caller as a :class:`~notifier.failures.DeliveryError`, classified
transient or permanent.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from datetime import UTC
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Final

from notifier.channels.composer import Composer, EmailJob
from notifier.channels.mime import (
    POLICY,
    SUBJECT_MAX,
    build_notice_email,
    domain_name,
    header_address,
    message_id_for,
)
from notifier.channels.rendering import Renderer, one_line
from notifier.channels.smtp import IDLE_CHECK_AFTER, MailTransport, SmtpTransport, flatten, starttls_required
from notifier.clock import Clock, SystemClock
from notifier.domain.evidence import EvidenceKind, EvidenceRecord
from notifier.domain.notices import Authority, MessageKind, NoticeContent, SendResult
from notifier.domain.replies import alert_token, envelope_token
from notifier.failures import DeliveryError
from notifier.logging import get_logger

__all__ = [
    "IDLE_CHECK_AFTER",
    "EmailChannel",
    "MailTransport",
    "OperationsMailer",
    "SmtpTransport",
    "build_notice_email",
    "flatten",
    "message_id_for",
    "starttls_required",
]

log = get_logger(__name__)


class EmailChannel:
    """Notices, reminders and escalations to one platform's email addresses.

    The transport is shared by every platform and closed by whoever built it; :meth:`close` leaves it
    open. Escalations go to ``escalation_to`` when given, with the platform's usual addresses copied,
    so the whole history stays in one thread on their side.
    """

    name = "email"

    def __init__(
        self,
        *,
        transport: MailTransport,
        renderer: Renderer,
        authority: Authority,
        from_addr: str,
        to: Sequence[str],
        cc: Sequence[str] = (),
        envelope_from: str,
        reply_to: str | None,
        escalation_to: Sequence[str] = (),
        clock: Clock | None = None,
        composer: Composer | None = None,
    ) -> None:
        if not to:
            raise ValueError("an email channel needs at least one recipient")
        if "{notice_id}" not in envelope_from:
            raise ValueError("envelope_from must contain {notice_id} so bounces name their notice")
        self._transport = transport
        self._composer = composer or Composer(renderer)
        self._from = from_addr
        self._to = tuple(to)
        self._cc = tuple(cc)
        self._envelope_from = envelope_from
        self._reply_to = reply_to
        self._escalation_to = tuple(escalation_to)
        self._clock = clock
        self._domain = domain_name(authority.email)

    def message_id(self, content: NoticeContent) -> str:
        """The Message-ID the email for ``content`` carries (and carried, if it was sent before)."""
        return message_id_for(content.notice_id, content.kind, self._domain, content.follow_up)

    async def send(self, content: NoticeContent) -> SendResult:
        message_id = self.message_id(content)
        thread = None
        if content.kind is not MessageKind.NOTICE:
            thread = message_id_for(content.notice_id, MessageKind.NOTICE, self._domain)
        to, cc = self._recipients(content.kind)
        token = envelope_token(content.notice_id, content.message_tag)
        sender = self._envelope_from.replace("{notice_id}", token)
        recipients = [*to, *cc]
        job = EmailJob(
            content=content,
            from_addr=self._from,
            reply_to=self._reply_to,
            to=to,
            cc=cc,
            message_id=message_id,
            in_reply_to=thread,
            date=self._clock.now() if self._clock else None,
            sender=sender,
            recipients=tuple(recipients),
        )
        try:
            # A notice of many requests takes milliseconds of CPU to build: it is composed beside
            # the event loop (a worker process, else a thread), so the loop keeps serving the rest
            # of the daemon meanwhile. An urgent notice, small, is built at once.
            message = await self._composer.compose(job, inline=content.urgent)
        except (ValueError, TypeError) as error:
            # The reason names what failed, never the value: it may carry text from the request.
            raise DeliveryError(
                f"notice {content.notice_id} cannot be built as an email ({type(error).__name__})",
                transient=False,
            ) from None
        facts = {
            "sender": sender,
            "recipients": recipients,
            "message_id": message_id,
            "message_kind": content.message_tag,
        }
        try:
            relayed = await self._transport.send(
                message, sender=sender, recipients=recipients, urgent=content.urgent
            )
        except DeliveryError as error:
            # Refused: what was offered is not known to the byte here (the transport refused it
            # before or during DATA); the answer is kept with the attempt.
            error.evidence = (
                EvidenceRecord(
                    kind=EvidenceKind.EMAIL_SENT,
                    notice_id=content.notice_id,
                    meta=facts | {"code": error.code, "reply": error.detail, "accepted": False},
                ),
            )
            raise
        code, reply = relayed.code, relayed.reply
        sent = EvidenceRecord(
            kind=EvidenceKind.EMAIL_SENT,
            notice_id=content.notice_id,
            request_ids=tuple(r.request_id for r in content.requests),
            payload=relayed.data,
            meta=facts | {"code": code, "reply": reply, "accepted": True},
        )
        log.info(
            "email.sent",
            notice_id=content.notice_id,
            platform=content.platform,
            kind=content.kind.value,
            smtp_code=code,
            recipient_domains=sorted({_safe_domain(a) for a in (*to, *cc)}),
        )
        return SendResult(code=code, message_id=message_id, detail=one_line(reply)[:500], evidence=(sent,))

    async def close(self) -> None:
        """Nothing to release: the shared transport is closed by its owner."""

    def _recipients(self, kind: MessageKind) -> tuple[tuple[str, ...], tuple[str, ...]]:
        if kind is not MessageKind.ESCALATION or not self._escalation_to:
            return self._to, self._cc
        copied = tuple(a for a in (*self._to, *self._cc) if a not in self._escalation_to)
        return self._escalation_to, tuple(dict.fromkeys(copied))


class OperationsMailer:
    """Alerts about notifier's own failures to the authority's staff (``authority.operations_email``).

    Alerts are marked ``Auto-Submitted: auto-generated`` (RFC 3834), unlike notices: they go to our
    own people, and nobody's out-of-office should answer them. The Message-ID comes from ``key``, so
    an alert sent again after a restart is recognisably the same alert.

    With ``envelope_from`` (a VERP template like ``smtp.envelope_from``, with ``{notice_id}``), the
    envelope sender is that address with ``alert.<readable key>`` filled in, so a bounce of an alert
    is told from a bounce of a notice; without it, the envelope sender is ``from_addr``.
    """

    def __init__(
        self,
        *,
        transport: MailTransport,
        from_addr: str,
        to: Sequence[str],
        domain: str,
        clock: Clock | None = None,
        envelope_from: str | None = None,
    ) -> None:
        if not to:
            raise ValueError("operations alerts need at least one recipient")
        if envelope_from is not None and "{notice_id}" not in envelope_from:
            raise ValueError("envelope_from must contain {notice_id} so bounces name their alert")
        self._transport = transport
        self._from = from_addr
        self._to = tuple(to)
        self._domain = domain_name(domain)
        self._clock: Clock = clock or SystemClock()
        self._envelope_from = envelope_from

    def message_id(self, key: str) -> str:
        return f"<alert.{_readable(key)}@{self._domain}>"

    def envelope_sender(self, key: str) -> str:
        """The SMTP MAIL FROM of the alert with ``key``."""
        if self._envelope_from is None:
            return self._from
        return self._envelope_from.replace("{notice_id}", alert_token(_readable(key)))

    async def alert(self, *, subject: str, text: str, key: str) -> str:
        """Send a plain-text alert; returns its Message-ID. Raises DeliveryError when not sent."""
        message_id = self.message_id(key)
        message = EmailMessage(policy=POLICY)
        message["From"] = header_address(self._from, "notifier")
        message["To"] = tuple(header_address(a) for a in self._to)
        message["Subject"] = one_line(subject)[:SUBJECT_MAX]
        message["Date"] = format_datetime(self._clock.now().astimezone(UTC))
        message["Message-ID"] = message_id
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(_body_text(text), subtype="plain", charset="utf-8", cte="quoted-printable")
        relayed = await self._transport.send(message, sender=self.envelope_sender(key), recipients=self._to)
        code = relayed.code
        log.info("ops.alert_sent", alert_key=key, smtp_code=code)
        return message_id


def _readable(key: str) -> str:
    """``key`` as the left side of a Message-ID and a VERP tag: unsafe characters replaced, and a
    hash of the whole key added when anything was replaced or cut, so two keys never share one."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", key).strip("-.")[:120]
    if readable != key or not readable:
        readable = f"{readable}.{hashlib.sha256(key.encode()).hexdigest()[:16]}".lstrip(".")
    return readable


_BODY_CONTROL: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")


def _body_text(text: str) -> str:
    """Plain text with LF line ends and no control characters but tabs, layout kept."""
    return _BODY_CONTROL.sub(" ", text.replace("\r\n", "\n").replace("\r", "\n"))


def _safe_domain(address: str) -> str:
    try:
        return domain_name(address)
    except ValueError:
        return "invalid"
