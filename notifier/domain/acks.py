"""Acknowledgements: what a platform said about a notice, and what it changes (SPEC §5.2, §7).

The rules live here as a pure plan: given the states a notice and its requests are in and one
acknowledgement, which transitions follow. Nothing moves backward; a late or repeated
acknowledgement plans no change and says why. The store applies a plan only if the states it was
computed from still hold, so two acknowledgements racing each other cannot both win.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from notifier.domain.errors import InvalidRequest
from notifier.domain.evidence import EvidenceKind, EvidenceRecord
from notifier.domain.models import NoticeState, RequestState
from notifier.domain.notices import NOTICE_ID_PATTERN
from notifier.domain.validation import MAX_BODY_BYTES, REQUEST_ID_PATTERN
from notifier.domain.validation import _location as location
from notifier.domain.validation import _shorten as shorten


class AckStatus(enum.StrEnum):
    RECEIVED = "received"
    REMOVED = "removed"
    REJECTED = "rejected"
    PARTIAL = "partial"
    # The platform asks the authority to clarify the notice (SPEC §14): an answer to the notice, so
    # it acknowledges it, and the removal clock stands still until the authority answers.
    CLARIFICATION_REQUESTED = "clarification_requested"


class ItemStatus(enum.StrEnum):
    RECEIVED = "received"
    REMOVED = "removed"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True, kw_only=True)
class AckItem:
    request_id: str
    status: ItemStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class Ack:
    """One acknowledgement, from whichever source: callback, ack queue, email reply, operator."""

    notice_id: str
    status: AckStatus
    received_at: datetime  # when notifier received it: the time that counts
    source: str  # "callback:<platform>", "amqp:takedown.acks", "email:imap", "email:smtp", "manual"
    items: tuple[AckItem, ...] = ()  # empty: every request of the notice
    ticket: str | None = None
    platform_at: datetime | None = None  # the platform's own "at", kept beside ours
    note: str | None = None  # operator's note: stored, never logged (it may name a victim)
    # A signed callback's ``webhook-id``: remembered in the transaction that records the
    # acknowledgement, so a replay is never applied twice and a crash never loses one.
    webhook_id: str | None = None
    # Manual records only (SPEC §15): who entered it and when, from the clock; ``received_at`` is
    # the time it claims. None for the platform's own acknowledgements.
    by: str | None = None
    entered_at: datetime | None = None
    # Email replies: the DKIM results the receiving server wrote in Authentication-Results.
    dkim: str | None = None
    # What came in with it and who entered it (the evidence record, SPEC §15): appended with the
    # acknowledgement in its transaction.
    evidence: tuple[EvidenceRecord, ...] = field(default=(), compare=False, repr=False)

    def record(self, outcome: str) -> EvidenceRecord:
        """The ``ack`` entry of this acknowledgement (its note, which may name a victim, left out)."""
        meta = {
            "source": self.source,
            "status": self.status.value,
            "items": [{"request_id": i.request_id, "status": i.status.value} for i in self.items],
            "ticket": self.ticket,
            "platform_at": self.platform_at,
            "received_at": self.received_at,
            "webhook_id": self.webhook_id,
            "outcome": outcome,
        }
        return EvidenceRecord(
            kind=EvidenceKind.ACK,
            notice_id=self.notice_id,
            request_ids=tuple(i.request_id for i in self.items),
            meta=meta,
        )


# -- parsing ------------------------------------------------------------------------------------


class _ItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    request_id: str
    status: Literal["received", "removed", "rejected"]

    @field_validator("request_id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not REQUEST_ID_PATTERN.fullmatch(value):
            raise ValueError("must be 1-128 characters of A-Za-z0-9._:-")
        return value


class _AckIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    notice_id: str
    status: Literal["received", "removed", "rejected", "partial", "clarification_requested"]
    items: Annotated[list[_ItemIn], Field(max_length=10_000)] | None = None
    ticket: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    at: datetime | None = None

    @field_validator("notice_id")
    @classmethod
    def _notice_id(cls, value: str) -> str:
        if not NOTICE_ID_PATTERN.fullmatch(value):
            raise ValueError("is not a notice id (TD-<platform>-<YYYYMMDD>-<sequence>)")
        return value

    @field_validator("ticket")
    @classmethod
    def _ticket(cls, value: str | None) -> str | None:
        if value is not None and any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise ValueError("contains a control character")
        return value

    @field_validator("at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("needs a time zone offset (e.g. +09:00 or Z)")
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError("is outside the range of representable times") from None


def parse_ack(body: bytes, *, source: str, received_at: datetime) -> Ack:
    """Parse and validate a §5.2 acknowledgement; raise :class:`InvalidRequest` naming the field."""
    if len(body) > MAX_BODY_BYTES:
        raise InvalidRequest(f"body is {len(body)} bytes, over the {MAX_BODY_BYTES}-byte limit")
    try:
        model = _AckIn.model_validate_json(body)
    except ValidationError as error:
        first = error.errors(include_url=False, include_input=False)[0]
        # An unknown field's name is the sender's text: echoed cleaned and cut, like a request's.
        loc = shorten(location(first["loc"]), 60)
        if first["type"] == "json_invalid":
            raise InvalidRequest("body is not valid JSON") from None
        if first["type"] == "extra_forbidden":
            raise InvalidRequest(f"{loc}: unknown field") from None
        if first["type"] == "model_type" and not loc:
            raise InvalidRequest("body must be a JSON object") from None
        message = str(first["msg"]).removeprefix("Value error, ")
        raise InvalidRequest(f"{loc}: {message}" if loc else message) from None
    except (ValueError, RecursionError, UnicodeDecodeError):
        raise InvalidRequest("body could not be parsed") from None
    if model.status == "partial" and not model.items:
        raise InvalidRequest("items: a partial acknowledgement must list its items")
    return Ack(
        notice_id=model.notice_id,
        status=AckStatus(model.status),
        items=tuple(AckItem(request_id=i.request_id, status=ItemStatus(i.status)) for i in model.items or ()),
        ticket=model.ticket,
        platform_at=model.at,
        received_at=received_at,
        source=source,
    )


# -- the plan -----------------------------------------------------------------------------------

_RANK = {
    RequestState.DELIVERED: 0,
    RequestState.ACKNOWLEDGED: 1,
    RequestState.REMOVED: 2,
    RequestState.REJECTED: 2,
}
_TARGET = {
    ItemStatus.RECEIVED: RequestState.ACKNOWLEDGED,
    ItemStatus.REMOVED: RequestState.REMOVED,
    ItemStatus.REJECTED: RequestState.REJECTED,
}
ACKNOWLEDGEABLE_NOTICE_STATES = frozenset({NoticeState.DELIVERED, NoticeState.ACKNOWLEDGED})


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestChange:
    request_id: str
    before: RequestState
    after: RequestState
    acknowledged_at: datetime | None  # set when the request is acknowledged for the first time
    resolved_at: datetime | None  # set when it is removed or rejected


@dataclass(frozen=True, slots=True, kw_only=True)
class AckPlan:
    notice_before: NoticeState
    notice_after: NoticeState
    notice_acknowledged_at: datetime | None  # first acknowledgement of the notice
    notice_resolved_at: datetime | None
    changes: tuple[RequestChange, ...]
    unknown_items: tuple[str, ...] = ()  # request ids the notice does not contain
    ignored: tuple[str, ...] = field(default=())  # why parts of the ack change nothing (logged)
    # A clarification asked: the removal clock of the notice's requests stops from this moment.
    clarification_requested_at: datetime | None = None

    @property
    def changes_anything(self) -> bool:
        return (
            bool(self.changes)
            or self.notice_before != self.notice_after
            or self.clarification_requested_at is not None
        )


def _item_statuses(ack: Ack, request_ids: list[str]) -> dict[str, ItemStatus]:
    if ack.items:
        return {item.request_id: item.status for item in ack.items}
    if ack.status is AckStatus.PARTIAL:  # parse_ack refuses this; kept total for other callers
        return {}
    whole = ItemStatus(ack.status.value)
    return dict.fromkeys(request_ids, whole)


def plan_ack(notice_state: NoticeState, requests: Mapping[str, RequestState], ack: Ack) -> AckPlan:
    """What ``ack`` changes for a notice in ``notice_state`` whose requests are in ``requests``."""
    if ack.status is AckStatus.CLARIFICATION_REQUESTED:
        # An answer about the notice (its requests are acknowledged, as by "received"), which
        # also stops the removal clock while the notice is still open.
        plan = plan_ack(notice_state, requests, replace(ack, status=AckStatus.RECEIVED, items=()))
        if notice_state not in ACKNOWLEDGEABLE_NOTICE_STATES or plan.notice_after is NoticeState.RESOLVED:
            return plan
        return replace(
            plan, notice_after=NoticeState.ACKNOWLEDGED, clarification_requested_at=ack.received_at
        )
    ignored: list[str] = []
    if notice_state not in ACKNOWLEDGEABLE_NOTICE_STATES:
        reason = (
            "the notice is already resolved"
            if notice_state is NoticeState.RESOLVED
            else f"the notice is {notice_state.value}, not delivered"
        )
        return AckPlan(
            notice_before=notice_state,
            notice_after=notice_state,
            notice_acknowledged_at=None,
            notice_resolved_at=None,
            changes=(),
            unknown_items=tuple(i.request_id for i in ack.items if i.request_id not in requests),
            ignored=(reason,),
        )
    wanted = _item_statuses(ack, list(requests))
    unknown = tuple(rid for rid in wanted if rid not in requests)
    changes: list[RequestChange] = []
    for request_id, status in wanted.items():
        before = requests.get(request_id)
        if before is None:
            continue
        after = _TARGET[status]
        if before not in _RANK:
            ignored.append(f"{request_id} is {before.value}")
            continue
        if _RANK[after] <= _RANK[before]:
            if before != after:
                ignored.append(f"{request_id} is already {before.value}; {status.value} would move it back")
            else:
                ignored.append(f"{request_id} is already {before.value}")
            continue
        changes.append(
            RequestChange(
                request_id=request_id,
                before=before,
                after=after,
                acknowledged_at=ack.received_at if before is RequestState.DELIVERED else None,
                resolved_at=ack.received_at
                if after in (RequestState.REMOVED, RequestState.REJECTED)
                else None,
            )
        )
    final = dict(requests)
    final.update({c.request_id: c.after for c in changes})
    if final and all(state in (RequestState.REMOVED, RequestState.REJECTED) for state in final.values()):
        notice_after = NoticeState.RESOLVED
    elif any(rid in requests for rid in wanted):
        notice_after = NoticeState.ACKNOWLEDGED  # the platform answered about this notice
    else:
        notice_after = notice_state  # only unknown items: nothing of this notice was answered
    first_ack = notice_state is NoticeState.DELIVERED and notice_after is not NoticeState.DELIVERED
    return AckPlan(
        notice_before=notice_state,
        notice_after=notice_after,
        notice_acknowledged_at=ack.received_at if first_ack else None,
        notice_resolved_at=ack.received_at if notice_after is NoticeState.RESOLVED else None,
        changes=tuple(changes),
        unknown_items=unknown,
        ignored=tuple(ignored),
    )
