"""The PostgreSQL store under several daemons, an unreachable server and a server that drops us."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

import asyncpg  # type: ignore[import-untyped, unused-ignore]  # no type information published
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import make_url, text

from notifier.domain.models import IntakeOutcome, TakedownRequest
from notifier.errors import StoreUnavailable
from notifier.ports import Incoming
from notifier.store import SqlStore, create_store
from notifier.store.migrate import head_revision
from notifier.store.tables import metadata

pytestmark = pytest.mark.postgres

NOW = datetime(2024, 9, 3, 1, 0, tzinfo=UTC)


def batch(ids: list[int], *, source: str) -> list[Incoming]:
    return [
        Incoming(
            request=TakedownRequest(
                request_id=f"r{i:06d}", platform="telegram", urls=(f"https://t.me/c/{i}",), category="csam"
            ),
            source=source,
        )
        for i in ids
    ]


async def test_two_stores_ingesting_overlapping_batches_store_each_request_once(postgres_url: str) -> None:
    first, second = await asyncio.gather(create_store(postgres_url), create_store(postgres_url))
    try:

        async def writer(store: SqlStore, ids: list[int], name: str) -> list[IntakeOutcome]:
            # Shuffled, so the two writers meet the shared ids in different orders.
            random.Random(name).shuffle(ids)
            outcomes: list[IntakeOutcome] = []
            for start in range(0, len(ids), 500):
                outcomes += await store.ingest(batch(ids[start : start + 500], source=name), [], now=NOW)
            return outcomes

        a, b = await asyncio.gather(
            writer(first, list(range(0, 6000)), "a"), writer(second, list(range(3000, 9000)), "b")
        )

        assert (a + b).count(IntakeOutcome.ACCEPTED) == 9000
        assert (a + b).count(IntakeOutcome.DUPLICATE) == 3000
        assert (await first.status_counts()).requests == {"telegram": {"pending": 9000}}
    finally:
        await first.close()
        await second.close()


async def test_daemons_starting_together_migrate_once(postgres_url: str) -> None:
    stores = await asyncio.gather(*(create_store(postgres_url) for _ in range(4)))
    try:
        async with stores[0].engine.connect() as conn:
            versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()
        assert versions == [head_revision()]
    finally:
        for store in stores:
            await store.close()


async def test_the_migrations_create_exactly_the_tables_the_code_describes(postgres_url: str) -> None:
    store = await create_store(postgres_url)
    try:
        async with store.engine.connect() as conn:
            differences = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
            )
        assert differences == []
    finally:
        await store.close()


async def test_an_unreachable_server_makes_the_store_unavailable_without_showing_the_password() -> None:
    url = "postgresql://notifier:hunter2-secret@127.0.0.1:1/notifier"

    with pytest.raises(StoreUnavailable) as raised:
        await create_store(url)

    message = str(raised.value)
    assert "hunter2-secret" not in message
    assert "127.0.0.1:1" in message
    assert "notifier:***@" in message

    store = SqlStore(url + "?password=hunter2-secret")
    try:
        with pytest.raises(StoreUnavailable) as raised:
            await store.ping()
        assert "hunter2-secret" not in str(raised.value)
    finally:
        await store.close()


async def test_the_store_recovers_after_the_server_drops_its_connections(
    postgres_url: str, postgres_server: str
) -> None:
    store = await create_store(postgres_url)
    try:
        await store.ingest(batch([1], source="q"), [], now=NOW)
        await store.status_counts()  # a second pooled connection, idle now like the first

        admin = await asyncpg.connect(postgres_server)
        try:
            terminated = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                make_url(postgres_url).database,
            )
        finally:
            await admin.close()
        assert terminated >= 1

        try:
            outcomes = await store.ingest(batch([2], source="q"), [], now=NOW)
        except StoreUnavailable:
            outcomes = await store.ingest(batch([2], source="q"), [], now=NOW)

        assert outcomes == [IntakeOutcome.ACCEPTED]
        assert len(await store.get_requests(["r000001", "r000002"])) == 2
    finally:
        await store.close()
