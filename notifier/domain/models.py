"""The model of a takedown request and the states requests and notices move through."""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


class RequestState(enum.StrEnum):
    PENDING = "pending"
    BATCHED = "batched"
    DELIVERED = "delivered"
    ACKNOWLEDGED = "acknowledged"
    REMOVED = "removed"
    REJECTED = "rejected"
    FAILED = "failed"
    WITHDRAWN = "withdrawn"


class NoticeState(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    RETRYING = "retrying"
    AWAITING_SUBMISSION = "awaiting_submission"
    DELIVERED = "delivered"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    FAILED = "failed"


# Requests not in a final state: still notifier's to deliver (pending, batched) or awaiting the
# platform (delivered, acknowledged). Removed, rejected, failed and withdrawn are final.
OPEN_REQUEST_STATES = (
    RequestState.PENDING,
    RequestState.BATCHED,
    RequestState.DELIVERED,
    RequestState.ACKNOWLEDGED,
)
UNDELIVERED_REQUEST_STATES = (RequestState.PENDING, RequestState.BATCHED)
# Notices neither resolved nor failed: on their way (queued, sending, retrying, awaiting_submission)
# or delivered and not yet settled by the platform (delivered, acknowledged).
OPEN_NOTICE_STATES = (
    NoticeState.QUEUED,
    NoticeState.SENDING,
    NoticeState.RETRYING,
    NoticeState.AWAITING_SUBMISSION,
    NoticeState.DELIVERED,
    NoticeState.ACKNOWLEDGED,
)


class Priority(enum.StrEnum):
    NORMAL = "normal"
    URGENT = "urgent"


@dataclass(frozen=True, slots=True, kw_only=True)
class Evidence:
    """Hashes of the material, never the material itself."""

    sha256: str | None = None
    pdq: str | None = None

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in (("sha256", self.sha256), ("pdq", self.pdq)) if v is not None}


@dataclass(frozen=True, slots=True, kw_only=True)
class TakedownRequest:
    """One takedown decision: one or more URLs on one platform."""

    request_id: str
    platform: str
    urls: tuple[str, ...]
    category: str
    priority: Priority = Priority.NORMAL
    legal_basis: str | None = None
    explanation: str | None = None
    decided_at: datetime | None = None
    evidence: tuple[Evidence, ...] = ()
    case_ref: str | None = None
    territorial_scope: tuple[str, ...] = ()
    # The deadline profile it is judged by (SPEC §14); None: the platform's own bounds.
    deadline: str | None = None

    def canonical(self) -> dict[str, Any]:
        """The request after validation and defaults, as plain JSON values in a fixed shape.
        ``deadline`` appears only when set, so a request without one keeps the shape it always had."""
        shape: dict[str, Any] = {
            "request_id": self.request_id,
            "platform": self.platform,
            "urls": list(self.urls),
            "category": self.category,
            "priority": self.priority.value,
            "legal_basis": self.legal_basis,
            "explanation": self.explanation,
            "decided_at": format_timestamp(self.decided_at) if self.decided_at else None,
            "evidence": [e.as_dict() for e in self.evidence],
            "case_ref": self.case_ref,
            "territorial_scope": list(self.territorial_scope),
        }
        if self.deadline is not None:
            shape["deadline"] = self.deadline
        return shape

    def canonical_json(self) -> str:
        return json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def content_hash(self) -> str:
        """Equal for two copies that are equal after validation and defaults, key order ignored."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    @classmethod
    def from_canonical(cls, data: dict[str, Any]) -> TakedownRequest:
        """Rebuild a request from :meth:`canonical` output (stored rows, trusted)."""
        decided = data.get("decided_at")
        return cls(
            request_id=data["request_id"],
            platform=data["platform"],
            urls=tuple(data["urls"]),
            category=data["category"],
            priority=Priority(data.get("priority") or "normal"),
            legal_basis=data.get("legal_basis"),
            explanation=data.get("explanation"),
            decided_at=datetime.fromisoformat(decided) if decided else None,
            evidence=tuple(Evidence(**e) for e in data.get("evidence") or ()),
            case_ref=data.get("case_ref"),
            territorial_scope=tuple(data.get("territorial_scope") or ()),
            deadline=data.get("deadline"),
        )


class IntakeOutcome(enum.StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    """A message that could not be taken in, kept with the reason."""

    source: str
    reason: str
    at: datetime
    body: bytes
    request_id: str | None = None
    # The queue handed this message over before (AMQP redelivered flag, local delivery count > 1):
    # the store skips it when the same source already dead-lettered the same body.
    redelivered: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredRequest:
    """A request as the store holds it, with its state and timestamps."""

    request: TakedownRequest
    state: RequestState
    ingested_at: datetime
    notice_id: str | None = None
    delivered_at: datetime | None = None
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Conflict:
    request_id: str
    at: datetime
    source: str


def format_timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with ``Z``, as every JSON output of notifier writes time."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
