"""The urgent lane's evidence entries: written with their change without taking the ledger head,
chained by the next process that takes it (before its own entries), verified in between."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from notifier.domain.acks import Ack, AckStatus, plan_ack
from notifier.domain.notices import Attempt, AttemptOutcome, SendResult
from notifier.ports import Incoming
from notifier.services.evidence import verify_ledger
from notifier.store import SqlStore, create_store
from notifier.store.evidence_tables import ledger_pending
from notifier.store.evidence_writer import EvidenceOptions, parse_key
from tests.evidence_key import TEST_EVIDENCE_KEY
from tests.integration.test_evidence_ledger import NOW, delivered_and_acked, make

KEY = parse_key(TEST_EVIDENCE_KEY)


@pytest.fixture
async def stores(postgres_url: str) -> AsyncIterator[tuple[SqlStore, SqlStore]]:
    """A daemon's store and its urgent lane's, on one PostgreSQL database."""
    daemon = await create_store(postgres_url, evidence=EvidenceOptions(key=KEY))
    lane = await create_store(postgres_url, evidence=EvidenceOptions(key=KEY, deferred=True))
    try:
        yield daemon, lane
    finally:
        await lane.close()
        await daemon.close()


async def _waiting(store: SqlStore) -> int:
    async with store.engine.connect() as conn:
        count = (await conn.execute(select(func.count()).select_from(ledger_pending))).scalar_one()
    assert isinstance(count, int)
    return count


async def _urgent_delivery(lane: SqlStore) -> str:
    """An urgent request taken in, formed into a notice, claimed and delivered by the lane."""
    await lane.ingest([Incoming(request=make("u1"), source="test")], [], now=NOW)
    notice = await lane.form_notice(
        "telegram", max_items=10, channel="email", now=NOW, deliver_by=NOW + timedelta(hours=6)
    )
    assert notice is not None
    [claimed] = await lane.claim_due(owner="lane", now=NOW, lease=timedelta(minutes=5), limit=1)
    attempt = Attempt(at=NOW, channel="email", outcome=AttemptOutcome.DELIVERED, code=250, detail="250 ok")
    assert await lane.record_delivery(
        claimed.notice_id, owner="lane", attempt=attempt, result=SendResult(code=250), channel="email"
    )
    return notice.notice_id


@pytest.mark.postgres
async def test_the_lanes_entries_wait_then_go_first_in_the_next_append(
    stores: tuple[SqlStore, SqlStore],
) -> None:
    daemon, lane = stores
    notice_id = await _urgent_delivery(lane)
    waiting = await _waiting(lane)
    assert waiting >= 4  # taken in, formed, the attempt, delivered
    assert (await daemon.ledger_head()).seq == 0  # the lane never took the head

    verdict = await verify_ledger(daemon)  # the waiting entries are replayed after the head
    assert verdict.clean, verdict
    assert verdict.pending == waiting and verdict.entries == 0

    # The daemon acknowledges the notice: its append chains the lane's entries first.
    ack = Ack(
        notice_id=notice_id, status=AckStatus.RECEIVED, received_at=NOW + timedelta(hours=1), source="api"
    )
    context = await daemon.ack_context(notice_id)
    assert context is not None
    assert await daemon.apply_ack(ack, plan_ack(context[0].state, context[1], ack))

    assert await _waiting(daemon) == 0
    entries = await daemon.ledger_for_notice(notice_id)
    states = [entry.facts["notice"]["state"] for entry in entries if "notice" in entry.facts]
    assert states[-2:] == ["delivered", "acknowledged"]  # the lane's delivery before the daemon's ack
    verdict = await verify_ledger(daemon)
    assert verdict.clean, verdict
    assert verdict.pending == 0 and verdict.entries == (await daemon.ledger_head()).seq > waiting


@pytest.mark.postgres
async def test_a_chainer_chains_what_waits_and_then_finds_nothing(stores: tuple[SqlStore, SqlStore]) -> None:
    daemon, lane = stores
    await _urgent_delivery(lane)
    waiting = await _waiting(lane)

    assert await daemon.chain_pending_evidence() == waiting
    assert (await daemon.ledger_head()).seq == waiting
    assert await daemon.chain_pending_evidence() == 0
    verdict = await verify_ledger(daemon)
    assert verdict.clean, verdict
    assert verdict.entries == waiting and verdict.pending == 0


async def test_on_sqlite_nothing_waits(tmp_path: Path) -> None:
    """One process per SQLite file, and no lane there: a deferred store chains at once."""
    store = await create_store(
        f"sqlite:///{tmp_path / 'store.db'}", evidence=EvidenceOptions(key=KEY, deferred=True)
    )
    try:
        await delivered_and_acked(store)
        assert await store.chain_pending_evidence() == 0
        verdict = await verify_ledger(store)
        assert verdict.clean, verdict
        assert verdict.pending == 0 and verdict.entries == (await store.ledger_head()).seq > 5
    finally:
        await store.close()
