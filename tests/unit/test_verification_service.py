"""Verification of removals end to end (SPEC §13): a real aiohttp site whose posts the platform
really takes down (or not), the prober, a SQLite store and the simulated clock."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import generate_latest
from structlog.testing import capture_logs

from notifier.channels.prober import Prober, ProberOptions
from notifier.clock import SimulatedClock
from notifier.domain.acks import Ack, AckStatus, plan_ack
from notifier.domain.models import Evidence, NoticeState, Priority, RequestState, TakedownRequest
from notifier.domain.notices import Attempt, AttemptOutcome, MessageKind, SendResult
from notifier.domain.report import Bounds
from notifier.domain.verification import CheckOutcome, VerifyRules, VerifySchedule
from notifier.metrics import Metrics
from notifier.ports import Followup, Incoming, Store
from notifier.services.report import build_report
from notifier.services.verification import VerificationService
from notifier.services.verify_followups import ChannelFollowups
from notifier.store import SqlStore, create_store
from tests.stores import sqlite_store
from tests.unit.test_sla_monitor import AUTHORITY, ScriptedChannel, route

BOUND = timedelta(hours=36)
SCHEDULE = VerifySchedule(remind_after=BOUND * 0.66, removal_within=BOUND)


@dataclass
class Platform:
    """The platform's site: the posts still up, served at their request URLs."""

    port: int = 0
    up: set[str] = field(default_factory=set)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/p/{name}"


@pytest.fixture
async def site() -> AsyncIterator[Platform]:
    platform = Platform()

    async def post(request: web.Request) -> web.StreamResponse:
        if request.match_info["name"] in platform.up:
            return web.Response(text="a post", content_type="text/html")
        return web.Response(status=404)

    app = web.Application()
    app.router.add_get("/p/{name}", post)
    async with TestServer(app, host="127.0.0.1", port=0) as server:
        platform.port = server.port or 0
        yield platform


@pytest.fixture
async def prober() -> AsyncIterator[Prober]:
    async with Prober(ProberOptions(user_agent="notifier-test", allow_private=True)) as opened:
        yield opened


class Outbox:
    """Follow-ups as the platform's channel would send them: ids derived from the notice."""

    def __init__(self) -> None:
        self.sent: list[Followup] = []

    async def __call__(self, followup: Followup) -> str | None:
        self.sent.append(followup)
        return f"<{followup.notice_id}.followup-{followup.seq}@authority.example>"


def service(
    store: SqlStore,
    prober: Prober,
    clock: SimulatedClock,
    outbox: Outbox,
    metrics: Metrics,
    *,
    renotice: bool = True,
) -> VerificationService:
    return VerificationService(
        store=store,
        checker=prober,
        rules={"telegram": VerifyRules()},
        schedules={"telegram": SCHEDULE},
        clock=clock,
        metrics=metrics,
        send_followup=outbox,
        renotice=renotice,
        poll_interval=60.0,
    )


def incoming(site: Platform, name: str) -> Incoming:
    """The request ``r-<name>`` on telegram, of the one post ``name`` of ``site``."""
    return Incoming(
        request=TakedownRequest(
            request_id=f"r-{name}",
            platform="telegram",
            urls=(site.url(name),),
            category="deepfake_sexual_abuse",
            priority=Priority.NORMAL,
        ),
        source="test",
    )


async def delivered_notice(store: Store, clock: SimulatedClock, site: Platform, names: list[str]) -> str:
    """One notice of a request per name, delivered now, every post up."""
    now = clock.now()
    site.up.update(names)
    await store.ingest([incoming(site, name) for name in names], [], now=now)
    notice = await store.form_notice(
        "telegram", max_items=50, channel="email", now=now, deliver_by=now + BOUND
    )
    assert notice is not None
    [claimed] = await store.claim_due(owner="w", now=now, lease=timedelta(minutes=5), limit=1)
    attempt = Attempt(at=now, channel="email", outcome=AttemptOutcome.DELIVERED, code=250)
    assert await store.record_delivery(
        claimed.notice_id, owner="w", attempt=attempt, result=SendResult(code=250), channel="email"
    )
    return claimed.notice_id


async def claim_removed(store: Store, notice_id: str, at: datetime) -> None:
    ack = Ack(notice_id=notice_id, status=AckStatus.REMOVED, received_at=at, source="amqp:takedown.acks")
    context = await store.ack_context(notice_id)
    assert context is not None
    assert await store.apply_ack(ack, plan_ack(context[0].state, context[1], ack))


async def verified_at(store: SqlStore, request_id: str) -> datetime | None:
    found = await store.request_verification(request_id)
    assert found is not None
    return found.verified_removed_at


async def test_a_claim_of_removal_with_4_of_25_still_up_is_4_false_claims_and_one_followup(
    store: SqlStore, prober: Prober, site: Platform
) -> None:
    clock, outbox, metrics = SimulatedClock(), Outbox(), Metrics()
    names = [f"c{i:02d}" for i in range(25)]
    notice_id = await delivered_notice(store, clock, site, names)
    still_up = names[:4]
    await clock.advance(timedelta(hours=2))
    site.up.intersection_update(still_up)  # the platform takes down 21 and says all 25 are gone
    await claim_removed(store, notice_id, clock.now())
    checker = service(store, prober, clock, outbox, metrics)

    with capture_logs() as logs:
        await checker.round()

    claimed_at = clock.now()
    assert [e["request_id"] for e in logs if e["event"] == "verify.contradicted"] == [
        f"r-{n}" for n in still_up
    ]
    assert metrics.false_claims._value.get() == 4
    assert len(outbox.sent) == 1
    assert outbox.sent[0].notice_id == notice_id
    assert outbox.sent[0].kind == "contradicted"
    assert sorted(outbox.sent[0].urls) == sorted(site.url(n) for n in still_up)
    for name in names:
        expected = None if name in still_up else claimed_at
        assert await verified_at(store, f"r-{name}") == expected
    first = await store.request_verification("r-c00")
    assert first is not None
    assert first.false_claims == 1
    assert [c.outcome for c in first.checks] == [CheckOutcome.LIVE]

    site.up.clear()  # the 4 go at last
    await clock.advance(timedelta(days=1))
    await checker.round()

    for name in still_up:
        assert await verified_at(store, f"r-{name}") == claimed_at + timedelta(days=1)
    assert len(outbox.sent) == 1
    assert metrics.false_claims._value.get() == 4
    report = await build_report(
        store, {"telegram": Bounds(ack_within=BOUND, removal_within=BOUND)}, now=clock.now()
    )
    [figures] = report["platforms"]
    assert (figures["removed"], figures["verified_removed"], figures["false_claims"]) == (25, 25, 4)
    assert figures["reappeared"] == 0


async def test_a_silent_platform_that_removed_is_credited_at_the_first_check_that_saw_it_gone(
    store: SqlStore, prober: Prober, site: Platform
) -> None:
    clock, outbox, metrics = SimulatedClock(), Outbox(), Metrics()
    names = [f"s{i}" for i in range(6)]
    await delivered_notice(store, clock, site, names)
    delivered = clock.now()
    checker = service(store, prober, clock, outbox, metrics)
    await checker.round()  # at delivery: nothing is due yet
    assert metrics.checks.labels(platform="telegram", outcome="live")._value.get() == 0

    site.up.difference_update(names[:3])  # quietly, without a word
    await clock.advance(SCHEDULE.remind_after)
    await checker.round()

    for name in names:
        expected = delivered + SCHEDULE.remind_after if name in names[:3] else None
        assert await verified_at(store, f"r-{name}") == expected
    site.up.clear()
    await clock.advance(BOUND - SCHEDULE.remind_after)
    await checker.round()
    for name in names[3:]:
        assert await verified_at(store, f"r-{name}") == delivered + BOUND
    assert outbox.sent == []
    assert metrics.false_claims._value.get() == 0
    report = await build_report(
        store, {"telegram": Bounds(ack_within=BOUND, removal_within=BOUND)}, now=clock.now()
    )
    [figures] = report["platforms"]
    assert (figures["removed"], figures["verified_removed"], figures["false_claims"]) == (0, 6, 0)
    remind, bound = int(SCHEDULE.remind_after.total_seconds()), int(BOUND.total_seconds())
    assert figures["time_to_verified_removal_s"] == {"p50": remind, "p90": bound, "max": bound}


async def test_a_reappearance_after_verified_removal_is_counted_and_renoticed_once_across_a_restart(
    tmp_path: Path, prober: Prober, site: Platform
) -> None:
    clock, outbox, metrics = SimulatedClock(), Outbox(), Metrics()
    store = await sqlite_store(tmp_path)
    notice_id = await delivered_notice(store, clock, site, ["back"])
    await clock.advance(timedelta(hours=3))
    site.up.clear()
    await claim_removed(store, notice_id, clock.now())
    await service(store, prober, clock, outbox, metrics).round()
    removed_at = clock.now()
    assert await verified_at(store, "r-back") == removed_at
    await store.close()

    site.up.add("back")  # re-uploaded at the same URL
    await clock.advance(timedelta(days=1))
    restarted = await create_store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        checker = service(restarted, prober, clock, outbox, Metrics())
        with capture_logs() as logs:
            await checker.round()
            await clock.advance(timedelta(days=7))
            await checker.round()
            await clock.advance(timedelta(days=30))
            await checker.round()

        found = await restarted.request_verification("r-back")
        assert found is not None
        [renotice_id] = found.renotices
        [renotice] = await restarted.get_notices([renotice_id])
        listed = await restarted.notice_requests(renotice_id)
        [stored] = await restarted.get_requests(["r-back"])
        targets = await restarted.verify_targets([renotice_id])  # notifier verify <re-notice id>
        report = await build_report(
            restarted, {"telegram": Bounds(ack_within=BOUND, removal_within=BOUND)}, now=clock.now()
        )
    finally:
        await restarted.close()
    assert [e["event"] for e in logs if e["event"] == "verify.reappeared"] == ["verify.reappeared"]
    assert found.reappeared_at == removed_at + timedelta(days=1)
    assert found.verified_removed_at == removed_at
    assert [c.outcome for c in found.checks][:3] == [CheckOutcome.LIVE] * 3
    # Re-notified once, as a new notice (not a follow-up of the first): the same request, a new id,
    # queued for the dispatcher on the first notice's channel.
    assert outbox.sent == []
    assert renotice_id != notice_id
    assert (renotice.platform, renotice.channel, renotice.state) == ("telegram", "email", NoticeState.QUEUED)
    assert renotice.request_ids == ("r-back",)
    assert [(r.request_id, r.urls) for r in listed] == [("r-back", (site.url("back"),))]
    assert [t.request_id for t in targets] == ["r-back"]
    # The request keeps its first notice, and its SLA figures are its first removal's.
    assert (stored.notice_id, stored.state, stored.resolved_at) == (
        notice_id,
        RequestState.REMOVED,
        removed_at,
    )
    [figures] = report["platforms"]
    assert (figures["notices"], figures["removed"], figures["reappeared"]) == (1, 1, 1)
    assert figures["time_to_removal_s"]["max"] == int(timedelta(hours=3).total_seconds())


async def test_with_renotice_off_a_reappearance_is_counted_but_not_renotified(
    store: SqlStore, prober: Prober, site: Platform
) -> None:
    clock, outbox, metrics = SimulatedClock(), Outbox(), Metrics()
    notice_id = await delivered_notice(store, clock, site, ["back"])
    site.up.clear()
    await claim_removed(store, notice_id, clock.now())
    checker = service(store, prober, clock, outbox, metrics, renotice=False)
    await checker.round()
    site.up.add("back")
    await clock.advance(timedelta(days=1))
    await checker.round()

    found = await store.request_verification("r-back")
    assert found is not None
    assert found.reappeared_at == clock.now()
    assert (found.renotices, outbox.sent) == ([], [])
    assert not await store.renoticed("r-back")


async def test_the_followup_goes_in_the_notices_thread_listing_only_the_urls_still_up(
    store: SqlStore, prober: Prober, site: Platform
) -> None:
    clock, metrics = SimulatedClock(), Metrics()
    channel = ScriptedChannel("email", clock)
    names = ["f1", "f2", "f3"]
    notice_id = await delivered_notice(store, clock, site, names)
    site.up.discard("f1")
    await claim_removed(store, notice_id, clock.now())
    sender = ChannelFollowups(
        store=store, routes={"telegram": route(channel)}, authority=AUTHORITY, category_labels={}
    )
    checker = VerificationService(
        store=store,
        checker=prober,
        rules={"telegram": VerifyRules()},
        schedules={"telegram": SCHEDULE},
        clock=clock,
        metrics=metrics,
        send_followup=sender,
    )

    await checker.round()
    await checker.round()  # sent once, not again

    assert [(kind, message_id) for kind, message_id, _ in channel.sent] == [
        (MessageKind.FOLLOWUP, f"<{notice_id}.followup-1@authority.example>")
    ]
    [content] = channel.contents
    assert [(r.request_id, r.urls) for r in content.requests] == [
        ("r-f2", (site.url("f2"),)),
        ("r-f3", (site.url("f3"),)),
    ]
    [followup] = await store.followups(unsent_only=False)
    assert followup.message_ref == f"<{notice_id}.followup-1@authority.example>"


async def test_a_10_mb_page_leaves_none_of_its_bytes_in_the_store_or_the_folder(
    tmp_path: Path, prober: Prober
) -> None:
    token = os.urandom(16).hex().encode()

    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        with contextlib.suppress(ConnectionResetError):
            for _ in range(160):
                await response.write(token * 2048)  # 64 KiB a write, 10 MiB in all
        return response

    app = web.Application()
    app.router.add_get("/p/{name}", big)
    clock, store = SimulatedClock(), await sqlite_store(tmp_path)
    async with TestServer(app, host="127.0.0.1", port=0) as server:
        site = Platform(port=server.port or 0)
        notice_id = await delivered_notice(store, clock, site, ["huge"])
        checker = service(store, prober, clock, Outbox(), Metrics())
        [result] = await checker.verify_now([notice_id])
    found = await store.request_verification("r-huge")
    await store.close()

    assert [c.bytes_read for c in result.checks] == [256 * 1024]
    assert found is not None
    assert found.checks[0].sha256 == hashlib.sha256((token * 2048 * 4)[: 256 * 1024]).hexdigest()
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert any(path.name == "store.db" for path in files)
    for path in files:
        assert token not in path.read_bytes(), path


async def test_a_later_request_with_the_same_url_or_evidence_hash_is_linked_to_the_earlier_one(
    store: SqlStore,
) -> None:
    clock = SimulatedClock()
    digest = "ab" * 32

    def request(request_id: str, url: str, platform: str = "telegram", sha: str | None = None) -> Incoming:
        return Incoming(
            request=TakedownRequest(
                request_id=request_id,
                platform=platform,
                urls=(url,),
                category="deepfake_sexual_abuse",
                evidence=(Evidence(sha256=sha),) if sha else (),
            ),
            source="test",
        )

    await store.ingest([request("first", "https://t.me/c/1", sha=digest)], [], now=clock.now())
    await clock.advance(timedelta(days=3))
    await store.ingest(
        [
            request("same-url", "https://t.me/c/1"),
            request("same-hash", "https://t.me/c/2", sha=digest),
            request("other-platform", "https://t.me/c/1", platform="videohost"),
            request("unrelated", "https://t.me/c/3"),
        ],
        [],
        now=clock.now(),
    )

    linked = {}
    for request_id in ("same-url", "same-hash", "other-platform", "unrelated"):
        found = await store.request_verification(request_id)
        assert found is not None
        linked[request_id] = found.linked_requests
    assert linked == {"same-url": ["first"], "same-hash": ["first"], "other-platform": [], "unrelated": []}


async def test_a_refused_address_is_logged_with_its_reason_and_changes_nothing(
    store: SqlStore, site: Platform
) -> None:
    clock, metrics = SimulatedClock(), Metrics()
    notice_id = await delivered_notice(store, clock, site, ["inside"])
    async with Prober(ProberOptions(user_agent="notifier-test")) as strict:  # allow_private = false
        checker = service(store, strict, clock, Outbox(), metrics)
        with capture_logs() as logs:
            [result] = await checker.verify_now([notice_id])

    [check] = result.checks
    assert (check.outcome, check.reason) == (CheckOutcome.INCONCLUSIVE, "refused_private_address")
    [refused] = [e for e in logs if e["event"] == "verify.refused"]
    assert (refused["reason"], refused["host"], refused["request_id"]) == (
        "refused_private_address",
        "127.0.0.1",
        "r-inside",
    )
    assert all(site.url("inside") not in str(event) for event in logs)
    assert await verified_at(store, "r-inside") is None
    assert metrics.checks.labels(platform="telegram", outcome="inconclusive")._value.get() == 1


def test_the_verification_metrics_carry_the_names_spec_13_gives() -> None:
    metrics = Metrics()
    metrics.checks.labels(platform="telegram", outcome="removed").inc()
    metrics.false_claims.inc()
    metrics.reappeared.inc()

    text = generate_latest(metrics.registry).decode()

    assert 'notifier_checks_total{outcome="removed",platform="telegram"} 1.0' in text
    assert "notifier_false_claims_total 1.0" in text
    assert "notifier_reappeared_total 1.0" in text
