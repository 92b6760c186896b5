"""``/metrics`` scraped over HTTP as Prometheus does: the gauges of open items and of the oldest
open age (SPEC §10), read from the store at scrape time and aged on the simulated clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from notifier.clock import SimulatedClock
from notifier.domain.models import Priority, TakedownRequest
from notifier.domain.notices import Attempt, AttemptOutcome, SendResult
from notifier.domain.validation import Vocabulary
from notifier.intake.memory import MemoryQueue
from notifier.intake.service import IntakeService
from notifier.metrics import Metrics
from notifier.ports import Incoming, MonitoringStore, OpenItems, Store
from notifier.runtime.http import build_http_app
from notifier.services.acks import AckService
from notifier.services.monitoring import OpenItemsMonitor
from tests.stores import Switchable, sqlite_store

PLATFORMS = ("telegram", "videohost")
HOURS = 3600.0
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened: Store = await sqlite_store(tmp_path)
    try:
        yield opened
    finally:
        await opened.close()


@asynccontextmanager
async def scraping(
    store: Store,
    clock: SimulatedClock,
    metrics: Metrics,
    *,
    read_from: MonitoringStore | None = None,
    read_timeout: float = 5.0,
) -> AsyncIterator[Client]:
    """The daemon's HTTP app on a real local port, its gauges read from ``read_from`` (the store)."""
    queue = MemoryQueue()
    app = build_http_app(
        intake=IntakeService(
            store=store,
            queue=queue,
            queue_name="takedown.requests",
            vocabulary=Vocabulary(platforms=PLATFORMS, categories={"deepfake_sexual_abuse"}),
            clock=clock,
            metrics=metrics,
        ),
        store=store,
        queue=queue,
        metrics_=metrics,
        intake_token=None,
        acks=AckService(
            store=store, clock=clock, metrics=metrics, fallbacks={}, deliver_within=timedelta(hours=6)
        ),
        clock=clock,
        callback_secrets={},
        open_items=OpenItemsMonitor(
            store=read_from or store,
            clock=clock,
            platforms=PLATFORMS,
            collector=metrics.open_items,
            timeout=read_timeout,
        ),
    )
    async with TestClient(TestServer(app)) as client:
        yield client


async def scrape(client: Client) -> Samples:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.content_type == "text/plain"
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(await response.text())
        for sample in family.samples
    }


def gauge(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def make(request_id: str, platform: str = "telegram") -> TakedownRequest:
    return TakedownRequest(
        request_id=request_id,
        platform=platform,
        urls=(f"https://t.me/c/{request_id}",),
        category="deepfake_sexual_abuse",
        priority=Priority.NORMAL,
    )


async def deliver_now(store: Store, clock: SimulatedClock, *request_ids: str) -> None:
    now = clock.now()
    await store.ingest([Incoming(request=make(i), source="test") for i in request_ids], [], now=now)
    notice = await store.form_notice(
        "telegram", max_items=50, channel="email", now=now, deliver_by=now + timedelta(hours=6)
    )
    assert notice is not None
    assert [
        n.notice_id for n in await store.claim_due(owner="w", now=now, lease=timedelta(minutes=5), limit=5)
    ]
    assert await store.record_delivery(
        notice.notice_id,
        owner="w",
        attempt=Attempt(at=now, channel="email", outcome=AttemptOutcome.DELIVERED, code=250),
        result=SendResult(code=250, message_id=f"<{notice.notice_id}@notifier>", ticket=None),
        channel="email",
    )


async def test_a_scrape_counts_the_open_items_and_ages_the_oldest_on_the_clock(store: Store) -> None:
    clock, metrics = SimulatedClock(), Metrics()
    await deliver_now(store, clock, "d1", "d2")
    await clock.advance(timedelta(hours=4))
    await store.ingest(
        [Incoming(request=make(f"p{i}"), source="test") for i in range(3)], [], now=clock.now()
    )
    await clock.advance(timedelta(hours=1))

    async with scraping(store, clock, metrics) as client:
        samples = await scrape(client)
        await clock.advance(timedelta(minutes=30))
        later = await scrape(client)

    assert gauge(samples, "notifier_open_items_up") == 1
    open_requests = {
        state: gauge(samples, "notifier_open_requests", platform="telegram", state=state)
        for state in ("pending", "batched", "delivered", "acknowledged")
    }
    assert open_requests == {"pending": 3, "batched": 0, "delivered": 2, "acknowledged": 0}
    assert gauge(samples, "notifier_open_notices", platform="telegram", state="delivered") == 1
    assert gauge(samples, "notifier_open_notices", platform="telegram", state="queued") == 0
    assert (
        gauge(samples, "notifier_oldest_open_seconds", platform="telegram", kind="unacknowledged")
        == 5 * HOURS
    )
    assert (
        gauge(samples, "notifier_oldest_open_seconds", platform="telegram", kind="undelivered") == 1 * HOURS
    )
    # Ages are read at each scrape: half an hour later, both are half an hour older.
    assert (
        gauge(later, "notifier_oldest_open_seconds", platform="telegram", kind="unacknowledged")
        == 5.5 * HOURS
    )
    assert (
        gauge(later, "notifier_oldest_open_seconds", platform="telegram", kind="undelivered") == 1.5 * HOURS
    )


async def test_a_configured_platform_with_nothing_open_shows_zeros(store: Store) -> None:
    clock, metrics = SimulatedClock(), Metrics()
    await deliver_now(store, clock, "d1")

    async with scraping(store, clock, metrics) as client:
        samples = await scrape(client)

    videohost = {
        (name, dict(labels).get("state") or dict(labels)["kind"]): value
        for (name, labels), value in samples.items()
        if ("platform", "videohost") in labels
    }
    assert len(videohost) == 4 + 6 + 2  # request states, notice states, kinds of oldest
    assert set(videohost.values()) == {0}


async def test_an_unavailable_store_costs_the_gauges_of_that_scrape_only(store: Store) -> None:
    switch = Switchable(store)
    clock, metrics = SimulatedClock(), Metrics()
    metrics.requests.labels(platform="telegram", outcome="accepted").inc(7)
    await store.ingest([Incoming(request=make("p1"), source="test")], [], now=clock.now())

    async with scraping(switch.as_store(), clock, metrics) as client:
        switch.down = True
        with capture_logs() as logs:
            down = await scrape(client)
        switch.down = False
        up = await scrape(client)

    assert gauge(down, "notifier_open_items_up") == 0
    assert not [key for key in down if key[0] in ("notifier_open_requests", "notifier_oldest_open_seconds")]
    assert gauge(down, "notifier_requests_total", platform="telegram", outcome="accepted") == 7
    assert [entry["event"] for entry in logs if entry["log_level"] == "warning"] == [
        "metrics.open_items_unavailable"
    ]
    assert gauge(up, "notifier_open_items_up") == 1
    assert gauge(up, "notifier_open_requests", platform="telegram", state="pending") == 1


class _Hanging:
    """A store that never answers (a database behind a dropped connection)."""

    async def open_items(self, platforms: Sequence[str]) -> OpenItems:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_a_store_that_does_not_answer_in_time_does_not_hold_up_the_scrape(store: Store) -> None:
    clock, metrics = SimulatedClock(), Metrics()

    async with scraping(store, clock, metrics, read_from=_Hanging(), read_timeout=0.05) as client:
        with capture_logs() as logs:
            samples = await asyncio.wait_for(scrape(client), timeout=5)

    assert gauge(samples, "notifier_open_items_up") == 0
    [warning] = [entry for entry in logs if entry["event"] == "metrics.open_items_unavailable"]
    assert "no answer within 0.05 s" in warning["error"]
