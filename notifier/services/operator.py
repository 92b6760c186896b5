"""What operators do by hand: send a failed notice again, record a portal submission."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import structlog

from notifier.domain.acks import Ack, AckItem, AckStatus, ItemStatus
from notifier.domain.delivery import Channels, Step, after_retry_by_hand, after_submission
from notifier.domain.evidence import staff_record
from notifier.domain.manual import Entry
from notifier.domain.notices import Notice
from notifier.errors import InvalidRequest
from notifier.ports import Store
from notifier.services.acks import AckResult, AckService

log = structlog.get_logger("notifier.operator")


async def retry_notice(
    store: Store,
    notice_id: str,
    *,
    now: datetime,
    deliver_within: timedelta,
    actor: str = "cli",
    entry: Entry | None = None,
) -> Notice:
    """``failed`` → ``queued``: the same notice (same id, same requests) goes out again, on its
    primary channel, with a delivery window from now. ``actor`` says who asked (``console:NAME``);
    ``entry`` is kept as the manual record of it."""
    known = await store.get_notices([notice_id])
    if not known:
        raise InvalidRequest(f"{notice_id}: no such notice")
    decision = after_retry_by_hand(
        known[0],
        at=now,
        channels=Channels(primary=known[0].primary_channel or known[0].channel),
        deliver_within=deliver_within,
    )
    if decision.step is not Step.REQUEUE:
        raise InvalidRequest(f"{notice_id}: is {known[0].state.value}, only a failed notice can be retried")
    by = entry.by if entry is not None else actor
    staff = staff_record("retry", by=by, notice_id=notice_id, actor=actor)
    notice = await store.retry_failed(
        notice_id, now=now, deliver_by=decision.deliver_by, entry=entry, evidence=[staff]
    )
    if notice is None:  # another operator or process moved it meanwhile
        raise InvalidRequest(f"{notice_id}: is no longer failed, only a failed notice can be retried")
    log.info("notice.retry_requested", notice_id=notice_id, platform=notice.platform, actor=actor)
    return notice


async def record_submitted(
    store: Store,
    notice_id: str,
    *,
    at: datetime,
    now: datetime,
    ticket: str | None,
    actor: str = "cli",
    entry: Entry | None = None,
) -> Notice:
    """Staff submitted a portal notice: that counts as its delivery (SPEC §6.3)."""
    if at > now:
        raise InvalidRequest(f"--at {at.isoformat()} is in the future")
    known = await store.get_notices([notice_id])
    if not known:
        raise InvalidRequest(f"{notice_id}: no such notice")
    if at < known[0].created_at:
        raise InvalidRequest(f"--at {at.isoformat()} is before the notice was created")
    notice = None
    if after_submission(known[0]).step is Step.DELIVERED:
        staff = staff_record(
            "submitted",
            by=entry.by if entry is not None else actor,
            notice_id=notice_id,
            actor=actor,
            at=at,
            entered_at=now,
            ticket=ticket,
        )
        notice = await store.mark_submitted(notice_id, at=at, ticket=ticket, entry=entry, evidence=[staff])
    if notice is None:
        raise InvalidRequest(
            f"{notice_id}: is {known[0].state.value}; "
            "only a notice awaiting submission can be marked submitted"
        )
    log.info(
        "notice.delivered",
        notice_id=notice_id,
        platform=notice.platform,
        channel="manual",
        ticket=ticket,
        actor=actor,
    )
    return notice


async def record_ack(
    acks: AckService,
    store: Store,
    notice_id: str,
    *,
    status: AckStatus,
    request_ids: Sequence[str],
    ticket: str | None,
    at: datetime,
    now: datetime,
    note: str | None,
    source: str = "manual",
    entry: Entry | None = None,
) -> AckResult:
    """What a platform said by phone, on a portal or in a letter, recorded by an operator.

    ``at`` may date it in the past, never before the notice's delivery nor in the future. ``source``
    is who recorded it in the acknowledgement history (``manual`` from the CLI, ``console:NAME``).
    """
    if at > now:
        raise InvalidRequest(f"--at {at.isoformat()} is in the future")
    known = await store.get_notices([notice_id])
    if not known:
        raise InvalidRequest(f"{notice_id}: no such notice")
    notice = known[0]
    if notice.delivered_at is None:
        raise InvalidRequest(
            f"{notice_id}: is {notice.state.value} and was never delivered; nothing to acknowledge"
        )
    if at < notice.delivered_at:
        raise InvalidRequest(
            f"--at {at.isoformat()} is before the notice's delivery ({notice.delivered_at.isoformat()})"
        )
    if status is AckStatus.CLARIFICATION_REQUESTED and request_ids:
        raise InvalidRequest("--status clarification_requested covers the whole notice; give no --request-id")
    whole = status in (AckStatus.PARTIAL, AckStatus.CLARIFICATION_REQUESTED)
    item_status = ItemStatus(status.value) if not whole else None
    if request_ids and item_status is None:
        raise InvalidRequest("--status partial is not for manual entries; give one status per call")
    items = tuple(AckItem(request_id=r, status=item_status) for r in request_ids if item_status is not None)
    ack = Ack(
        notice_id=notice_id,
        status=status,
        items=items,
        ticket=ticket,
        received_at=at,
        source=source,
        note=note,
        by=entry.by if entry is not None else None,
        entered_at=entry.entered_at if entry is not None else None,
        evidence=(
            staff_record(
                "ack",
                by=entry.by if entry is not None else source,
                notice_id=notice_id,
                request_ids=request_ids,
                status=status.value,
                at=at,
                entered_at=now,
                ticket=ticket,
            ),
        ),
    )
    return await acks.acknowledge(ack)
