"""``/readyz`` and ``POST /v1/requests`` while the PostgreSQL store is away, and once it is back.

The store goes away for real (``tests/integration/outage.py``), or is a server that accepts the
connection and never answers; the HTTP app is the daemon's, on a real local port.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from notifier.clock import SimulatedClock
from notifier.domain.validation import Vocabulary
from notifier.intake.local import LocalQueue
from notifier.intake.service import IntakeService
from notifier.metrics import Metrics
from notifier.runtime.http import build_http_app
from notifier.services.acks import AckService
from notifier.services.monitoring import OpenItemsMonitor
from notifier.store import SqlStore, create_store
from tests.integration.outage import DatabaseOutage

pytestmark = pytest.mark.timeout(120)

Client = TestClient[web.Request, web.Application]
REQUEST = json.dumps(
    {
        "request_id": "r-1",
        "platform": "telegram",
        "urls": ["https://t.me/c/1"],
        "category": "deepfake_sexual_abuse",
    }
).encode()


@asynccontextmanager
async def serving(store: SqlStore, queue: LocalQueue) -> AsyncIterator[Client]:
    clock, metrics = SimulatedClock(), Metrics()
    app = build_http_app(
        intake=IntakeService(
            store=store,
            queue=queue,
            queue_name="takedown.requests",
            vocabulary=Vocabulary(
                platforms=frozenset({"telegram"}), categories=frozenset({"deepfake_sexual_abuse"})
            ),
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
            store=store, clock=clock, platforms=["telegram"], collector=metrics.open_items
        ),
    )
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[LocalQueue]:
    opened = LocalQueue(tmp_path / "queue.db")
    await opened.connect()
    try:
        yield opened
    finally:
        await opened.close()


async def readiness(client: Client) -> tuple[int, dict[str, Any]]:
    response = await client.get("/readyz")
    return response.status, await response.json()


@pytest.mark.postgres
async def test_while_the_store_is_away_readyz_and_http_intake_answer_503_and_both_recover_after(
    postgres_server: str, postgres_url: str, queue: LocalQueue
) -> None:
    store = await create_store(postgres_url)
    outage = DatabaseOutage(postgres_server, postgres_url)
    try:
        async with serving(store, queue) as client:
            assert await readiness(client) == (
                200,
                {"status": "ready", "checks": {"store": "ok", "queue": "ok"}},
            )
            await outage.begin()
            try:
                status, body = await readiness(client)
                assert status == 503
                assert body["checks"] == {"store": "unavailable: StoreUnavailable", "queue": "ok"}
                # A request over HTTP is refused at once, to be sent again, not held until the store is back.
                response = await asyncio.wait_for(client.post("/v1/requests", data=REQUEST), timeout=30)
                assert response.status == 503
            finally:
                await outage.end()
            assert (await readiness(client))[0] == 200
            response = await client.post("/v1/requests", data=REQUEST)
            assert response.status == 202
    finally:
        await store.close()


async def test_readyz_says_503_when_the_store_accepts_the_connection_and_never_answers(
    queue: LocalQueue,
) -> None:
    held: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # accepted, never answered

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = SqlStore(f"postgresql://notifier@127.0.0.1:{port}/notifier")
    try:
        async with serving(store, queue) as client:
            # Within the driver's own connect timeout (10 s), the probe has its answer.
            status, body = await asyncio.wait_for(readiness(client), timeout=9)
            assert status == 503
            assert body["checks"]["store"] == "unavailable: TimeoutError"
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
        await store.close()
