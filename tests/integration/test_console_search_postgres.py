"""The console's search for part of a URL or a case reference on PostgreSQL: answered from the
trigram index over ``request_search`` (migration 0055), the URLs and the case reference only."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import Connection, text

from notifier.domain.models import TakedownRequest
from notifier.ports import Incoming, SearchHit
from notifier.store import create_store, migrate
from notifier.store.console_sql import _part_query, index_fragment
from notifier.store.console_tables import SEARCH_INDEX

pytestmark = pytest.mark.postgres

NOW = datetime(2024, 9, 10, tzinfo=UTC)


def _request(i: int) -> Incoming:
    return Incoming(
        request=TakedownRequest(
            request_id=f"kcsc-2024-{i:06d}",
            platform="telegram",
            urls=(f"https://telegram.example/c/{i}/0", f"https://t.me/Channel_{i}/77"),
            category="deepfake_sexual_abuse",
            case_ref=f"2024-DF-{i:06d}",
            explanation=f"names victim-{i}",
        ),
        source="test",
    )


async def test_a_part_of_a_url_or_a_case_reference_is_found_from_the_trigram_index(postgres_url: str) -> None:
    store = await create_store(postgres_url)
    try:
        await store.ingest([_request(i) for i in range(1, 301)], [], now=NOW)

        def ids(hits: list[SearchHit]) -> list[str]:
            return sorted(h.id for h in hits)

        assert ids(await store.search("telegram.example/c/123/", limit=100)) == ["kcsc-2024-000123"]
        assert ids(await store.search("HTTPS://T.ME/channel_45/", limit=100)) == ["kcsc-2024-000045"]
        assert ids(await store.search("2024-df-000299", limit=100)) == ["kcsc-2024-000299"]
        assert ids(await store.search("t.me/Channel_2", limit=100))[:3] == [
            "kcsc-2024-000002",
            "kcsc-2024-000020",
            "kcsc-2024-000021",
        ]
        # The explanation (which may name a victim) is not searched.
        assert await store.search("victim-12", limit=100) == []
        async with store.engine.connect() as conn:
            # 300 rows: the planner would rather read them all; off, it must show what it can use.
            await conn.execute(text("SET LOCAL enable_seqscan = off"))
            await conn.execute(text("SET LOCAL enable_indexscan = off"))
            query = _part_query("postgresql", "12345", 100).compile(
                dialect=conn.dialect, compile_kwargs={"literal_binds": True}
            )
            plan = "\n".join(row[0] for row in await conn.execute(text(f"EXPLAIN {query}")))
        assert SEARCH_INDEX in plan, plan
    finally:
        await store.close()


def test_the_index_is_asked_for_the_most_distinctive_piece_of_the_term() -> None:
    assert index_fragment("telegram.example/c/12345") == "12345"
    assert index_fragment("https://videohost.example/watch?v=dQw4w9WgXcQ") == "dQw4w9WgXcQ"
    assert index_fragment("2024-DF-000123") == "000123"
    assert index_fragment("https://telegram.example/") == "telegram.example/"
    assert index_fragment("deepfake") == "deepfake"


async def test_requests_stored_before_the_search_table_are_found_after_the_migration(
    postgres_url: str,
) -> None:
    store = await create_store(postgres_url)
    try:
        await store.ingest([_request(i) for i in range(1, 4)], [], now=NOW)

        def back_to_0050(sync_connection: Connection) -> None:
            config = migrate.alembic_config()
            config.attributes["connection"] = sync_connection
            command.downgrade(config, "0050")  # the searched text was an index over the bodies

        async with store.engine.begin() as conn:
            await conn.run_sync(back_to_0050)
            indexes = (await conn.execute(text("SELECT indexname FROM pg_indexes"))).scalars().all()
        assert "ix_requests_search_trgm" in indexes
    finally:
        await store.close()

    migrated = await create_store(postgres_url)  # upgrades to the head again, filling the table
    try:
        found = await migrated.search("t.me/Channel_2/", limit=10)
        async with migrated.engine.connect() as conn:
            texts = (
                await conn.execute(text("SELECT text FROM request_search ORDER BY request_id"))
            ).scalars()
            indexes = (await conn.execute(text("SELECT indexname FROM pg_indexes"))).scalars().all()
        assert [hit.id for hit in found] == ["kcsc-2024-000002"]
        assert list(texts)[1] == "https://telegram.example/c/2/0 https://t.me/Channel_2/77 2024-DF-000002"
        assert SEARCH_INDEX in indexes and "ix_requests_search_trgm" not in indexes
    finally:
        await migrated.close()


async def test_a_request_deleted_and_stored_again_is_found_once(postgres_url: str) -> None:
    store = await create_store(postgres_url)
    try:
        await store.ingest([_request(7)], [], now=NOW)
        async with store.engine.begin() as conn:  # a store emptied by hand keeps no stale search row
            await conn.execute(text("DELETE FROM requests"))
            left = (await conn.execute(text("SELECT count(*) FROM request_search"))).scalar_one()
        await store.ingest([_request(7)], [], now=NOW)

        found = await store.search("t.me/Channel_7/", limit=10)
    finally:
        await store.close()

    assert left == 0
    assert [hit.id for hit in found] == ["kcsc-2024-000007"]
