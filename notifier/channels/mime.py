"""A notice as an email (SPEC §6.1): the MIME tree of a notice, reminder or escalation, built from
its rendering with no I/O, and the Message-IDs that thread them.

Headers are only ever built with the :mod:`email` package's structured API under
:data:`email.policy.SMTP`, from values that went through :func:`~notifier.channels.rendering.one_line`
first; a CR or LF that got past both would make the policy refuse the header, never write a second one.
"""

from __future__ import annotations

import binascii
import contextlib
import email.policy
import functools
import re
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Final, NotRequired, TypedDict, Unpack

from notifier.channels.rendering import RenderedNotice, Renderer, one_line
from notifier.domain.notices import MessageKind, NoticeContent, message_tag

__all__ = [
    "POLICY",
    "SUBJECT_MAX",
    "MessageFields",
    "build_notice_email",
    "domain_name",
    "header_address",
    "message_id_for",
    "notice_email_bytes",
    "plain",
]

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN: Final = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_ID_LEFT: Final = re.compile(r"[A-Za-z0-9._-]{1,200}")
_MSG_ID: Final = re.compile(r"<[A-Za-z0-9._-]{1,200}@[A-Za-z0-9.-]{1,253}>")
SUBJECT_MAX: Final = 250
POLICY: Final = email.policy.SMTP
# RFC 5322 allows 998 octets a line; stay well below so that no relay has to rewrap.
_MAX_7BIT_LINE: Final = 900


def domain_name(value: str) -> str:
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
    return f"<{notice_id}.{message_tag(kind, follow_up)}@{domain_name(domain)}>"


def header_address(value: str, display_name: str = "") -> Address:
    # Address() parses addr_spec strictly and raises on anything that is not one address.
    return Address(display_name=one_line(display_name), addr_spec=one_line(value))


def _msg_id(value: str) -> str:
    if not _MSG_ID.fullmatch(value):
        raise ValueError("not a Message-ID")
    return value


class MessageFields(TypedDict):
    """The addresses, ids and date of a notice's email (its content aside)."""

    from_addr: str
    reply_to: str | None
    to: Sequence[str]
    cc: Sequence[str]
    message_id: str
    in_reply_to: str | None
    date: NotRequired[datetime | None]  # default: the content's ``created_at``


def build_notice_email(
    content: NoticeContent, *, renderer: Renderer, **fields: Unpack[MessageFields]
) -> EmailMessage:
    """The email of a notice, reminder or escalation (pure: no I/O, no clock).

    ``date`` defaults to ``content.created_at``. Raises ``ValueError`` when an address or id is not
    usable in a header.
    """
    rendered, message, alternative = _skeleton(content, renderer, fields)
    alternative.attach(_text_part(rendered.text, "plain"))
    alternative.attach(_text_part(rendered.html, "html"))
    message.attach(alternative)
    message.attach(_attachment(rendered.csv, "text/csv", f"{content.notice_id}.csv"))
    message.attach(_attachment(rendered.xarf_json, "application/json", f"{content.notice_id}.json"))
    return message


def notice_email_bytes(
    content: NoticeContent, *, renderer: Renderer, **fields: Unpack[MessageFields]
) -> bytes:
    """``flatten(build_notice_email(...))``, written without building the MIME tree: the same
    bytes (a test holds them equal). The message's own headers still go through the email
    package's structured API; the parts' headers are the package's too (folded by its policy,
    the constant ones once), and only the assembly of parts and boundaries, which the package's
    generator does the same way every time, is written here."""
    rendered, message, alternative = _skeleton(content, renderer, fields)
    text_parts = [
        _part_bytes(_text_headers(subtype, encoding), payload)
        for subtype, (encoding, payload) in (
            ("plain", _text_payload(rendered.text)),
            ("html", _text_payload(rendered.html)),
        )
    ]
    parts = [
        _headers_bytes(alternative) + _multipart_body(alternative.get_boundary() or "", text_parts),
        _attachment_bytes(rendered.csv, "text/csv", f"{content.notice_id}.csv"),
        _attachment_bytes(rendered.xarf_json, "application/json", f"{content.notice_id}.json"),
    ]
    return _headers_bytes(message) + _multipart_body(message.get_boundary() or "", parts)


def _skeleton(
    content: NoticeContent, renderer: Renderer, fields: MessageFields
) -> tuple[RenderedNotice, EmailMessage, EmailMessage]:
    """The rendering; the message with its headers, a multipart/mixed with no parts yet; and its
    multipart/alternative part, empty: each with its boundary set."""
    rendered = renderer.render(content)
    message = _head(content, rendered.subject, fields)
    message.make_mixed()
    # Boundaries of our own: random enough never to occur in a body, and set here the email package
    # skips its scan of the whole message for a safe one (a third of flattening a 50-request notice).
    message.set_boundary(_boundary())
    alternative = EmailMessage(policy=POLICY)
    alternative.make_alternative()
    alternative.set_boundary(_boundary())
    return rendered, message, alternative


def plain(data: bytes, sender: str, recipients: Sequence[str]) -> bool:
    """7-bit content between ASCII addresses: sent as flattened, with no SMTP extension needed."""
    return data.isascii() and sender.isascii() and all(r.isascii() for r in recipients)


def _head(content: NoticeContent, subject: str, fields: MessageFields) -> EmailMessage:
    """The message's own headers, Content-Type aside."""
    if not fields["to"]:
        raise ValueError("a notice needs at least one recipient")
    message = EmailMessage(policy=POLICY)
    message["From"] = header_address(fields["from_addr"], content.authority.name)
    message["To"] = tuple(header_address(a) for a in fields["to"])
    if fields["cc"]:
        message["Cc"] = tuple(header_address(a) for a in fields["cc"])
    if reply_to := fields["reply_to"]:
        message["Reply-To"] = header_address(reply_to)
    message["Subject"] = one_line(subject)[:SUBJECT_MAX]
    message["Date"] = format_datetime((fields.get("date") or content.created_at).astimezone(UTC))
    message["Message-ID"] = _msg_id(fields["message_id"])
    if in_reply_to := fields["in_reply_to"]:
        message["In-Reply-To"] = _msg_id(in_reply_to)
        message["References"] = _msg_id(in_reply_to)
    message["X-Notifier-Notice-Id"] = one_line(content.notice_id)
    message["MIME-Version"] = "1.0"
    return message


# -- the parts, as the email package's generator writes them (policy SMTP: CRLF line ends) ---------

_CRLF: Final = b"\r\n"


def _headers_bytes(message: EmailMessage) -> bytes:
    """The headers of ``message`` and the blank line after them, as the generator writes them."""
    return b"".join(POLICY.fold_binary(name, value) for name, value in message.raw_items()) + _CRLF


def _lines(payload: str) -> bytes:
    """A payload with every line end CRLF, as :func:`notifier.channels.smtp.flatten` writes it."""
    return payload.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n").encode("ascii")


def _part_bytes(headers: bytes, payload: str) -> bytes:
    return headers + _lines(payload)


def _multipart_body(boundary: str, parts: Sequence[bytes]) -> bytes:
    """The body of a multipart with ``parts`` (each its headers and body), no preamble or epilogue."""
    delimiter = b"--" + boundary.encode("ascii")
    between = _CRLF + delimiter + _CRLF
    return delimiter + _CRLF + between.join(parts) + _CRLF + delimiter + b"--" + _CRLF


@functools.cache
def _text_headers(subtype: str, encoding: str) -> bytes:
    return _headers_bytes(_text_part_headers(subtype, encoding))


def _attachment_bytes(data: bytes, content_type: str, filename: str) -> bytes:
    encoding, payload = _attachment_payload(data)
    headers = _headers_bytes(_attachment_headers(content_type, filename, encoding))
    return _part_bytes(headers, payload)


def _boundary() -> str:
    return f"=_notifier_{secrets.token_hex(16)}"


def _text_part(text: str, subtype: str) -> EmailMessage:
    """A UTF-8 text body, LF line ends, in the cheapest safe encoding (:func:`_encode`)."""
    encoding, payload = _text_payload(text)
    part = _text_part_headers(subtype, encoding)
    part.set_payload(payload)
    return part


def _text_payload(text: str) -> tuple[str, str]:
    body = text.replace("\r\n", "\n").replace("\r", "\n")
    return _encode(body.encode("utf-8"), text=True)


def _text_part_headers(subtype: str, encoding: str) -> EmailMessage:
    part = EmailMessage(policy=POLICY)
    part["Content-Type"] = f"text/{subtype}"
    part.set_param("charset", "utf-8")
    part["Content-Transfer-Encoding"] = encoding
    return part


def _attachment(data: bytes, content_type: str, filename: str) -> EmailMessage:
    """An attachment whose decoded bytes are exactly ``data``, line ends included: sent as it is only
    when every line end is already CRLF (the RFC 4180 CSV of an ASCII notice), else encoded."""
    encoding, payload = _attachment_payload(data)
    part = _attachment_headers(content_type, filename, encoding)
    part.set_payload(payload)
    return part


def _attachment_payload(data: bytes) -> tuple[str, str]:
    without_crlf = data.replace(b"\r\n", b"")
    bare_line_end = b"\r" in without_crlf or b"\n" in without_crlf
    return _encode(data, text=not bare_line_end)


def _attachment_headers(content_type: str, filename: str, encoding: str) -> EmailMessage:
    part = EmailMessage(policy=POLICY)
    part["Content-Type"] = content_type
    if content_type.startswith("text/"):
        part.set_param("charset", "utf-8")
    part["Content-Disposition"] = "attachment"
    part.set_param("filename", filename, header="Content-Disposition")
    part["Content-Transfer-Encoding"] = encoding
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
