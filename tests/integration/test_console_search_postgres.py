"""The console's search for part of a URL or a case reference on PostgreSQL: answered from the
trigram index of migration 0036, over the URLs and the case reference only."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from notifier.domain.models import TakedownRequest
from notifier.ports import Incoming, SearchHit
from notifier.store import create_store
from notifier.store.console_sql import index_fragment

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
            await conn.execute(text("SET LOCAL enable_seqscan = off"))
            plan = "\n".join(
                row[0]
                for row in await conn.execute(
                    text(
                        "EXPLAIN SELECT request_id FROM requests WHERE "
                        "(((body::jsonb ->> 'urls'::text) || ' '::text) || "
                        "COALESCE(body::jsonb ->> 'case_ref'::text, ''::text)) ILIKE '%12345%'"
                    )
                )
            )
        assert "ix_requests_search_trgm" in plan
    finally:
        await store.close()


def test_the_index_is_asked_for_the_most_distinctive_piece_of_the_term() -> None:
    assert index_fragment("telegram.example/c/12345") == "12345"
    assert index_fragment("https://videohost.example/watch?v=dQw4w9WgXcQ") == "dQw4w9WgXcQ"
    assert index_fragment("2024-DF-000123") == "000123"
    assert index_fragment("https://telegram.example/") == "telegram.example/"
    assert index_fragment("deepfake") == "deepfake"
