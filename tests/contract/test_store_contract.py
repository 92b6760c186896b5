"""The Store contract: one suite, run against SQLite and PostgreSQL.

What passes here on both is what a service may rely on; the services' own tests run on SQLite in a
temporary folder, so what they show holds for the store the daemon uses.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from notifier.domain.models import (
    DeadLetter,
    IntakeOutcome,
    Priority,
    RequestState,
    TakedownRequest,
)
from notifier.domain.validation import Vocabulary, parse_request
from notifier.ports import Incoming, Store

ACCEPTED, DUPLICATE, CONFLICT = IntakeOutcome.ACCEPTED, IntakeOutcome.DUPLICATE, IntakeOutcome.CONFLICT
NOW = datetime(2024, 9, 3, 1, 0, tzinfo=UTC)
KST = timezone(timedelta(hours=9))
MIB = 1024 * 1024
VOCABULARY = Vocabulary(platforms={"telegram", "x", "discord"}, categories={"deepfake_sexual_abuse", "csam"})


def make(
    request_id: str, *, url: str = "https://t.me/c/1", platform: str = "telegram", **extra: Any
) -> TakedownRequest:
    return TakedownRequest(
        request_id=request_id, platform=platform, urls=(url,), category="deepfake_sexual_abuse", **extra
    )


def incoming(*requests: TakedownRequest, source: str = "sqlite:takedown.requests") -> list[Incoming]:
    return [Incoming(request=r, source=source) for r in requests]


def letter(
    body: bytes, *, at: datetime = NOW, source: str = "amqp:takedown.requests", **extra: Any
) -> DeadLetter:
    return DeadLetter(
        source=source, reason=extra.pop("reason", "body is not valid JSON"), at=at, body=body, **extra
    )


async def ingest(
    store: Store, requests: Sequence[TakedownRequest], *, now: datetime = NOW
) -> list[IntakeOutcome]:
    return await store.ingest(incoming(*requests), [], now=now)


# -- accepted, duplicate, conflict ---------------------------------------------------------------


async def test_a_new_request_is_accepted_and_stored_pending(store: Store) -> None:
    request = make("kcsc-1")

    assert await ingest(store, [request]) == [ACCEPTED]

    [stored] = await store.get_requests(["kcsc-1"])
    assert stored.request == request
    assert stored.state is RequestState.PENDING
    assert stored.ingested_at == NOW
    assert stored.notice_id is None
    assert (stored.delivered_at, stored.acknowledged_at, stored.resolved_at) == (None, None, None)


async def test_every_field_of_a_request_comes_back_as_it_went_in(store: Store) -> None:
    body = {
        "request_id": "kcsc-2024-000148",
        "platform": "telegram",
        "urls": ["https://t.me/some_channel/1234", "https://t.me/some_channel/1235"],
        "category": "deepfake_sexual_abuse",
        "priority": "urgent",
        "legal_basis": "Act on the Korea Communications Commission, Art. 21(4)",
        "explanation": "동의 없이 만든 합성 성적 이미지.\nSecond line.",
        "decided_at": "2024-09-03T10:00:00+09:00",
        "evidence": [{"sha256": "a" * 64, "pdq": "B" * 64}],
        "case_ref": "2024-DF-0042",
        "territorial_scope": ["KR", "JP"],
    }
    request = parse_request(json.dumps(body), VOCABULARY)

    await ingest(store, [request])

    [stored] = await store.get_requests([request.request_id])
    assert stored.request == request
    assert stored.request.priority is Priority.URGENT


async def test_the_same_content_again_is_a_duplicate_in_a_later_batch(store: Store) -> None:
    await ingest(store, [make("kcsc-1")])

    assert await ingest(store, [make("kcsc-1")], now=NOW + timedelta(hours=1)) == [DUPLICATE]

    [stored] = await store.get_requests(["kcsc-1"])
    assert stored.ingested_at == NOW
    assert await store.conflicts() == []


async def test_different_content_is_a_conflict_and_the_first_version_stays(store: Store) -> None:
    first = make("kcsc-1", url="https://t.me/c/1")
    await ingest(store, [first])

    later = NOW + timedelta(minutes=5)
    outcomes = await store.ingest(
        incoming(make("kcsc-1", url="https://t.me/c/2"), source="amqp:q"), [], now=later
    )

    assert outcomes == [CONFLICT]
    [stored] = await store.get_requests(["kcsc-1"])
    assert stored.request == first
    [conflict] = await store.conflicts()
    assert (conflict.request_id, conflict.source, conflict.at) == ("kcsc-1", "amqp:q", later)


async def test_copies_inside_one_batch_are_judged_against_the_first_copy(store: Store) -> None:
    a1, a2, b1 = make("a", url="https://t.me/c/1"), make("a", url="https://t.me/c/2"), make("b")

    outcomes = await ingest(store, [a1, a1, a2, b1, a2])

    assert outcomes == [ACCEPTED, DUPLICATE, CONFLICT, ACCEPTED, CONFLICT]
    stored = {s.request.request_id: s.request for s in await store.get_requests(["a", "b"])}
    assert stored == {"a": a1, "b": b1}
    assert [c.request_id for c in await store.conflicts()] == ["a"]


async def test_copies_inside_one_batch_of_a_stored_request_are_judged_against_the_stored_one(
    store: Store,
) -> None:
    a1, a2 = make("a", url="https://t.me/c/1"), make("a", url="https://t.me/c/2")
    await ingest(store, [a1])

    assert await ingest(store, [a2, a2, a1]) == [CONFLICT, CONFLICT, DUPLICATE]
    assert len(await store.conflicts()) == 1


async def test_equal_after_validation_means_equal_content_whatever_the_key_order(store: Store) -> None:
    written_out = parse_request(
        b'{"request_id": "kcsc-7", "platform": "telegram", "urls": ["https://t.me/c/7"],'
        b' "category": "csam", "priority": "normal", "evidence": [{"sha256": "' + b"AB" * 32 + b'"}],'
        b' "decided_at": "2024-09-03T10:00:00+09:00"}',
        VOCABULARY,
    )
    shuffled_with_defaults_left_out = parse_request(
        b'{"decided_at": "2024-09-03T01:00:00Z", "evidence": [{"sha256": "' + b"ab" * 32 + b'"}],'
        b' "category": "csam", "urls": ["https://t.me/c/7"], "platform": "telegram", "request_id": "kcsc-7"}',
        VOCABULARY,
    )
    assert written_out.content_hash() == shuffled_with_defaults_left_out.content_hash()

    assert await ingest(store, [written_out]) == [ACCEPTED]
    assert await ingest(store, [shuffled_with_defaults_left_out]) == [DUPLICATE]


async def test_a_conflict_is_recorded_once_per_distinct_content(store: Store) -> None:
    await ingest(store, [make("a", url="https://t.me/c/1")])
    second, third = make("a", url="https://t.me/c/2"), make("a", url="https://t.me/c/3")

    for hour in range(3):
        assert await ingest(store, [second], now=NOW + timedelta(hours=hour + 1)) == [CONFLICT]
    assert await ingest(store, [third], now=NOW + timedelta(hours=5)) == [CONFLICT]

    conflicts = await store.conflicts()
    assert [(c.request_id, c.at) for c in conflicts] == [
        ("a", NOW + timedelta(hours=5)),
        ("a", NOW + timedelta(hours=1)),
    ]
    [stored] = await store.get_requests(["a"])
    assert stored.request.urls == ("https://t.me/c/1",)


async def test_conflicts_are_listed_newest_first_up_to_the_limit(store: Store) -> None:
    await ingest(store, [make(f"r{i}") for i in range(5)])
    for i in range(5):
        await ingest(store, [make(f"r{i}", url="https://t.me/other")], now=NOW + timedelta(minutes=i + 1))

    assert [c.request_id for c in await store.conflicts(limit=3)] == ["r4", "r3", "r2"]


async def test_a_large_batch_crossing_statement_chunks_is_judged_item_by_item(store: Store) -> None:
    await ingest(store, [make(f"r{i:05d}") for i in range(0, 1300, 2)])  # the even ids are stored
    batch = [make(f"r{i:05d}") for i in range(1300)] + [make("r00001"), make("r00002", url="https://t.me/x")]

    outcomes = await ingest(store, batch)

    assert outcomes[:1300] == [DUPLICATE if i % 2 == 0 else ACCEPTED for i in range(1300)]
    assert outcomes[1300:] == [DUPLICATE, CONFLICT]
    assert (await store.status_counts()).requests == {"telegram": {"pending": 1300}}


async def test_an_empty_batch_changes_nothing(store: Store) -> None:
    assert await store.ingest([], [], now=NOW) == []
    counts = await store.status_counts()
    assert (counts.requests, counts.notices, counts.dead_letters_total) == ({}, {}, 0)


async def test_a_naive_timestamp_is_refused_before_anything_is_stored(store: Store) -> None:
    with pytest.raises(ValueError, match="naive"):
        await store.ingest(incoming(make("a")), [], now=datetime(2024, 9, 3, 1, 0))

    assert await store.get_requests(["a"]) == []


# -- dead letters ------------------------------------------------------------------------------


async def test_dead_letters_come_back_newest_first_with_what_was_recorded(store: Store) -> None:
    t1, t2, t3 = NOW, NOW + timedelta(seconds=1), NOW + timedelta(seconds=2)
    await store.ingest(
        [],
        [
            letter(
                b"second", at=t2, reason="urls[0]: scheme 'javascript' is not allowed", request_id="kcsc-9"
            ),
            letter(b"first", at=t1, source="sqlite:takedown.requests"),
        ],
        now=NOW,
    )
    await store.ingest([], [letter(b"third", at=t3)], now=NOW)

    listed = await store.dead_letters()

    assert [d.body for d in listed] == [b"third", b"second", b"first"]
    assert listed[1].reason == "urls[0]: scheme 'javascript' is not allowed"
    assert listed[1].request_id == "kcsc-9"
    assert listed[1].source == "amqp:takedown.requests"
    assert listed[1].at == t2
    assert listed[2].source == "sqlite:takedown.requests"
    assert listed[2].request_id is None
    assert [d.body for d in await store.dead_letters(limit=2)] == [b"third", b"second"]
    assert (await store.status_counts()).dead_letters_total == 3


async def test_requests_and_dead_letters_of_one_batch_are_stored_together(store: Store) -> None:
    outcomes = await store.ingest(incoming(make("a")), [letter(b"not json")], now=NOW)

    assert outcomes == [ACCEPTED]
    assert len(await store.get_requests(["a"])) == 1
    assert [d.body for d in await store.dead_letters()] == [b"not json"]


async def test_a_redelivered_dead_letter_already_recorded_is_skipped(store: Store) -> None:
    await store.ingest([], [letter(b"{bad")], now=NOW)

    await store.ingest([], [letter(b"{bad", redelivered=True, at=NOW + timedelta(seconds=1))], now=NOW)
    assert (await store.status_counts()).dead_letters_total == 1

    # Not redelivered: a new message that happens to have the same body; kept.
    await store.ingest([], [letter(b"{bad", at=NOW + timedelta(seconds=2))], now=NOW)
    # Redelivered, but first seen on another queue; kept.
    await store.ingest([], [letter(b"{bad", source="sqlite:other", redelivered=True)], now=NOW)
    # Redelivered, never recorded before (the first delivery was lost before it was stored); kept.
    await store.ingest([], [letter(b"{worse", redelivered=True)], now=NOW)
    assert (await store.status_counts()).dead_letters_total == 4


async def test_a_redelivered_copy_inside_the_same_batch_is_skipped(store: Store) -> None:
    await store.ingest([], [letter(b"{bad"), letter(b"{bad", redelivered=True)], now=NOW)

    assert (await store.status_counts()).dead_letters_total == 1


async def test_a_body_up_to_one_mebibyte_is_kept_whole(store: Store) -> None:
    body = bytes(range(256)) * (MIB // 256)

    await store.ingest([], [letter(body)], now=NOW)

    [stored] = await store.dead_letters()
    assert stored.body == body


async def test_a_bigger_body_is_cut_to_one_mebibyte_and_known_by_its_full_hash(store: Store) -> None:
    big = b"x" * MIB + b"tail one"
    same_start = b"x" * MIB + b"tail two"

    await store.ingest([], [letter(big)], now=NOW)
    [stored] = await store.dead_letters()
    assert stored.body == big[:MIB]

    # The redelivery check compares the whole body, not the kept part.
    await store.ingest([], [letter(big, redelivered=True)], now=NOW)
    await store.ingest([], [letter(same_start, redelivered=True)], now=NOW)
    assert (await store.status_counts()).dead_letters_total == 2
    assert hashlib.sha256(big).hexdigest() != hashlib.sha256(same_start).hexdigest()


# -- reads -------------------------------------------------------------------------------------


async def test_get_requests_leaves_unknown_ids_out(store: Store) -> None:
    await ingest(store, [make("a"), make("b"), make("c")])

    found = await store.get_requests(["c", "unknown", "a", "c"])

    assert [s.request.request_id for s in found] == ["c", "a"]
    assert await store.get_requests([]) == []
    assert await store.get_requests(["unknown"]) == []


async def test_status_counts_requests_per_platform_and_state(store: Store) -> None:
    await ingest(store, [make("t1"), make("t2"), make("x1", platform="x")])
    await store.ingest([], [letter(b"a"), letter(b"b")], now=NOW)

    counts = await store.status_counts()

    assert counts.requests == {"telegram": {"pending": 2}, "x": {"pending": 1}}
    assert counts.notices == {}
    assert counts.dead_letters_total == 2


async def test_timestamps_come_back_aware_in_utc(store: Store) -> None:
    local_now = datetime(2024, 9, 3, 10, 0, 0, 123456, tzinfo=KST)
    await ingest(store, [make("a", url="https://t.me/c/1")], now=local_now)
    await ingest(store, [make("a", url="https://t.me/c/2")], now=local_now)
    await store.ingest([], [letter(b"x", at=local_now)], now=local_now)

    [stored] = await store.get_requests(["a"])
    [conflict] = await store.conflicts()
    [dead] = await store.dead_letters()

    for value in (stored.ingested_at, conflict.at, dead.at):
        assert value.tzinfo is UTC
        assert value == local_now
        assert value.hour == 1


async def test_ping_answers(store: Store) -> None:
    await store.ping()
