"""Notices: what one platform receives, their ids, attempts and the content every channel renders."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from notifier.domain.deadlines import DeadlineProfile
from notifier.domain.evidence import EvidenceKind, EvidenceRecord
from notifier.domain.models import NoticeState, TakedownRequest
from notifier.domain.sla import SlaKind

NOTICE_ID_PATTERN = re.compile(r"TD-([a-z][a-z0-9_]{0,31})-(\d{8})-(\d{6,})")


def notice_id(platform: str, created_at: datetime, sequence: int) -> str:
    """``TD-<platform>-<YYYYMMDD, UTC>-<per-platform sequence, at least 6 digits>`` (SPEC §6)."""
    if created_at.tzinfo is None:
        raise ValueError("created_at must be timezone-aware")
    return f"TD-{platform}-{created_at.astimezone(UTC):%Y%m%d}-{sequence:06d}"


def parse_notice_id(text: str) -> tuple[str, str, int] | None:
    """(platform, YYYYMMDD, sequence) of a notice id, or None when ``text`` is not one."""
    match = NOTICE_ID_PATTERN.fullmatch(text)
    return (match.group(1), match.group(2), int(match.group(3))) if match else None


class AttemptOutcome(enum.StrEnum):
    DELIVERED = "delivered"
    TRANSIENT_ERROR = "transient_error"
    PERMANENT_ERROR = "permanent_error"


class MessageKind(enum.StrEnum):
    """What a channel sends about a notice: the notice itself, or a reminder/escalation about it."""

    NOTICE = "notice"
    REMINDER = "reminder"
    ESCALATION = "escalation"
    # After checks (SPEC §13): the URLs still up after a claim of removal, or up again after a
    # verified removal. Always numbered: ``followup-1``, ``followup-2``, …
    FOLLOWUP = "followup"
    # The authority's answer to a clarification the platform asked for (SPEC §14): the removal
    # deadline runs again in full from it.
    CLARIFICATION = "clarification"
    # Requests of the notice withdrawn by the authority (SPEC §14): nothing is asked of them any more.
    WITHDRAWAL = "withdrawal"


def message_tag(kind: MessageKind, follow_up: int = 1) -> str:
    """The part of a message's ids after the notice id (see :attr:`NoticeContent.message_tag`)."""
    if follow_up < 1:
        raise ValueError("follow_up counts from 1")
    if follow_up == 1 and kind is not MessageKind.FOLLOWUP:
        return MessageKind(kind).value
    return f"{MessageKind(kind).value}-{follow_up}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    at: datetime
    channel: str
    outcome: AttemptOutcome
    code: int | None = None  # SMTP reply code or HTTP status
    detail: str = ""
    duration_ms: int = 0
    # What was sent and answered, for the evidence record (exact bytes, the server's answer); not
    # read back from the store.
    evidence: tuple[EvidenceRecord, ...] = field(default=(), compare=False, repr=False)

    def records(self, notice_id: str) -> list[EvidenceRecord]:
        """The evidence of this attempt: what the channel sent and got back, then the attempt."""
        meta = {
            "channel": self.channel,
            "outcome": self.outcome.value,
            "code": self.code,
            "detail": self.detail,
            "duration_ms": self.duration_ms,
            "at": self.at,
        }
        return [*self.evidence, EvidenceRecord(kind=EvidenceKind.ATTEMPT, notice_id=notice_id, meta=meta)]


@dataclass(frozen=True, slots=True, kw_only=True)
class Notice:
    """A notice as the store holds it."""

    notice_id: str
    platform: str
    channel: str  # the channel of the current (or last) attempt: primary, or fallback once used
    state: NoticeState
    created_at: datetime
    request_ids: tuple[str, ...]
    deliver_by: datetime  # created_at + sla.deliver_within: durable retries stop here
    next_attempt_at: datetime | None = None
    fallback_used: bool = False
    message_id: str | None = None
    ticket: str | None = None
    delivered_at: datetime | None = None
    receipt_at: datetime | None = None
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None
    attempts: tuple[Attempt, ...] = ()
    last_error: str | None = None
    primary_channel: str = ""  # the channel it was formed for ("" when not known: ``channel``)
    deadline: str | None = None  # the deadline profile of its requests; None: the platform's bounds
    clarification_requested_at: datetime | None = None  # the platform asked for a clarification
    clarified_at: datetime | None = None  # the authority answered it: the removal clock restarted
    earlier_paused_s: int = 0  # the clarification pauses answered before the one above, summed
    # It holds an urgent request or its profile is urgent: claimed before any other notice, and
    # sent on capacity kept for urgent notices.
    urgent: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Authority:
    name: str
    email: str
    reply_to: str | None
    timezone: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NoticeContent:
    """Everything a channel needs to render a notice, with nothing left to look up.

    Carries the elements a notice must contain under the EU Digital Services Act Art. 9(2) and
    16(2): who sends it, the legal basis and explanation, the exact URLs, the category, the
    evidence hashes, the deadlines, how to acknowledge, and a good-faith statement.
    """

    notice_id: str
    platform: str
    platform_name: str
    language: str
    created_at: datetime
    ack_by: datetime
    remove_by: datetime
    authority: Authority
    requests: tuple[TakedownRequest, ...]
    category_labels: dict[str, str] = field(default_factory=dict)
    callback_url: str | None = None
    kind: MessageKind = MessageKind.NOTICE
    # Which message of its kind this is. Only an escalation has a second: a breach of the other
    # bound, later than the first escalation (acknowledged late, or its bounds differ). It gets
    # ids of its own, so a platform that drops repeated ids does not drop it as a copy.
    follow_up: int = 1
    # For an escalation: the breaches it is about, so its text names the deadline that passed.
    # Empty: not known, the text names both.
    breaches: tuple[SlaKind, ...] = ()
    # The bounds, as the notice states them beside the absolute deadlines: they run from receipt
    # (delivery), which is the instant the SLA is judged from. A portal notice is received when
    # staff file it, which its files cannot know: they state the bounds from filing, without a time.
    ack_within: timedelta | None = None
    removal_within: timedelta | None = None
    from_filing: bool = False
    # The deadline profile of its requests (one per notice), with its label; None: the platform's
    # own bounds. Every request of the notice is owed ``ack_by`` and ``remove_by``.
    deadline: DeadlineProfile | None = None
    # A clarification's answer, written by staff: sent to the platform, never logged.
    note: str | None = None
    # An urgent notice: the channel sends it on capacity kept for urgent notices.
    urgent: bool = False

    @property
    def message_tag(self) -> str:
        """What the ids of this message add to the notice id: ``notice``, ``reminder``,
        ``escalation``, and ``escalation-2`` for a second escalation."""
        return message_tag(self.kind, self.follow_up)

    @property
    def url_count(self) -> int:
        return sum(len(r.urls) for r in self.requests)


def api_message_id(content: NoticeContent) -> str:
    """The id of one message about a notice: the notice id for the notice itself,
    ``<notice_id>.reminder`` / ``<notice_id>.escalation`` (``.escalation-2`` for a second one) for
    what follows it. It is both the
    ``Idempotency-Key`` and the ``webhook-id``, so a platform deduplicates re-sends of each message
    without mistaking a reminder for a copy of the notice."""
    if content.kind is MessageKind.NOTICE:
        return content.notice_id
    return f"{content.notice_id}.{content.message_tag}"


GOOD_FAITH_STATEMENT = (
    "The authority states in good faith that the information in this notice is accurate and that "
    "the content identified is illegal under the legal basis given for each item."
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SendResult:
    """What a channel reports after the platform (or the outbox) took a notice."""

    code: int | None = None
    message_id: str | None = None
    ticket: str | None = None  # a receipt: the platform's automated confirmation
    awaiting_submission: bool = False  # manual channel: rendered, staff must submit it
    detail: str = ""
    # What was sent and answered, exactly (the evidence record, SPEC §15).
    evidence: tuple[EvidenceRecord, ...] = field(default=(), compare=False, repr=False)
