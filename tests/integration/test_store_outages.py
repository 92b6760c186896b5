"""Whatever PostgreSQL going away does to the store's connections surfaces as StoreUnavailable.

The consumers of the daemon wait out a :class:`StoreUnavailable` and stop loudly on anything else,
so a raw driver error escaping the store on a restart would stop the daemon. These tests cause the
failures a restart causes, on a database of the test's own: connections terminated by an
administrator (mid-query, mid-transaction and idle in the pool), connections refused, and a database
that is not there.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
from sqlalchemy import text

from notifier.domain.validation import Vocabulary, parse_request
from notifier.errors import StoreUnavailable
from notifier.ports import Incoming
from notifier.store import SqlStore, create_store
from notifier.store.engine import is_unavailable
from tests.integration.outage import DatabaseOutage
from tests.waiting import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]

VOCABULARY = Vocabulary(platforms=frozenset({"telegram"}), categories=frozenset({"deepfake_sexual_abuse"}))
NOW = datetime(2024, 9, 3, 1, 0, tzinfo=UTC)


def incoming(request_id: str) -> Incoming:
    body = json.dumps(
        {
            "request_id": request_id,
            "platform": "telegram",
            "urls": [f"https://t.me/c/{request_id}"],
            "category": "deepfake_sexual_abuse",
        }
    ).encode()
    return Incoming(request=parse_request(body, VOCABULARY), source="test")


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[SqlStore]:
    opened = await create_store(postgres_url)
    try:
        yield opened
    finally:
        await opened.close()


async def terminate_connections(admin_dsn: str, database: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", database
        )
    finally:
        await conn.close()


async def test_reads_and_writes_cut_by_terminated_connections_fail_only_with_store_unavailable(
    store: SqlStore, postgres_server: str, postgres_url: str
) -> None:
    database = postgres_url.rsplit("/", 1)[1]
    failures: Counter[str] = Counter()
    others: list[BaseException] = []
    stop = asyncio.Event()

    async def work(worker: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                if worker % 3 == 0:
                    await store.ingest([incoming(f"r-{worker}-{n}")], [], now=NOW)
                elif worker % 3 == 1:
                    await store.status_counts()
                else:
                    await store.ping()
            except StoreUnavailable:
                failures["unavailable"] += 1
            except Exception as error:  # what the store must never let through
                others.append(error)

    async def terminate() -> None:
        while not stop.is_set():
            await terminate_connections(postgres_server, database)
            await asyncio.sleep(0.05)

    async def enough_cut() -> bool:
        return failures["unavailable"] >= 50 or bool(others)

    tasks = [asyncio.create_task(work(k)) for k in range(6)] + [asyncio.create_task(terminate())]
    try:
        await wait_for(enough_cut, within=60, what="50 operations cut by terminated connections")
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    assert others == []
    # And the store works again once the connections are left alone.
    await store.ingest([incoming("after")], [], now=NOW)
    assert [r.request.request_id for r in await store.get_requests(["after"])] == ["after"]


async def test_a_database_that_went_away_is_unavailable_for_reads_and_writes_until_it_is_back(
    store: SqlStore, postgres_server: str, postgres_url: str
) -> None:
    await store.ping()  # a pooled connection, which the outage terminates
    outage = DatabaseOutage(postgres_server, postgres_url)
    await outage.begin()
    try:
        with pytest.raises(StoreUnavailable, match=r"PostgreSQL store .* is unavailable \(ping\)"):
            await store.ping()
        with pytest.raises(StoreUnavailable, match=r"\(ingest\)"):
            await store.ingest([incoming("r-1")], [], now=NOW)
        with pytest.raises(StoreUnavailable, match=r"\(ack_context\)"):
            await store.ack_context("TD-telegram-20240903-000001")
    finally:
        await outage.end()
    await store.ingest([incoming("r-1")], [], now=NOW)
    assert len(await store.get_requests(["r-1"])) == 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_a_server_that_refuses_connections_is_store_unavailable() -> None:
    store = SqlStore(f"postgresql://notifier:hunter2@127.0.0.1:{free_port()}/notifier")
    try:
        with pytest.raises(StoreUnavailable) as caught:
            await store.ping()
        assert "hunter2" not in str(caught.value)
        with pytest.raises(StoreUnavailable):
            await store.ingest([incoming("r-1")], [], now=NOW)
    finally:
        await store.close()


async def test_a_query_cut_by_an_administrator_is_recognised_as_unavailable(
    store: SqlStore, postgres_server: str, postgres_url: str
) -> None:
    database = postgres_url.rsplit("/", 1)[1]
    async with store.engine.connect() as conn:
        running = asyncio.create_task(conn.execute(text("SELECT pg_sleep(60)")))

        async def sleeping() -> bool:
            admin = await asyncpg.connect(postgres_server)
            try:
                found = await admin.fetchval(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = $1 AND query LIKE 'SELECT pg_sleep%'",
                    database,
                )
            finally:
                await admin.close()
            return bool(found)

        await wait_for(sleeping, within=30, what="the query running")
        await terminate_connections(postgres_server, database)
        with pytest.raises(Exception) as caught:
            await running
    assert is_unavailable(caught.value), repr(caught.value)
