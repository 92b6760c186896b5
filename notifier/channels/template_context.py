"""What the notice templates see: every value of a notice, cleaned for display, with its deadlines
in UTC and the authority's zone.

A template is checked against this context when the templates are loaded, so a variable added here
is available to every template and a variable removed is a configuration error at check-config.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from notifier.channels.formatting import deadline_text, one_line, paragraph, within_text
from notifier.domain.models import TakedownRequest, format_timestamp
from notifier.domain.notices import GOOD_FAITH_STATEMENT, NoticeContent
from notifier.domain.sla import SlaKind


def template_context(content: NoticeContent) -> dict[str, Any]:
    """A fresh context for one notice; ``subject`` is filled in once the subject line is rendered."""
    zone = ZoneInfo(content.authority.timezone)
    labels = content.category_labels
    times: dict[datetime, str] = {}  # requests decided together share their decided_at
    # A notice holds requests of one deadline profile: each is owed the notice's deadlines, which
    # every item states with the profile's label (SPEC §14).
    owed = _Owed(
        ack_by=deadline_text(content.ack_by, zone),
        remove_by=deadline_text(content.remove_by, zone),
        label=one_line(content.deadline.label) if content.deadline is not None else None,
    )
    items = [
        _item_context(number, request, labels=labels, zone=zone, times=times, owed=owed)
        for number, request in enumerate(content.requests, start=1)
    ]
    authority = content.authority
    return {
        "kind": content.kind.value,
        "missed": _missed(content.breaches),
        "language": content.language,
        "notice_id": content.notice_id,
        "ack_token": f"[{content.notice_id}]",
        "platform": content.platform,
        "platform_name": one_line(content.platform_name),
        "authority": _AuthorityView(
            name=one_line(authority.name),
            email=one_line(authority.email),
            reply_to=one_line(authority.reply_to) if authority.reply_to else None,
            timezone=authority.timezone,
        ),
        "timezone": authority.timezone,
        "created_at": deadline_text(content.created_at, zone),
        "created_at_iso": format_timestamp(content.created_at),
        "ack_by": deadline_text(content.ack_by, zone),
        "ack_by_iso": format_timestamp(content.ack_by),
        "remove_by": deadline_text(content.remove_by, zone),
        "remove_by_iso": format_timestamp(content.remove_by),
        # The bounds, which run from receipt; a portal notice's files state them from filing only.
        "ack_within": within_text(content.ack_within, content.language),
        "removal_within": within_text(content.removal_within, content.language),
        "from_filing": content.from_filing,
        "deadline_label": owed.label,
        "clarification": paragraph(content.note) if content.note else None,
        # A withdrawal's reason (the same staff note), for its own templates.
        "reason": paragraph(content.note) if content.note else None,
        "callback_url": one_line(content.callback_url) if content.callback_url else None,
        "good_faith_statement": GOOD_FAITH_STATEMENT,
        "items": items,
        "request_count": len(content.requests),
        "url_count": content.url_count,
        "attachments": [f"{content.notice_id}.csv", f"{content.notice_id}.json"],
        "subject": "",
    }


def _missed(breaches: tuple[SlaKind, ...]) -> str:
    """What an escalation says was missed: ``acknowledgement``, ``removal``, or ``both`` (also
    when not known)."""
    kinds = set(breaches)
    if kinds == {SlaKind.ACK_BREACH}:
        return "acknowledgement"
    if kinds == {SlaKind.REMOVAL_BREACH}:
        return "removal"
    return "both"


# The views templates see. Jinja looks an attribute up with getattr() before trying obj[key], so
# attribute objects render several times faster than dicts in notices with many items.


@dataclass(frozen=True, slots=True, kw_only=True)
class _AuthorityView:
    name: str
    email: str
    reply_to: str | None
    timezone: str


@dataclass(frozen=True, slots=True, kw_only=True)
class _EvidenceView:
    sha256: str | None
    pdq: str | None
    hashes: list[tuple[str, str]]  # (label, value) for the hashes present


@dataclass(frozen=True, slots=True, kw_only=True)
class _Owed:
    ack_by: str
    remove_by: str
    label: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class _ItemView:
    number: int
    request_id: str
    urls: list[str]
    category: str
    category_label: str
    priority: str
    legal_basis: str | None
    explanation: str | None
    case_ref: str | None
    territorial_scope: str | None
    decided_at: str | None
    decided_at_iso: str | None
    evidence: list[_EvidenceView]
    ack_by: str
    remove_by: str
    deadline_label: str | None  # the profile's label; None: the platform's own bounds


def _item_context(
    number: int,
    request: TakedownRequest,
    *,
    labels: dict[str, str],
    zone: tzinfo,
    times: dict[datetime, str],
    owed: _Owed,
) -> _ItemView:
    decided = request.decided_at
    decided_text = None
    if decided is not None:
        decided_text = times.get(decided)
        if decided_text is None:
            decided_text = times[decided] = deadline_text(decided, zone)
    return _ItemView(
        number=number,
        request_id=one_line(request.request_id),
        urls=[one_line(url) for url in request.urls],
        category=request.category,
        category_label=one_line(labels.get(request.category) or request.category),
        priority=request.priority.value,
        legal_basis=one_line(request.legal_basis) if request.legal_basis else None,
        explanation=paragraph(request.explanation) if request.explanation else None,
        case_ref=one_line(request.case_ref) if request.case_ref else None,
        territorial_scope=", ".join(one_line(c) for c in request.territorial_scope) or None,
        decided_at=decided_text,
        decided_at_iso=format_timestamp(decided) if decided else None,
        evidence=[
            _EvidenceView(
                sha256=e.sha256,
                pdq=e.pdq,
                hashes=[(label, v) for label, v in (("SHA-256", e.sha256), ("PDQ", e.pdq)) if v],
            )
            for e in request.evidence
        ],
        ack_by=owed.ack_by,
        remove_by=owed.remove_by,
        deadline_label=owed.label,
    )
