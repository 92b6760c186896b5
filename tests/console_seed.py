"""A small store for the console's tests and screenshots: a breached notice, a fresh one, a portal
notice awaiting submission (with its outbox files), a failed notice, a dead letter; and the console
app on it, with users of every role."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from aiohttp import web

from notifier.clock import SimulatedClock
from notifier.domain.models import DeadLetter, Priority, TakedownRequest
from notifier.domain.notices import Attempt, AttemptOutcome, Notice, SendResult
from notifier.domain.report import Bounds
from notifier.domain.sla import SlaBounds, SlaKind
from notifier.metrics import Metrics
from notifier.ports import Incoming, Role
from notifier.runtime.console import ConsoleDeps, mount_console
from notifier.runtime.console.security import LoginLimiter
from notifier.services.acks import AckService
from notifier.services.users import add_user
from notifier.store import SqlStore

NOW = datetime(2024, 9, 10, 3, 0, tzinfo=UTC)  # 12:00 in Seoul
HOUR = timedelta(hours=1)
PASSWORD = "correct horse battery"
PLATFORMS = {"telegram": "Telegram", "videohost": "VideoHost", "clipshare": "ClipShare Portal"}
BOUND = timedelta(hours=36)


def _request(request_id: str, platform: str, n: int = 1) -> TakedownRequest:
    return TakedownRequest(
        request_id=request_id,
        platform=platform,
        urls=tuple(f"https://{platform}.example/v/{request_id}-{i}" for i in range(n)),
        category="deepfake_sexual_abuse",
        priority=Priority.NORMAL,
        case_ref=f"KCSC-CASE-{request_id.upper()}",
        explanation="names a victim: shown only to logged-in staff",
    )


async def _claimed(store: SqlStore, platform: str, ids: list[str], *, at: datetime, channel: str) -> Notice:
    await store.ingest([Incoming(request=_request(i, platform, 2), source="test") for i in ids], [], now=at)
    formed = await store.form_notice(
        platform, max_items=50, channel=channel, now=at, deliver_by=at + 6 * HOUR
    )
    assert formed is not None
    [notice] = await store.claim_due(owner="seed", now=at, lease=timedelta(minutes=5), limit=1)
    return notice


async def delivered(store: SqlStore, platform: str, ids: list[str], *, at: datetime) -> Notice:
    notice = await _claimed(store, platform, ids, at=at - timedelta(minutes=3), channel="email")
    attempt = Attempt(at=at, channel="email", outcome=AttemptOutcome.DELIVERED, code=250, duration_ms=184)
    assert await store.record_delivery(
        notice.notice_id,
        owner="seed",
        attempt=attempt,
        result=SendResult(code=250, message_id=f"<{notice.notice_id}@authority.example>"),
        channel="email",
    )
    return notice


async def seed(store: SqlStore, outbox: Path) -> dict[str, str]:
    """The notices by role: ``breached``, ``fresh``, ``portal``, ``failed``."""
    breached = await delivered(
        store, "telegram", ["kcsc-2024-000101", "kcsc-2024-000102"], at=NOW - 40 * HOUR
    )
    await store.record_receipt(breached.notice_id, at=NOW - 39 * HOUR, ticket="TG-55821", source="test")
    await store.decide(breached.notice_id, {SlaKind.REMINDER: NOW - 16 * HOUR}, decided_at=NOW - 16 * HOUR)
    await store.decide(breached.notice_id, {SlaKind.ACK_BREACH: NOW - 4 * HOUR}, decided_at=NOW - 4 * HOUR)
    fresh = await delivered(store, "videohost", ["kcsc-2024-000201"], at=NOW - 2 * HOUR)
    await store.record_receipt(fresh.notice_id, at=NOW - HOUR, ticket="VH-7731", source="test")
    await delivered(store, "telegram", ["kcsc-2024-000151"], at=NOW - 33 * HOUR)  # due within 6 h
    portal = await _claimed(store, "clipshare", ["kcsc-2024-000301"], at=NOW - 5 * HOUR, channel="manual")
    assert await store.record_delivery(
        portal.notice_id,
        owner="seed",
        attempt=Attempt(
            at=NOW - 5 * HOUR, channel="manual", outcome=AttemptOutcome.DELIVERED, duration_ms=12
        ),
        result=SendResult(awaiting_submission=True, detail="rendered"),
        channel="manual",
    )
    folder = outbox / portal.notice_id
    folder.mkdir(parents=True)
    (folder / "notice.txt").write_text("Takedown notice\n", encoding="utf-8")
    (folder / f"{portal.notice_id}.csv").write_text("request_id,url\n", encoding="utf-8")
    failed = await _claimed(store, "videohost", ["kcsc-2024-000401"], at=NOW - 9 * HOUR, channel="api")
    assert await store.record_failure(
        failed.notice_id,
        owner="seed",
        attempt=Attempt(
            at=NOW - 3 * HOUR,
            channel="api",
            outcome=AttemptOutcome.PERMANENT_ERROR,
            code=410,
            detail="HTTP 410: endpoint retired",
            duration_ms=95,
        ),
        channel="api",
        next_attempt_at=None,
        deliver_by=NOW - 3 * HOUR,
        fallback_used=False,
    )
    await store.ingest(
        [],
        [
            DeadLetter(
                source="amqp:takedown.requests",
                reason="urls[0]: scheme 'javascript' is not allowed",
                at=NOW - HOUR,
                body=b"{}",
                request_id="kcsc-2024-000999",
            )
        ],
        now=NOW - HOUR,
    )
    for name, role in (("olivia", Role.OPERATOR), ("victor", Role.VIEWER), ("ada", Role.ADMIN)):
        await add_user(store, name, PASSWORD, role=role, now=NOW)
    return {
        "breached": breached.notice_id,
        "fresh": fresh.notice_id,
        "portal": portal.notice_id,
        "failed": failed.notice_id,
    }


def console_deps(
    store: SqlStore, outbox: Path, clock: SimulatedClock, *, secure: bool = False
) -> ConsoleDeps:
    bounds = {p: SlaBounds(ack_within=BOUND, removal_within=BOUND) for p in PLATFORMS}
    return ConsoleDeps(
        store=store,
        acks=AckService(store=store, clock=clock, metrics=Metrics(), fallbacks={}, deliver_within=6 * HOUR),
        clock=clock,
        sla_bounds=bounds,
        report_bounds={p: Bounds(ack_within=BOUND, removal_within=BOUND) for p in PLATFORMS},
        platform_names=PLATFORMS,
        zone=ZoneInfo("Asia/Seoul"),
        outbox=outbox,
        deliver_within=6 * HOUR,
        secure_cookies=secure,
        limiter=LoginLimiter(),
        overview_cache_s=0,  # every request reads the store: the tests see each change at once
        report_cache_s=0,
    )


def console_app(deps: ConsoleDeps) -> web.Application:
    app = web.Application()
    mount_console(app, deps)
    return app
