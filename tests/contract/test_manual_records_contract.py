"""Manual records on every store (SPEC §15): who entered an acknowledgement, retry, submission,
clarification or withdrawal, and when, kept apart from the time it claims, in the transaction of
the change; the DKIM results of a reply; the report's count of acknowledgements by who gave them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from notifier.clock import SimulatedClock
from notifier.domain.acks import Ack, AckStatus
from notifier.domain.manual import Entry, EntrySource, ManualAction
from notifier.domain.notices import Attempt, AttemptOutcome
from notifier.metrics import Metrics
from notifier.ports import Store
from notifier.services.acks import AckService
from notifier.services.operator import record_ack, record_submitted, retry_notice
from notifier.services.report import AckSourcesReportStore
from tests.console_seed import HOUR, NOW, _claimed, delivered

ENTERED = NOW + timedelta(minutes=7)


def entry(by: str, source: EntrySource = EntrySource.CLI) -> Entry:
    return Entry(by=by, entered_at=ENTERED, source=source)


def acks_on(store: Store) -> AckService:
    return AckService(
        store=store, clock=SimulatedClock(NOW), metrics=Metrics(), fallbacks={}, deliver_within=6 * HOUR
    )


async def failed_notice(store: Any, request_id: str) -> str:
    notice = await _claimed(store, "videohost", [request_id], at=NOW - 9 * HOUR, channel="api")
    assert await store.record_failure(
        notice.notice_id,
        owner="seed",
        attempt=Attempt(
            at=NOW - 3 * HOUR, channel="api", outcome=AttemptOutcome.PERMANENT_ERROR, duration_ms=9
        ),
        channel="api",
        next_attempt_at=None,
        deliver_by=NOW - 3 * HOUR,
        fallback_used=False,
    )
    return notice.notice_id


async def test_a_manual_ack_keeps_who_entered_it_and_when_apart_from_the_time_it_claims(store: Store) -> None:
    notice = await delivered(store, "telegram", ["r-1", "r-2"], at=NOW - 20 * HOUR)  # type: ignore[arg-type]
    claimed = NOW - 10 * HOUR
    await record_ack(
        acks_on(store),
        store,
        notice.notice_id,
        status=AckStatus.RECEIVED,
        request_ids=[],
        ticket="TG-1",
        at=claimed,
        now=ENTERED,
        note="by phone",
        entry=entry("Kim Min-ji"),
    )
    await acks_on(store).acknowledge(
        Ack(
            notice_id=notice.notice_id,
            status=AckStatus.REMOVED,
            received_at=NOW,
            source="email:imap",
            dkim="mx.authority.example: dkim=pass header.d=telegram.org",
        )
    )

    manual, replied = await store.ack_history(notice.notice_id, limit=10)
    assert (manual.by, manual.entered_at, manual.received_at, manual.source) == (
        "Kim Min-ji",
        ENTERED,
        claimed,
        "manual",
    )
    assert manual.manual and manual.dkim is None
    assert (replied.by, replied.entered_at, replied.manual) == (None, None, False)
    assert replied.dkim == "mx.authority.example: dkim=pass header.d=telegram.org"


async def test_retries_submissions_clarifications_and_withdrawals_are_recorded_with_the_change(
    store: Store,
) -> None:
    failed = await failed_notice(store, "r-10")
    portal = await _claimed(store, "clipshare", ["r-20"], at=NOW - 5 * HOUR, channel="manual")  # type: ignore[arg-type]
    assert await store.record_delivery(
        portal.notice_id,
        owner="seed",
        attempt=Attempt(at=NOW - 5 * HOUR, channel="manual", outcome=AttemptOutcome.DELIVERED, duration_ms=1),
        result=__import__("notifier.domain.notices", fromlist=["SendResult"]).SendResult(
            awaiting_submission=True
        ),
        channel="manual",
    )
    asked = await delivered(store, "telegram", ["r-30", "r-31"], at=NOW - 4 * HOUR)  # type: ignore[arg-type]
    await acks_on(store).acknowledge(
        Ack(
            notice_id=asked.notice_id,
            status=AckStatus.CLARIFICATION_REQUESTED,
            received_at=NOW - HOUR,
            source="email:imap",
        )
    )

    await retry_notice(store, failed, now=ENTERED, deliver_within=6 * HOUR, entry=entry("ops-night"))
    submitted_at = NOW - 2 * HOUR
    await record_submitted(
        store,
        portal.notice_id,
        at=submitted_at,
        now=ENTERED,
        ticket=None,
        entry=entry("olivia", EntrySource.CONSOLE),
    )
    assert await store.record_clarification(asked.notice_id, at=ENTERED, entry=entry("lee")) is not None
    steps = await store.withdraw(
        ["r-31", "r-unknown"], at=ENTERED, reason="decided in error", entry=entry("lee")
    )
    assert [s.request_id for s in steps] == ["r-31"]
    # A change that does not happen leaves no record: a second retry of a notice no longer failed.
    assert await store.retry_failed(failed, now=ENTERED, deliver_by=ENTERED, entry=entry("ops-night")) is None

    found = await store.manual_records([failed, portal.notice_id, asked.notice_id, "TD-none"])
    assert set(found) == {failed, portal.notice_id, asked.notice_id}
    [retried] = found[failed]
    assert (retried.action, retried.by, retried.at, retried.entered_at, retried.source) == (
        ManualAction.RETRY,
        "ops-night",
        ENTERED,
        ENTERED,
        EntrySource.CLI,
    )
    [submitted] = found[portal.notice_id]
    assert (submitted.action, submitted.by, submitted.at, submitted.entered_at, submitted.source) == (
        ManualAction.SUBMITTED,
        "olivia",
        submitted_at,
        ENTERED,
        EntrySource.CONSOLE,
    )
    assert [(r.action, r.request_id, r.by) for r in found[asked.notice_id]] == [
        (ManualAction.CLARIFY, None, "lee"),
        (ManualAction.WITHDRAW, "r-31", "lee"),
    ]
    by_request = await store.manual_records(["r-31", "r-30"], of="request")
    assert [(r.action, r.notice_id) for r in by_request["r-31"]] == [(ManualAction.WITHDRAW, asked.notice_id)]
    assert "r-30" not in by_request


async def test_the_report_counts_acknowledgements_entered_by_hand_apart_from_the_platforms_own(
    store: Store,
) -> None:
    first = await delivered(store, "telegram", ["r-1", "r-2"], at=NOW - 20 * HOUR)  # type: ignore[arg-type]
    second = await delivered(store, "telegram", ["r-3"], at=NOW - 19 * HOUR)  # type: ignore[arg-type]
    other = await delivered(store, "videohost", ["r-4"], at=NOW - 18 * HOUR)  # type: ignore[arg-type]
    service = acks_on(store)
    await service.acknowledge(
        Ack(
            notice_id=first.notice_id,
            status=AckStatus.RECEIVED,
            received_at=NOW - 10 * HOUR,
            source="callback:telegram",
        )
    )
    # Repeated: changes nothing, counts nowhere.
    await service.acknowledge(
        Ack(
            notice_id=first.notice_id,
            status=AckStatus.RECEIVED,
            received_at=NOW - 9 * HOUR,
            source="callback:telegram",
        )
    )
    for notice_id in (first.notice_id, second.notice_id):
        await record_ack(
            service,
            store,
            notice_id,
            status=AckStatus.REMOVED,
            request_ids=[],
            ticket=None,
            at=NOW - 5 * HOUR,
            now=ENTERED,
            note=None,
            entry=entry("olivia"),
        )
    await service.acknowledge(
        Ack(notice_id=other.notice_id, status=AckStatus.REMOVED, received_at=NOW - HOUR, source="console:ada")
    )  # an older console row, written before ``by`` was kept

    assert isinstance(store, AckSourcesReportStore)
    sources = await store.ack_sources(
        since=None, until=None, platforms=["telegram", "videohost", "clipshare"]
    )
    assert (sources["telegram"].platform, sources["telegram"].manual) == (1, 2)
    assert (sources["videohost"].platform, sources["videohost"].manual) == (0, 1)
    assert "clipshare" not in sources
    # The window selects notices by their requests' delivery, as every figure of the report does.
    later = await store.ack_sources(
        since=NOW - 19 * HOUR - timedelta(minutes=1), until=None, platforms=["telegram"]
    )
    assert (later["telegram"].platform, later["telegram"].manual) == (0, 1)
