"""Which of our notices a received email is about, and which of our messages about it.

The notice is read out of our own Message-IDs (``<TD-….notice@domain>``) in In-Reply-To and
References, the ``[TD-…]`` subject token and a ticket the platform gave us earlier; for bounces,
delivery reports and feedback reports also out of the VERP envelope address and the original
message returned inside them.

The message (the notice itself, its reminder, an escalation, an operations alert) is told, best
evidence first, by the VERP address (each message has its own, see :mod:`.ours`), by the
Message-ID of the returned original, by the message In-Reply-To or References names, and last by
the wording of the returned or the mail's own subject. In a bounce the returned original's
Message-ID names the message that bounced; its In-Reply-To names the notice a reminder threads
under, so it is never read as the bounced message.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Final

from notifier.domain.notices import NOTICE_ID_PATTERN, MessageKind, parse_notice_id
from notifier.domain.replies.kinds import AUTOMATED
from notifier.domain.replies.ours import (
    ALERT,
    ALERT_MSG_ID,
    ALERT_VERP,
    OUR_MSG_ID,
    TOKEN,
    VERP,
    notice_in_key,
)
from notifier.domain.replies.reading import Mail, header_value
from notifier.domain.replies.verdict import MailKind

__all__ = ["match", "message_of", "sent_by_us"]

_ID: Final = NOTICE_ID_PATTERN.pattern.replace("(", "(?:")
_RETURNED_ID: Final = re.compile(
    rf"^[ \t>]*(?:X-Notifier-Notice-Id:[ \t]*|Subject:[^\n]*?\[)(?P<id>{_ID})(?![0-9])", re.I | re.M
)
_RETURNED_MSG_ID: Final = re.compile(r"^[ \t>]*Message-ID:[ \t]*(?P<value><[^<>\n]{1,500}>)", re.I | re.M)
_RETURNED_SUBJECT: Final = re.compile(
    r"^[ \t>]*Subject:[ \t]*(?P<value>[^\n]*(?:\n[ \t]+[^\n]*){0,4})", re.I | re.M
)
_ADDRESSED: Final = ("to", "delivered-to", "x-original-to", "envelope-to", "x-envelope-to")
# What the subjects of notifier/templates say each message is, English and Korean. The escalation
# and the reminder are tried first: their subjects name the takedown notice too.
_SUBJECT_WORDING: Final = (
    (MessageKind.ESCALATION.value, re.compile(r"\bescalation\b|기한\s*경과", re.I)),
    (MessageKind.REMINDER.value, re.compile(r"\breminder\b|재통지", re.I)),
    (MessageKind.NOTICE.value, re.compile(r"\btakedown notice\b|삭제\s*요청\s*통지", re.I)),
)

# (notice id, message tag): the notice id is None for an alert about no notice.
_Evidence = tuple[str | None, str]


def sent_by_us(mail: Mail, our_domains: Sequence[str]) -> bool:
    """One of our own messages come back (a copy or a loop): what we said is no one's answer. An
    alert's Message-ID counts when it has one of ``our_domains``, or names a notice when none are
    given: ``alert.`` alone is too common a prefix to be sure of."""
    if "x-notifier-notice-id" in mail.headers:
        return True
    message_id = mail.first("message-id")
    if _evidence(message_id, our_domains, alerts=False):
        return True
    domains = _domains(our_domains)
    return any(
        (m.group("domain").lower() in domains) if domains else notice_in_key(m.group("key")) is not None
        for m in ALERT_MSG_ID.finditer(message_id)
    )


def match(
    mail: Mail,
    kind: MailKind,
    *,
    envelope_recipients: Sequence[str],
    our_domains: Sequence[str],
    ticket: str | None,
    known_ticket: Callable[[str], str | None] | None,
) -> tuple[tuple[str, ...], str]:
    """The notices ``mail`` is about, best first, and the source of the best."""
    in_reply_to, references = _threading(mail)
    sources: list[tuple[str, list[str]]] = [
        ("in-reply-to", _ids(_evidence(in_reply_to, our_domains, alerts=False))),
        ("references", _ids(_evidence(references, our_domains, alerts=False)[::-1])),  # parent last
    ]
    if kind in AUTOMATED:
        sources.append(("verp", _ids(_verp(mail, envelope_recipients))))
        returned = f"{mail.returned}\n{mail.head}"
        in_headers = [m.group("id") for m in _RETURNED_ID.finditer(returned)]
        sources.append(("returned-headers", _ids(_evidence(returned, our_domains)) + in_headers))
    sources.append(("subject", [m.group("id") for m in TOKEN.finditer(mail.first("subject"))]))
    if ticket is not None and known_ticket is not None:
        sources.append(("ticket", [notice for notice in (known_ticket(ticket),) if notice]))
    ids: list[str] = []
    matched_by = ""
    for source, found in sources:
        for notice in found:
            if notice not in ids and parse_notice_id(notice):
                ids.append(notice)
                matched_by = matched_by or source
    return tuple(ids), matched_by


def message_of(
    mail: Mail,
    kind: MailKind,
    notice_ids: Sequence[str],
    *,
    envelope_recipients: Sequence[str],
    our_domains: Sequence[str],
) -> str | None:
    """The tag of our message about ``notice_ids[0]`` that ``mail`` answers or returns, or None.

    An alert's VERP address or Message-ID says "alert" whatever notice was matched. A VERP address
    without a tag is the notice itself, except when the returned original's Message-ID names a
    reminder or an escalation of the same notice: a message sent before every message had a VERP
    address of its own.
    """
    primary = notice_ids[0] if notice_ids else None

    def first(evidence: Iterable[_Evidence]) -> str | None:
        return next((tag for notice, tag in evidence if tag == ALERT or notice == primary), None)

    by_verp = first(_verp(mail, envelope_recipients))
    returned = f"{mail.returned}\n{mail.head}" if kind in AUTOMATED else ""
    by_returned = first(_returned_message_ids(returned, our_domains))
    if by_verp is not None and not (by_verp == MessageKind.NOTICE.value and by_returned not in (None, ALERT)):
        return by_verp
    if by_returned is not None:
        return by_returned
    in_reply_to, references = _threading(mail)
    threaded = [*_evidence(in_reply_to, our_domains), *_evidence(references, our_domains)[::-1]]
    if (by_thread := first(threaded)) is not None:
        return by_thread
    if primary is None:
        return None
    subjects = [m.group("value") for m in _RETURNED_SUBJECT.finditer(returned)]
    return _by_wording(primary, [*(header_value(s) for s in subjects), mail.first("subject")])


# -- evidence ------------------------------------------------------------------------------------


def _threading(mail: Mail) -> tuple[str, str]:
    return " ".join(mail.headers.get("in-reply-to", ())), " ".join(mail.headers.get("references", ()))


def _domains(our_domains: Sequence[str]) -> set[str]:
    return {domain.strip().lower().rstrip(".") for domain in our_domains}


def _evidence(text: str, our_domains: Sequence[str], *, alerts: bool = True) -> list[_Evidence]:
    """Our Message-IDs in ``text`` (any domain, or only ``our_domains`` when given), of notices'
    messages and, with ``alerts``, of operations alerts, in the order they appear."""
    domains = _domains(our_domains)
    spans = [
        (m.start(), (m.group("id"), m.group("tag")))
        for m in OUR_MSG_ID.finditer(text)
        if not domains or m.group("domain").lower() in domains
    ]
    if alerts:
        spans += [
            (m.start(), (notice_in_key(m.group("key")), ALERT))
            for m in ALERT_MSG_ID.finditer(text)
            if not domains or m.group("domain").lower() in domains
        ]
    return [item for _, item in sorted(spans, key=lambda span: span[0])]


def _ids(evidence: Iterable[_Evidence]) -> list[str]:
    return [notice for notice, _ in evidence if notice is not None]


def _verp(mail: Mail, envelope_recipients: Sequence[str]) -> list[_Evidence]:
    """The VERP addresses the mail was sent to: ``+TD-…@`` is the notice, ``+TD-….reminder@`` its
    reminder, ``+alert.…@`` an operations alert."""
    addressed = [*envelope_recipients, *(v for name in _ADDRESSED for v in mail.headers.get(name, ()))]
    found: list[_Evidence] = []
    for value in addressed:
        found.extend(
            (m.group("id"), m.group("tag") or MessageKind.NOTICE.value) for m in VERP.finditer(value)
        )
        found.extend((notice_in_key(m.group("key")), ALERT) for m in ALERT_VERP.finditer(value))
    return found


def _returned_message_ids(returned: str, our_domains: Sequence[str]) -> list[_Evidence]:
    """Our Message-IDs on the ``Message-ID:`` lines of the returned original: the bounced message."""
    found: list[_Evidence] = []
    for line in _RETURNED_MSG_ID.finditer(returned):
        found.extend(_evidence(line.group("value"), our_domains))
    return found


def _by_wording(notice_id: str, subjects: Iterable[str]) -> str | None:
    """The message a subject naming ``notice_id`` belongs to, by the wording of our templates.
    A second escalation reads like the first: its subject says "escalation"."""
    for subject in subjects:
        if not any(m.group("id") == notice_id for m in TOKEN.finditer(subject)):
            continue
        for tag, wording in _SUBJECT_WORDING:
            if wording.search(subject):
                return tag
    return None
