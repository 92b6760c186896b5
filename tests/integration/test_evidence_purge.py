"""Purging past ``evidence.retention`` on SQLite and PostgreSQL, on the simulated clock: a dry run
counts and changes nothing; a real purge drops the payloads, the settled requests' explanations and
the acknowledgements' notes, keeps hashes, states and times, is recorded, and the record still
verifies (the payloads reported as no longer kept, not as tampering)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from notifier.clock import SimulatedClock
from notifier.domain.acks import Ack, AckStatus, plan_ack
from notifier.domain.evidence import EvidenceKind, EvidenceRecord
from notifier.domain.models import Priority, TakedownRequest
from notifier.domain.notices import Attempt, AttemptOutcome, SendResult
from notifier.ports import Incoming
from notifier.services.evidence import verify_ledger
from notifier.services.evidence_export import purge_past_retention
from notifier.store import SqlStore, create_store
from notifier.store.evidence_writer import EvidenceOptions, parse_key
from notifier.store.tables import acks, requests
from tests.evidence_key import TEST_EVIDENCE_KEY
from tests.integration.test_evidence_ledger import NOW, SENT

RETENTION = timedelta(days=180)
EXPLANATION = "Synthetic imagery of an identifiable person."
NOTE = "called the platform's trust and safety desk"


@pytest.fixture(params=[pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[SqlStore]:
    options = EvidenceOptions(key=parse_key(TEST_EVIDENCE_KEY), retention=RETENTION)
    opened = await create_store(store_url, evidence=options)
    try:
        yield opened
    finally:
        await opened.close()


async def _removed(store: SqlStore) -> tuple[str, str]:
    """Two requests with explanations, sent, then removed (an operator's note with it); the sent
    email's payload hash and the notice id."""
    taken = [
        TakedownRequest(
            request_id=f"p{i}",
            platform="telegram",
            urls=(f"https://t.me/c/p{i}",),
            category="deepfake_sexual_abuse",
            priority=Priority.NORMAL,
            explanation=EXPLANATION,
        )
        for i in range(2)
    ]
    await store.ingest([Incoming(request=r, source="test") for r in taken], [], now=NOW)
    notice = await store.form_notice(
        "telegram", max_items=10, channel="email", now=NOW, deliver_by=NOW + timedelta(hours=6)
    )
    assert notice is not None
    [claimed] = await store.claim_due(owner="w1", now=NOW, lease=timedelta(minutes=5), limit=1)
    sent = EvidenceRecord(kind=EvidenceKind.EMAIL_SENT, notice_id=notice.notice_id, payload=SENT)
    attempt = Attempt(
        at=NOW, channel="email", outcome=AttemptOutcome.DELIVERED, code=250, detail="250 ok", evidence=(sent,)
    )
    assert await store.record_delivery(
        claimed.notice_id, owner="w1", attempt=attempt, result=SendResult(code=250), channel="email"
    )
    ack = Ack(
        notice_id=notice.notice_id,
        status=AckStatus.REMOVED,
        received_at=NOW + timedelta(hours=2),
        source="manual",
        note=NOTE,
        evidence=(
            EvidenceRecord(
                kind=EvidenceKind.CALLBACK, notice_id=notice.notice_id, payload=b'{"status":"removed"}'
            ),
        ),
    )
    context = await store.ack_context(notice.notice_id)
    assert context is not None
    assert await store.apply_ack(ack, plan_ack(context[0].state, context[1], ack))
    return hashlib.sha256(SENT).hexdigest(), notice.notice_id


async def test_purge_past_retention_keeps_the_chain_and_the_figures(store: SqlStore) -> None:
    sent_sha, _ = await _removed(store)
    clock = SimulatedClock(NOW + timedelta(hours=3))

    early = await purge_past_retention(store, now=clock.now(), retention=RETENTION, dry_run=True, by="ops")
    assert (early.payloads, early.requests, early.notes) == (0, 0, 0)

    await clock.advance(RETENTION + timedelta(days=1))
    head = await store.ledger_head()
    dry = await purge_past_retention(store, now=clock.now(), retention=RETENTION, dry_run=True, by="ops")

    assert (dry.payloads, dry.requests, dry.notes) == (2, 2, 1)
    assert dry.payloads_oldest == NOW + RETENTION
    assert dry.requests_oldest == NOW + timedelta(hours=2)
    assert dry.notes_oldest == NOW + timedelta(hours=2)
    assert await store.evidence_payload(sent_sha) == SENT  # a dry run changes nothing
    assert await store.ledger_head() == head

    done = await purge_past_retention(store, now=clock.now(), retention=RETENTION, dry_run=False, by="ops")

    assert done == dry
    assert await store.evidence_payload(sent_sha) is None
    stored = await store.get_requests(["p0", "p1"])
    assert [s.request.explanation for s in stored] == [None, None]
    assert [s.state.value for s in stored] == ["removed", "removed"]
    assert all(s.resolved_at == NOW + timedelta(hours=2) for s in stored)  # the figures stay
    async with store.engine.connect() as conn:
        notes = (await conn.execute(select(acks.c.note))).scalars().all()
        hashes = (await conn.execute(select(requests.c.content_hash))).scalars().all()
    assert notes == [None]
    assert len(set(hashes)) == 2  # the requests' hashes stay
    [purged] = await store.ledger_entries(after=head.seq)
    assert purged.kind == "staff"
    assert purged.facts == {
        "action": "purge",
        "by": "ops",
        "retention_s": int(RETENTION.total_seconds()),
        "payloads": 2,
        "requests": 2,
        "notes": 1,
    }
    verdict = await verify_ledger(store)
    assert verdict.clean, verdict
    assert (verdict.payloads_checked, verdict.payloads_not_kept) == (0, 2)

    again = await purge_past_retention(store, now=clock.now(), retention=RETENTION, dry_run=True, by="ops")
    assert (again.payloads, again.requests, again.notes) == (0, 0, 0)
