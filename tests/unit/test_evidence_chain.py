"""The evidence chain's pure rules: the documented hash of an entry, computed here without
notifier's code, and the first failure named for each kind of tampering."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import datetime, timedelta, timezone

from notifier.domain.evidence import (
    GENESIS,
    ChainWalk,
    EvidenceRecord,
    Head,
    LedgerEntry,
    Snapshot,
    chain,
    compare,
    replay,
    state_record,
)

AT = datetime(2026, 3, 2, 18, 0, 0, 250, tzinfo=timezone(timedelta(hours=9)))


def entries() -> list[LedgerEntry]:
    records = [
        state_record(notice_id=None, notice=None, requests={"r1": Snapshot("pending")}),
        EvidenceRecord(
            kind="email.sent", notice_id="TD-x-20260302-000001", payload=b"bytes", meta={"code": 250}
        ),
        state_record(
            notice_id="TD-x-20260302-000001",
            notice=Snapshot.of("delivered", AT),
            requests={"r1": Snapshot.of("delivered", AT)},
        ),
    ]
    return chain(Head(0, GENESIS), AT, records)


def walk(items: list[LedgerEntry], head: Head) -> str | None:
    checker = ChainWalk()
    for entry in items:
        if not checker.feed(entry):
            break
    checker.finish(head)
    return checker.failure


def test_an_entry_hash_is_the_sha256_of_the_documented_json_array() -> None:
    second = entries()[1]
    array = [
        2,
        "2026-03-02T09:00:00.000250+00:00",
        "email.sent",
        "TD-x-20260302-000001",
        [],
        hashlib.sha256(b"bytes").hexdigest(),
        '{"code":250}',
        entries()[0].entry_hash,
    ]
    text = json.dumps(array, separators=(",", ":"), ensure_ascii=False)
    assert second.entry_hash == hashlib.sha256(text.encode()).hexdigest()
    assert second.prev_hash == entries()[0].entry_hash and entries()[0].prev_hash == GENESIS


def test_each_kind_of_tampering_is_named_at_its_first_entry() -> None:
    good = entries()
    head = Head(good[-1].seq, good[-1].entry_hash)
    edited = [good[0], dataclasses.replace(good[1], meta='{"code":251}'), good[2]]
    swapped = [good[0], dataclasses.replace(good[2], seq=2), dataclasses.replace(good[1], seq=3)]

    assert walk(good, head) is None
    assert walk(edited, head) == "entry 2 (email.sent) was edited: its hash does not match its content"
    assert walk([good[0], good[2]], head) == "entry 2 is missing (deleted): the ledger goes on at entry 3"
    assert walk(swapped, head) == (
        "entry 2 does not link to the entry before it (an entry was replaced, removed or reordered)"
    )
    truncated = walk(good[:2], head)
    assert (
        truncated is not None and truncated.startswith("entries 3–3 are missing") and "truncated" in truncated
    )


def test_the_replay_keeps_the_last_state_and_names_what_differs() -> None:
    recorded = replay(entries())
    assert recorded.requests == {"r1": Snapshot.of("delivered", AT)}
    moved = {"r1": Snapshot.of("delivered", AT + timedelta(hours=1))}

    [finding] = compare("request", recorded.requests, moved)

    assert finding.fields == ("delivered_at",)
    assert finding.describe() == (
        "request r1: delivered_at recorded 2026-03-02T09:00:00.000250+00:00 "
        "but stored 2026-03-02T10:00:00.000250+00:00"
    )
    [missing] = compare("notice", recorded.notices, {})
    assert missing.describe().endswith("in the record but not in the store")
