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

import asyncio
import binascii
import contextlib
import email.policy
import functools
import hashlib
import re
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Final

from notifier.channels.rendering import Renderer, one_line
from notifier.channels.smtp import IDLE_CHECK_AFTER, MailTransport, SmtpTransport, flatten, starttls_required
from notifier.clock import Clock, SystemClock
from notifier.domain.evidence import EvidenceKind, EvidenceRecord
from notifier.domain.notices import Authority, MessageKind, NoticeContent, SendResult, message_tag
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

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN: Final = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_ID_LEFT: Final = re.compile(r"[A-Za-z0-9._-]{1,200}")
_MSG_ID: Final = re.compile(r"<[A-Za-z0-9._-]{1,200}@[A-Za-z0-9.-]{1,253}>")
_SUBJECT_MAX: Final = 250
_POLICY: Final = email.policy.SMTP
# RFC 5322 allows 998 octets a line; stay well below so that no relay has to rewrap.
_MAX_7BIT_LINE: Final = 900


def _domain(value: str) -> str:
    domain = value.rpartition("@")[2].strip().rstrip(".").lower()
    with contextlib.suppress(UnicodeError):
        domain = domain.encode("idna").decode("ascii")
    if not _DOMAIN.fullmatch(domain):
        raise ValueError(f"'{domain[:80]}' is not a domain name")
    return domain


def message_id_for(notice_id: str, kind: MessageKind, domain: str, follow_up: int = 1) -> str:
    """``<{notice_id}.{kind}@{domain}>`` (``….escalation-2@…`` for a second escalation): the same
    for every send of the same message."""
    if not _ID_LEFT.fullmatch(notice_id):
        raise ValueError("the notice id cannot be used in a Message-ID")
    return f"<{notice_id}.{message_tag(kind, follow_up)}@{_domain(domain)}>"


def _address(value: str, display_name: str = "") -> Address:
    # Address() parses addr_spec strictly and raises on anything that is not one address.
    return Address(display_name=one_line(display_name), addr_spec=one_line(value))


def _msg_id(value: str) -> str:
    if not _MSG_ID.fullmatch(value):
        raise ValueError("not a Message-ID")
    return value


def build_notice_email(
    content: NoticeContent,
    *,
    renderer: Renderer,
    from_addr: str,
    reply_to: str | None,
    to: Sequence[str],
    cc: Sequence[str],
    message_id: str,
    in_reply_to: str | None,
    date: datetime | None = None,
) -> EmailMessage:
    """The email of a notice, reminder or escalation (pure: no I/O, no clock).

    ``date`` defaults to ``content.created_at``. Raises ``ValueError`` when an address or id is not
    usable in a header.
    """
    if not to:
        raise ValueError("a notice needs at least one recipient")
    rendered = renderer.render(content)
    message = EmailMessage(policy=_POLICY)
    message["From"] = _address(from_addr, content.authority.name)
    message["To"] = tuple(_address(a) for a in to)
    if cc:
        message["Cc"] = tuple(_address(a) for a in cc)
    if reply_to:
        message["Reply-To"] = _address(reply_to)
    message["Subject"] = one_line(rendered.subject)[:_SUBJECT_MAX]
    message["Date"] = format_datetime((date or content.created_at).astimezone(UTC))
    message["Message-ID"] = _msg_id(message_id)
    if in_reply_to:
        message["In-Reply-To"] = _msg_id(in_reply_to)
        message["References"] = _msg_id(in_reply_to)
    message["X-Notifier-Notice-Id"] = one_line(content.notice_id)
    message["MIME-Version"] = "1.0"
    message.make_mixed()
    # Boundaries of our own: random enough never to occur in a body, and set here the email package
    # skips its scan of the whole message for a safe one (a third of flattening a 50-request notice).
    message.set_boundary(_boundary())
    alternative = EmailMessage(policy=_POLICY)
    alternative.make_alternative()
    alternative.set_boundary(_boundary())
    alternative.attach(_text_part(rendered.text, "plain"))
    alternative.attach(_text_part(rendered.html, "html"))
    message.attach(alternative)
    message.attach(_attachment(rendered.csv, "text/csv", f"{content.notice_id}.csv"))
    message.attach(_attachment(rendered.xarf_json, "application/json", f"{content.notice_id}.json"))
    return message


def _boundary() -> str:
    return f"=_notifier_{secrets.token_hex(16)}"


def _text_part(text: str, subtype: str) -> EmailMessage:
    """A UTF-8 text body, LF line ends, in the cheapest safe encoding (:func:`_encode`)."""
    body = text.replace("\r\n", "\n").replace("\r", "\n")
    part = EmailMessage(policy=_POLICY)
    part["Content-Type"] = f"text/{subtype}"
    part.set_param("charset", "utf-8")
    encoding, payload = _encode(body.encode("utf-8"), text=True)
    part["Content-Transfer-Encoding"] = encoding
    part.set_payload(payload)
    return part


def _attachment(data: bytes, content_type: str, filename: str) -> EmailMessage:
    """An attachment whose decoded bytes are exactly ``data``, line ends included: sent as it is only
    when every line end is already CRLF (the RFC 4180 CSV of an ASCII notice), else encoded."""
    part = EmailMessage(policy=_POLICY)
    part["Content-Type"] = content_type
    if content_type.startswith("text/"):
        part.set_param("charset", "utf-8")
    part["Content-Disposition"] = "attachment"
    part.set_param("filename", filename, header="Content-Disposition")
    without_crlf = data.replace(b"\r\n", b"")
    bare_line_end = b"\r" in without_crlf or b"\n" in without_crlf
    encoding, payload = _encode(data, text=not bare_line_end)
    part["Content-Transfer-Encoding"] = encoding
    part.set_payload(payload)
    return part


def _encode(data: bytes, *, text: bool) -> tuple[str, str]:
    """``(Content-Transfer-Encoding, payload)`` in the cheapest encoding that keeps ``data`` safe over
    any relay: as it is when it is ASCII text with short lines (the usual English notice, the CSV),
    quoted-printable when it is mostly ASCII (the XARF JSON: a quarter smaller than base64), base64
    when it is mostly not (Korean, where quoted-printable would triple its size). Unless ``text``,
    line breaks are encoded too (``=0A``), so the bytes come back exactly as they were. The email
    package's own encoders are pure Python; binascii's are C, which matters for notices with fifty
    requests."""
    if text and data.isascii() and b"\0" not in data and max(map(len, data.split(b"\n"))) <= _MAX_7BIT_LINE:
        return "7bit", data.decode("ascii")
    if len(data) - len(data.decode("utf-8", "replace")) > len(data) // 8:  # many multi-byte characters
        encoded = binascii.b2a_base64(data, newline=False).decode("ascii")
        return "base64", "\n".join([encoded[i : i + 76] for i in range(0, len(encoded), 76)]) + "\n"
    return "quoted-printable", binascii.b2a_qp(data, istext=text).decode("ascii")


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
    ) -> None:
        if not to:
            raise ValueError("an email channel needs at least one recipient")
        if "{notice_id}" not in envelope_from:
            raise ValueError("envelope_from must contain {notice_id} so bounces name their notice")
        self._transport = transport
        self._renderer = renderer
        self._from = from_addr
        self._to = tuple(to)
        self._cc = tuple(cc)
        self._envelope_from = envelope_from
        self._reply_to = reply_to
        self._escalation_to = tuple(escalation_to)
        self._clock = clock
        self._domain = _domain(authority.email)

    def message_id(self, content: NoticeContent) -> str:
        """The Message-ID the email for ``content`` carries (and carried, if it was sent before)."""
        return message_id_for(content.notice_id, content.kind, self._domain, content.follow_up)

    async def send(self, content: NoticeContent) -> SendResult:
        message_id = self.message_id(content)
        thread = None
        if content.kind is not MessageKind.NOTICE:
            thread = message_id_for(content.notice_id, MessageKind.NOTICE, self._domain)
        to, cc = self._recipients(content.kind)
        build = functools.partial(
            build_notice_email,
            content,
            renderer=self._renderer,
            from_addr=self._from,
            reply_to=self._reply_to,
            to=to,
            cc=cc,
            message_id=message_id,
            in_reply_to=thread,
            date=self._clock.now() if self._clock else None,
        )
        try:
            # A notice of many requests takes milliseconds of CPU to build: it is built in a worker
            # thread, so the event loop keeps serving the rest of the daemon (an urgent notice's
            # steps) meanwhile. An urgent notice, small, is built at once.
            message = build() if content.urgent else await asyncio.to_thread(build)
        except (ValueError, TypeError) as error:
            # The reason names what failed, never the value: it may carry text from the request.
            raise DeliveryError(
                f"notice {content.notice_id} cannot be built as an email ({type(error).__name__})",
                transient=False,
            ) from None
        token = envelope_token(content.notice_id, content.message_tag)
        sender = self._envelope_from.replace("{notice_id}", token)
        recipients = [*to, *cc]
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
        self._domain = _domain(domain)
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
        message = EmailMessage(policy=_POLICY)
        message["From"] = _address(self._from, "notifier")
        message["To"] = tuple(_address(a) for a in self._to)
        message["Subject"] = one_line(subject)[:_SUBJECT_MAX]
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
        return _domain(address)
    except ValueError:
        return "invalid"
