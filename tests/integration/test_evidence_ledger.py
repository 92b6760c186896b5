"""The evidence ledger on SQLite and PostgreSQL: entries appended with the changes they record,
one chain, and ``verify_ledger`` naming each kind of tampering (and nothing on an untouched store)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Connection, delete, select, update

from notifier.domain.acks import Ack, AckStatus, plan_ack
from notifier.domain.evidence import GENESIS, EvidenceKind, EvidenceRecord
from notifier.domain.models import DeadLetter, IntakeOutcome, Priority, TakedownRequest
from notifier.domain.notices import Attempt, AttemptOutcome, SendResult
from notifier.ports import Incoming
from notifier.services.evidence import verify_ledger
from notifier.store import SqlStore, create_store, migrate
from notifier.store.evidence_tables import evidence_payloads, ledger, ledger_head
from notifier.store.evidence_writer import EvidenceOptions, parse_key
from notifier.store.tables import DEAD_LETTER_BODY_LIMIT, notices, requests
from tests.evidence_key import TEST_EVIDENCE_KEY

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SENT = b"From: a@authority.example\r\nSubject: notice\r\n\r\nplease remove\r\n"


@pytest.fixture(params=[pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[SqlStore]:
    url = store_url
    opened = await create_store(url, evidence=EvidenceOptions(key=parse_key(TEST_EVIDENCE_KEY)))
    try:
        yield opened
    finally:
        await opened.close()


def make(request_id: str) -> TakedownRequest:
    return TakedownRequest(
        request_id=request_id,
        platform="telegram",
        urls=(f"https://t.me/c/{request_id}",),
        category="deepfake_sexual_abuse",
        priority=Priority.NORMAL,
    )


async def delivered_and_acked(store: SqlStore) -> str:
    """Three requests taken in, sent in one notice (with the bytes of the email), acknowledged."""
    await store.ingest([Incoming(request=make(f"r{i}"), source="test") for i in range(3)], [], now=NOW)
    notice = await store.form_notice(
        "telegram", max_items=10, channel="email", now=NOW, deliver_by=NOW + timedelta(hours=6)
    )
    assert notice is not None
    [claimed] = await store.claim_due(owner="w1", now=NOW, lease=timedelta(minutes=5), limit=1)
    sent = EvidenceRecord(
        kind=EvidenceKind.EMAIL_SENT, notice_id=notice.notice_id, payload=SENT, meta={"code": 250}
    )
    attempt = Attempt(
        at=NOW + timedelta(seconds=1),
        channel="email",
        outcome=AttemptOutcome.DELIVERED,
        code=250,
        detail="250 2.0.0 queued as 1234",
        evidence=(sent,),
    )
    assert await store.record_delivery(
        claimed.notice_id, owner="w1", attempt=attempt, result=SendResult(code=250), channel="email"
    )
    ack = Ack(
        notice_id=notice.notice_id,
        status=AckStatus.RECEIVED,
        received_at=NOW + timedelta(hours=1),
        source="email:imap",
        evidence=(
            EvidenceRecord(
                kind=EvidenceKind.MAIL_RECEIVED, notice_id=notice.notice_id, payload=b"Subject: received\r\n"
            ),
        ),
    )
    context = await store.ack_context(notice.notice_id)
    assert context is not None
    plan = plan_ack(context[0].state, context[1], ack)
    assert await store.apply_ack(ack, plan)
    return notice.notice_id


async def test_an_untouched_store_verifies_and_its_sent_bytes_are_kept(store: SqlStore) -> None:
    notice_id = await delivered_and_acked(store)

    verdict = await verify_ledger(store)

    assert verdict.clean, verdict
    assert verdict.head.seq == verdict.entries > 5
    assert verdict.payloads_checked == 2
    entries = await store.ledger_for_notice(notice_id)
    kinds = [e.kind for e in entries]
    assert kinds[:4] == ["state", "email.sent", "attempt", "state"]
    sent = next(e for e in entries if e.kind == "email.sent")
    assert sent.payload_sha256 is not None
    assert await store.evidence_payload(sent.payload_sha256) == SENT
    assert next(e.kind for e in await store.ledger_for_request("r1")) == "state"  # taken in


async def test_refused_and_conflicting_messages_are_recorded_with_what_was_received(store: SqlStore) -> None:
    """The record keeps what was received but not taken in (SPEC §15: everything received): each
    dead letter and each conflicting copy of a stored request, in the ingest's transaction; a
    redelivered dead letter or conflicting copy the store already holds is not recorded again."""
    await store.ingest([Incoming(request=make("r1"), source="amqp:q")], [], now=NOW)
    other = dataclasses.replace(make("r1"), urls=("https://t.me/c/other",))
    garbled = b'{"request_id": "r9", "urls": 7}' + b" " * DEAD_LETTER_BODY_LIMIT
    letter = DeadLetter(source="amqp:q", reason="urls: not a list", at=NOW, body=garbled, request_id="r9")
    outcomes = await store.ingest([Incoming(request=other, source="amqp:q")], [letter], now=NOW)
    assert outcomes == [IntakeOutcome.CONFLICT]
    again = dataclasses.replace(letter, redelivered=True)
    await store.ingest([Incoming(request=other, source="amqp:q")], [again], now=NOW + timedelta(seconds=5))

    verdict = await verify_ledger(store)
    assert verdict.clean, verdict
    [refused] = [e for e in await store.ledger_for_request("r9") if e.kind == "dead_letter"]
    assert refused.facts == {
        "source": "amqp:q",
        "reason": "urls: not a list",
        "size": len(garbled),
        "sha256": hashlib.sha256(garbled).hexdigest(),
    }
    assert refused.payload_sha256 is not None
    kept = await store.evidence_payload(refused.payload_sha256)
    assert kept == garbled[:DEAD_LETTER_BODY_LIMIT]  # as the dead letters keep it
    [conflict] = [e for e in await store.ledger_for_request("r1") if e.kind == "intake.conflict"]
    assert conflict.facts == {"source": "amqp:q"} and conflict.payload_sha256 is not None
    assert json.loads(await store.evidence_payload(conflict.payload_sha256) or b"")["urls"] == [
        "https://t.me/c/other"
    ]
    kinds = [entry.kind async for entry in store.iter_ledger()]
    assert kinds.count("dead_letter") == 1 and kinds.count("intake.conflict") == 1


async def _tamper(store: SqlStore, statement: object) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(statement)  # type: ignore[call-overload]


async def _entry(store: SqlStore, kind: str) -> int:
    async with store.engine.connect() as conn:
        seq = (await conn.execute(select(ledger.c.seq).where(ledger.c.kind == kind))).scalars().first()
    assert isinstance(seq, int)
    return seq


async def test_an_edited_attempt_detail_is_named(store: SqlStore) -> None:
    await delivered_and_acked(store)
    seq = await _entry(store, EvidenceKind.ATTEMPT)
    async with store.engine.connect() as conn:
        meta = (await conn.execute(select(ledger.c.meta).where(ledger.c.seq == seq))).scalar_one()
    edited = meta.replace("queued as 1234", "queued as 9999")
    await _tamper(store, update(ledger).where(ledger.c.seq == seq).values(meta=edited))

    verdict = await verify_ledger(store)

    assert not verdict.clean
    assert verdict.chain_failure == f"entry {seq} (attempt) was edited: its hash does not match its content"


async def test_a_deleted_reply_is_named(store: SqlStore) -> None:
    await delivered_and_acked(store)
    seq = await _entry(store, EvidenceKind.MAIL_RECEIVED)
    await _tamper(store, delete(ledger).where(ledger.c.seq == seq))

    verdict = await verify_ledger(store)

    assert verdict.chain_failure is not None
    assert verdict.chain_failure.startswith(f"entry {seq} is missing (deleted)")


async def test_two_swapped_entries_are_named(store: SqlStore) -> None:
    await delivered_and_acked(store)
    async with store.engine.connect() as conn:
        rows = (
            await conn.execute(select(ledger).where(ledger.c.seq.in_([2, 3])).order_by(ledger.c.seq))
        ).all()
    first, second = (dict(row._mapping) for row in rows)
    columns = ("at", "kind", "notice_id", "request_ids", "payload_sha256", "meta", "prev_hash", "entry_hash")
    await _tamper(store, update(ledger).where(ledger.c.seq == 2).values({c: second[c] for c in columns}))
    await _tamper(store, update(ledger).where(ledger.c.seq == 3).values({c: first[c] for c in columns}))

    verdict = await verify_ledger(store)

    assert verdict.chain_failure is not None
    assert verdict.chain_failure.startswith("entry 2 does not link")


async def test_one_changed_byte_of_a_kept_payload_is_named(store: SqlStore) -> None:
    await delivered_and_acked(store)
    seq = await _entry(store, EvidenceKind.EMAIL_SENT)
    async with store.engine.connect() as conn:
        sha = (await conn.execute(select(ledger.c.payload_sha256).where(ledger.c.seq == seq))).scalar_one()
        sealed = bytes(
            (
                await conn.execute(
                    select(evidence_payloads.c.ciphertext).where(evidence_payloads.c.sha256 == sha)
                )
            ).scalar_one()
        )
    changed = sealed[:20] + bytes([sealed[20] ^ 1]) + sealed[21:]
    await _tamper(
        store, update(evidence_payloads).where(evidence_payloads.c.sha256 == sha).values(ciphertext=changed)
    )

    verdict = await verify_ledger(store)

    assert verdict.chain_failure is None
    assert verdict.payload_failure is not None
    assert verdict.payload_failure.startswith(f"entry {seq} (email.sent): its payload was changed")


async def test_a_truncated_tail_is_named(store: SqlStore) -> None:
    await delivered_and_acked(store)
    head = await store.ledger_head()
    await _tamper(store, delete(ledger).where(ledger.c.seq >= head.seq - 1))

    verdict = await verify_ledger(store)

    assert verdict.chain_failure is not None
    assert f"the head names entry {head.seq}" in verdict.chain_failure
    assert "truncated" in verdict.chain_failure


async def test_a_moved_delivery_time_of_a_notice_is_named(store: SqlStore) -> None:
    notice_id = await delivered_and_acked(store)
    await _tamper(
        store,
        update(notices).where(notices.c.notice_id == notice_id).values(delivered_at=NOW + timedelta(hours=3)),
    )

    verdict = await verify_ledger(store)

    assert verdict.chain_failure is None
    [finding] = verdict.findings
    assert (finding.what, finding.id, finding.fields) == ("notice", notice_id, ("delivered_at",))


async def test_a_moved_acknowledgement_time_of_a_request_is_named(store: SqlStore) -> None:
    await delivered_and_acked(store)
    await _tamper(
        store,
        update(requests)
        .where(requests.c.request_id == "r2")
        .values(acknowledged_at=NOW + timedelta(minutes=5)),
    )

    verdict = await verify_ledger(store)

    [finding] = verdict.findings
    assert (finding.what, finding.id, finding.fields) == ("request", "r2", ("acknowledged_at",))
    assert "acknowledged_at recorded 2026-03-02T10:00:00" in finding.describe()


async def test_an_empty_store_verifies_at_the_genesis_head(store: SqlStore) -> None:
    verdict = await verify_ledger(store)

    assert verdict.clean
    assert (verdict.head.seq, verdict.head.hash) == (0, GENESIS)


async def test_without_a_key_payloads_are_hashed_not_kept(tmp_path: Path) -> None:
    store = await create_store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        await delivered_and_acked(store)
        async with store.engine.connect() as conn:
            kept = (await conn.execute(select(evidence_payloads.c.ciphertext))).scalars().all()
            head = (await conn.execute(select(ledger_head.c.seq))).scalar_one()
        assert kept and all(c is None for c in kept)
        assert head > 0
        assert (await verify_ledger(store)).clean
    finally:
        await store.close()


async def test_a_store_with_history_starts_its_chain_with_a_baseline_of_its_states(
    store: SqlStore, store_url: str
) -> None:
    notice_id = await delivered_and_acked(store)
    await store.ingest([Incoming(request=make("loose"), source="test")], [], now=NOW)

    def downgrade(sync_connection: Connection) -> None:
        config = migrate.alembic_config()
        config.attributes["connection"] = sync_connection
        command.downgrade(config, "0038")  # back to before the evidence ledger (0040)

    async with store.engine.begin() as conn:
        await conn.run_sync(downgrade)
    await store.close()
    migrated = await create_store(store_url)
    try:
        verdict = await verify_ledger(migrated)
        entries = [entry async for entry in migrated.iter_ledger()]
    finally:
        await migrated.close()

    assert verdict.clean, verdict
    assert [(e.kind, e.notice_id, e.request_ids) for e in entries] == [
        ("state", notice_id, ("r0", "r1", "r2")),
        ("state", None, ("loose",)),
    ]
