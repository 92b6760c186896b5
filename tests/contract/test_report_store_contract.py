"""The report's store contract: ``report_rows``, ``report_figures`` and ``dead_letter_counts``, on
SQLite and PostgreSQL.

Requests are taken through the daemon's own steps (ingest → form → claim → deliver → acknowledge),
so the rows the report reads are rows the store itself wrote.

``report_figures`` must give exactly what the domain's reference tally gives on the same data
(PostgreSQL computes it in grouped SQL; the others tally). Beside the daemon's own histories, the
SQL stores are also given rows written straight into the table, so that the edges of every rule
(a duration of exactly the bound, a microsecond more, times in the future, states whose timestamps
are missing) and seeded random datasets can be compared with the tally.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pytest
from sqlalchemy import delete

from notifier.domain.acks import Ack, AckStatus, plan_ack
from notifier.domain.evidence import Head
from notifier.domain.models import DeadLetter, Priority, RequestState, TakedownRequest
from notifier.domain.notices import Attempt, AttemptOutcome, Notice, SendResult
from notifier.domain.report import NO_PROFILE, Bounds, ReportRow, platform_documents, platform_reports, tally
from notifier.domain.report_acks import AckSources
from notifier.domain.sla import SlaKind
from notifier.ports import Incoming, Store
from notifier.services.report import (
    AckSourcesReportStore,
    FiguresStore,
    LedgerStore,
    ReportStore,
    build_report,
)
from notifier.store import SqlStore, create_store
from notifier.store.tables import requests, sla_decisions

T0 = datetime(2024, 9, 3, 1, 0, tzinfo=UTC)
LEASE = timedelta(minutes=10)
H36 = timedelta(hours=36)
US = timedelta(microseconds=1)


class ReportingStore(Store, FiguresStore, Protocol):
    """What the report needs of a store, beside what the daemon writes through."""


def make(request_id: str, platform: str) -> TakedownRequest:
    return TakedownRequest(
        request_id=request_id,
        platform=platform,
        urls=(f"https://example.test/{request_id}",),
        category="deepfake_sexual_abuse",
        priority=Priority.NORMAL,
    )


async def delivered(store: ReportingStore, platform: str, *request_ids: str, at: datetime) -> Notice:
    """Requests ingested an hour before ``at``, formed into one notice and delivered at ``at``."""
    ingested = at - timedelta(hours=1)
    await store.ingest(
        [Incoming(request=make(i, platform), source="test") for i in request_ids], [], now=ingested
    )
    notice = await store.form_notice(
        platform, max_items=50, channel="email", now=ingested, deliver_by=ingested + timedelta(hours=6)
    )
    assert notice is not None
    claimed = await store.claim_due(owner="w1", now=ingested, lease=LEASE, limit=10)
    assert [n.notice_id for n in claimed] == [notice.notice_id]
    assert await store.record_delivery(
        notice.notice_id,
        owner="w1",
        attempt=Attempt(at=at, channel="email", outcome=AttemptOutcome.DELIVERED, code=250),
        result=SendResult(code=250, message_id=f"<{notice.notice_id}@notifier>", ticket=None),
        channel="email",
    )
    return notice


async def acknowledge(store: ReportingStore, notice: Notice, status: AckStatus, at: datetime) -> None:
    acknowledgement = Ack(notice_id=notice.notice_id, status=status, received_at=at, source="test")
    context = await store.ack_context(notice.notice_id)
    assert context is not None
    current, states = context
    assert await store.apply_ack(acknowledgement, plan_ack(current.state, states, acknowledgement))


def by_id(rows: list[ReportRow]) -> dict[str | None, list[ReportRow]]:
    grouped: dict[str | None, list[ReportRow]] = {}
    for row in rows:
        grouped.setdefault(row.notice_id, []).append(row)
    return grouped


async def test_rows_carry_the_states_and_times_the_store_recorded(store: ReportingStore) -> None:
    removed = await delivered(store, "telegram", "r1", "r2", at=T0)
    await acknowledge(store, removed, AckStatus.RECEIVED, T0 + timedelta(hours=1))
    await acknowledge(store, removed, AckStatus.REMOVED, T0 + timedelta(hours=3))
    silent = await delivered(store, "telegram", "s1", at=T0 + timedelta(hours=2))
    await store.ingest([Incoming(request=make("p1", "telegram"), source="test")], [], now=T0)

    rows = await store.report_rows(since=None, until=None, platforms=None)
    grouped = by_id(rows)
    assert len(rows) == 4
    [pending] = grouped[None]
    assert (pending.state, pending.delivered_at) == (RequestState.PENDING, None)
    assert {r.state for r in grouped[removed.notice_id]} == {RequestState.REMOVED}
    for row in grouped[removed.notice_id]:
        assert row.platform == "telegram"
        assert row.ingested_at == T0 - timedelta(hours=1)
        assert row.delivered_at == T0
        assert row.acknowledged_at == T0 + timedelta(hours=1)
        assert row.resolved_at == T0 + timedelta(hours=3)
    [open_row] = grouped[silent.notice_id]
    assert (open_row.state, open_row.acknowledged_at) == (RequestState.DELIVERED, None)

    [figures] = platform_reports(
        rows, bounds={"telegram": Bounds(ack_within=H36, removal_within=H36)}, now=T0 + timedelta(hours=40)
    )
    assert (figures["requests"], figures["notices"], figures["delivered"]) == (4, 2, 2)
    # Open: the silent one, and the pending one (undelivered: the authority's own clock).
    assert (figures["removed"], figures["open"], figures["ack_breaches"]) == (2, 2, 1)
    assert (figures["undelivered"], figures["oldest_undelivered_s"]) == (1, 40 * 3600)
    assert figures["time_to_removal_s"] == {"p50": 3 * 3600, "p90": 3 * 3600, "max": 3 * 3600}
    assert figures["oldest_open_s"] == 38 * 3600


async def test_the_window_selects_by_delivery_time(store: ReportingStore) -> None:
    early = await delivered(store, "telegram", "e1", at=T0)
    inside = await delivered(store, "telegram", "i1", "i2", at=T0 + timedelta(days=1))
    late = await delivered(store, "telegram", "l1", at=T0 + timedelta(days=2))
    since, until = T0 + timedelta(hours=12), T0 + timedelta(days=2)

    rows = await store.report_rows(since=since, until=until, platforms=None)
    assert set(by_id(rows)) == {inside.notice_id}
    assert early.notice_id not in by_id(await store.report_rows(since=since, until=None, platforms=None))
    assert late.notice_id not in by_id(await store.report_rows(since=None, until=until, platforms=None))
    # ``until`` is exclusive: a delivery at ``until`` exactly belongs to the next window.
    assert set(by_id(await store.report_rows(since=until, until=None, platforms=None))) == {late.notice_id}


async def test_requests_never_delivered_are_selected_by_intake_time(store: ReportingStore) -> None:
    await store.ingest([Incoming(request=make("p1", "telegram"), source="test")], [], now=T0)
    assert len(await store.report_rows(since=T0, until=T0 + timedelta(hours=1), platforms=None)) == 1
    assert await store.report_rows(since=T0 + timedelta(seconds=1), until=None, platforms=None) == []


async def test_rows_can_be_narrowed_to_platforms(store: ReportingStore) -> None:
    await delivered(store, "telegram", "t1", at=T0)
    await delivered(store, "clipshare", "c1", "c2", at=T0)
    rows = await store.report_rows(since=None, until=None, platforms=["clipshare"])
    assert [r.platform for r in rows] == ["clipshare", "clipshare"]
    assert await store.report_rows(since=None, until=None, platforms=[]) == []


async def test_dead_letters_are_counted_by_the_platform_their_body_names(store: ReportingStore) -> None:
    def letter(body: bytes, at: datetime) -> DeadLetter:
        return DeadLetter(source="amqp:takedown.requests", reason="invalid", at=at, body=body)

    await store.ingest(
        [],
        [
            letter(b'{"platform": "telegram", "urls": []}', T0),
            letter(b'{"platform": "telegram", "urls": ["javascript:x"]}', T0 + timedelta(hours=1)),
            letter(b'{"platform": "clipshare"}', T0 + timedelta(days=3)),
            letter(b"\xff not json", T0),
            letter(b"[1, 2]", T0),
        ],
        now=T0,
    )
    assert await store.dead_letter_counts(None, None) == {"telegram": 2, "clipshare": 1, "": 2}
    assert await store.dead_letter_counts(T0 + timedelta(minutes=30), T0 + timedelta(days=1)) == {
        "telegram": 1
    }


# -- the figures, against the reference tally ----------------------------------------------------------


async def figures(
    store: FiguresStore,
    bounds: Mapping[str, Bounds],
    *,
    now: datetime,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[dict[str, Any]]:
    """§8's documents of the store's own figures, after checking them against the reference tally
    of the store's rows."""
    computed = await store.report_figures(bounds=bounds, now=now, since=since, until=until)
    documents = platform_documents(computed, bounds=bounds)
    rows = await store.report_rows(since=since, until=until, platforms=list(bounds))
    assert documents == platform_reports(rows, bounds=bounds, now=now, since=since, until=until)
    return documents


class RowsOnly:
    """A report store that only hands over rows: ``build_report`` tallies them itself."""

    def __init__(self, store: ReportStore) -> None:
        self._store = store

    async def report_rows(
        self, *, since: datetime | None, until: datetime | None, platforms: Sequence[str] | None
    ) -> list[ReportRow]:
        return await self._store.report_rows(since=since, until=until, platforms=platforms)

    async def dead_letter_counts(self, since: datetime | None, until: datetime | None) -> dict[str, int]:
        return await self._store.dead_letter_counts(since, until)

    async def ack_sources(
        self, *, since: datetime | None, until: datetime | None, platforms: Sequence[str]
    ) -> dict[str, AckSources]:
        """Who answered is counted by the store either way (SPEC §15): not part of the tally."""
        assert isinstance(self._store, AckSourcesReportStore)
        return await self._store.ack_sources(since=since, until=until, platforms=platforms)

    async def ledger_head(self) -> Head:
        """The evidence record's head, which both reports carry (the same store's)."""
        assert isinstance(self._store, LedgerStore)
        return await self._store.ledger_head()


async def history(store: ReportingStore) -> None:
    """Two platforms through the daemon's steps: answered, removed, rejected late, silent, pending."""
    fast = await delivered(store, "telegram", "t1", "t2", "t3", at=T0)
    await acknowledge(store, fast, AckStatus.RECEIVED, T0 + timedelta(hours=2))
    await acknowledge(store, fast, AckStatus.REMOVED, T0 + H36)  # exactly the bound: within
    slow = await delivered(store, "clipshare", "c1", "c2", at=T0 + timedelta(hours=1))
    await acknowledge(store, slow, AckStatus.REJECTED, T0 + timedelta(hours=1) + H36 + timedelta(seconds=1))
    await delivered(store, "clipshare", "c3", at=T0 + timedelta(days=2))  # silent
    await store.ingest([Incoming(request=make("p1", "telegram"), source="test")], [], now=T0)


async def test_figures_are_the_tally_of_the_rows_the_daemon_wrote(store: ReportingStore) -> None:
    await history(store)
    bounds = {
        "telegram": Bounds(ack_within=H36, removal_within=H36),
        "clipshare": Bounds(ack_within=timedelta(hours=12), removal_within=H36),
        "picboard": Bounds(ack_within=H36, removal_within=H36),  # configured, never sent anything
    }
    telegram, clipshare, picboard = await figures(store, bounds, now=T0 + timedelta(days=4))
    assert (telegram["requests"], telegram["removed"], telegram["removal_breaches"]) == (4, 3, 0)
    assert telegram["time_to_ack_s"] == {"p50": 7200, "p90": 7200, "max": 7200}
    assert telegram["time_to_removal_s"] == {"p50": 129600, "p90": 129600, "max": 129600}
    assert (clipshare["rejected"], clipshare["open"], clipshare["oldest_open_s"]) == (2, 1, 2 * 86400)
    # Both rejections came 36 h 1 s after delivery, and the silent request is 2 days old: three
    # breaches of each bound.
    assert (clipshare["ack_breaches"], clipshare["removal_breaches"]) == (3, 3)
    assert clipshare["time_to_removal_s"] is None
    assert (picboard["requests"], picboard["time_to_delivery_s"], picboard["oldest_open_s"]) == (
        0,
        None,
        None,
    )

    # Narrowed to the first day's deliveries: the silent request is out, the pending one too.
    _, first_day, _ = await figures(
        store, bounds, now=T0 + timedelta(days=4), since=T0, until=T0 + timedelta(days=1)
    )
    assert (first_day["requests"], first_day["open"], first_day["oldest_open_s"]) == (2, 0, None)
    assert await store.report_figures(bounds={}, now=T0, since=None, until=None) == {}


async def test_the_report_is_the_same_whether_the_store_or_the_service_tallies(store: ReportingStore) -> None:
    await history(store)
    bounds = {
        "telegram": Bounds(ack_within=H36, removal_within=H36),
        "clipshare": Bounds(ack_within=H36, removal_within=H36),
    }
    now = T0 + timedelta(days=3)
    assert isinstance(store, FiguresStore)
    assert not isinstance(RowsOnly(store), FiguresStore)
    for since, until in [(None, None), (T0 + timedelta(hours=1), None), (None, T0 + timedelta(hours=1))]:
        by_store = await build_report(store, bounds, now=now, since=since, until=until)
        by_service = await build_report(RowsOnly(store), bounds, now=now, since=since, until=until)
        assert by_store == by_service


async def test_clarifications_are_judged_alike_by_the_store_and_the_service(store: ReportingStore) -> None:
    """SPEC §14: asked and unanswered, the removal clock stands still; answered, it runs again
    from the answer; ``paused_s`` sums the pauses. The store's figures equal the tally's."""
    answered = await delivered(store, "telegram", "c1", "c2", at=T0)
    await acknowledge(store, answered, AckStatus.CLARIFICATION_REQUESTED, T0 + timedelta(minutes=40))
    assert await store.record_clarification(answered.notice_id, at=T0 + timedelta(hours=5)) is not None
    await acknowledge(store, answered, AckStatus.REMOVED, T0 + timedelta(hours=40))  # 35 h on the clock
    waiting = await delivered(store, "telegram", "w1", at=T0 + timedelta(hours=1))
    await acknowledge(store, waiting, AckStatus.CLARIFICATION_REQUESTED, T0 + timedelta(hours=2))
    silent = await delivered(store, "telegram", "s1", at=T0 + timedelta(hours=2))
    assert silent.notice_id
    # Asked twice (and once more while unanswered): both pauses count, 1 h and 3 h.
    twice = await delivered(store, "telegram", "t1", at=T0)
    await acknowledge(store, twice, AckStatus.CLARIFICATION_REQUESTED, T0 + timedelta(hours=1))
    assert await store.record_clarification(twice.notice_id, at=T0 + timedelta(hours=2)) is not None
    await acknowledge(store, twice, AckStatus.CLARIFICATION_REQUESTED, T0 + timedelta(hours=3))
    await acknowledge(store, twice, AckStatus.CLARIFICATION_REQUESTED, T0 + timedelta(hours=4))
    assert await store.record_clarification(twice.notice_id, at=T0 + timedelta(hours=6)) is not None
    await acknowledge(store, twice, AckStatus.REMOVED, T0 + timedelta(hours=42))  # 36 h from the answer
    bounds = {"telegram": Bounds(ack_within=H36, removal_within=H36)}
    now = T0 + timedelta(days=3)
    by_store = await build_report(store, bounds, now=now)
    assert by_store == await build_report(RowsOnly(store), bounds, now=now)
    [telegram] = by_store["platforms"]
    paused = 2 * (5 * 3600 - 40 * 60) + (now - T0 - timedelta(hours=2)).total_seconds() + 4 * 3600
    assert telegram["paused_s"] == paused
    assert (telegram["within_bound"], telegram["removal_breaches"]) == (1.0, 1)  # only the silent one


# -- rows written straight into the table (SQL stores) -------------------------------------------------


@pytest.fixture(params=[pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)])
def sql_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each database, for the tests that write rows straight into its tables."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def sql_store(sql_store_url: str) -> AsyncIterator[SqlStore]:
    opened = await create_store(sql_store_url)
    try:
        yield opened
    finally:
        await opened.close()


async def write_rows(store: SqlStore, rows: Sequence[ReportRow]) -> None:
    """``rows`` as requests in the table, replacing whatever was there."""
    async with store.engine.begin() as conn:
        await conn.execute(delete(requests))
        await conn.execute(delete(sla_decisions))
        unfiled = sorted({row.notice_id for row in rows if row.undelivered_breach and row.notice_id})
        if unfiled:
            await conn.execute(
                sla_decisions.insert(),
                [
                    {"notice_id": n, "kind": SlaKind.UNDELIVERED_BREACH.value, "decided_at": T0, "due_at": T0}
                    for n in unfiled
                ],
            )
        if rows:
            await conn.execute(
                requests.insert(),
                [
                    {
                        "request_id": f"r{index:05d}",
                        "platform": row.platform,
                        "state": row.state.value,
                        "priority": "normal",
                        "content_hash": "0" * 64,
                        "body": "{}",
                        "source": "test",
                        "ingested_at": row.ingested_at,
                        "notice_id": row.notice_id,
                        "delivered_at": row.delivered_at,
                        "acknowledged_at": row.acknowledged_at,
                        "resolved_at": row.resolved_at,
                        "deadline": row.deadline,
                    }
                    for index, row in enumerate(rows)
                ],
            )


async def compare(
    store: SqlStore,
    rows: Sequence[ReportRow],
    bounds: Mapping[str, Bounds],
    *,
    now: datetime,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[dict[str, Any]]:
    """The store's documents for ``rows``, after checking them against the tally of ``rows`` as
    written (and, by :func:`figures`, of the rows read back)."""
    documents = await figures(store, bounds, now=now, since=since, until=until)
    assert documents == platform_reports(rows, bounds=bounds, now=now, since=since, until=until)
    return documents


TELEGRAM = {"telegram": Bounds(ack_within=H36, removal_within=H36)}


def req(
    state: RequestState,
    *,
    platform: str = "telegram",
    notice: str | None = "TD-1",
    ingested: timedelta = timedelta(0),
    delivered: timedelta | None = timedelta(minutes=5),
    acknowledged: timedelta | None = None,
    resolved: timedelta | None = None,
    unfiled: bool = False,
) -> ReportRow:
    """A request whose times are offsets from T0; ``unfiled``: its notice was decided unfiled past
    ``sla.file_within``."""
    return ReportRow(
        platform=platform,
        state=state,
        ingested_at=T0 + ingested,
        delivered_at=None if delivered is None else T0 + delivered,
        acknowledged_at=None if acknowledged is None else T0 + acknowledged,
        resolved_at=None if resolved is None else T0 + resolved,
        notice_id=notice,
        undelivered_breach=unfiled,
    )


async def test_no_answer_yet_gives_null_times_and_an_open_request(sql_store: SqlStore) -> None:
    rows = [req(RequestState.DELIVERED), req(RequestState.PENDING, notice=None, delivered=None)]
    await write_rows(sql_store, rows)
    [only] = await compare(sql_store, rows, TELEGRAM, now=T0 + timedelta(hours=1))
    assert (only["time_to_ack_s"], only["time_to_removal_s"]) == (None, None)
    assert (only["requests"], only["open"], only["oldest_open_s"]) == (2, 2, 3300)
    assert (only["undelivered"], only["oldest_undelivered_s"]) == (1, 3600)


async def test_undelivered_requests_are_open_and_the_unfiled_decision_counts_their_breaches(
    sql_store: SqlStore,
) -> None:
    rows = [
        *(req(RequestState.BATCHED, notice="TD-portal", delivered=None, unfiled=True) for _ in range(3)),
        req(RequestState.BATCHED, notice="TD-queued", ingested=timedelta(hours=1), delivered=None),
        req(RequestState.DELIVERED, notice="TD-filed-late", unfiled=True),
        req(RequestState.REMOVED, notice="TD-ok", resolved=timedelta(hours=1)),
    ]
    await write_rows(sql_store, rows)
    [only] = await compare(sql_store, rows, TELEGRAM, now=T0 + timedelta(hours=3))
    assert (only["open"], only["undelivered"], only["oldest_undelivered_s"]) == (5, 4, 3 * 3600)
    assert only["undelivered_breaches"] == 4  # the three unfiled, and the one filed after its bound


async def test_one_request_is_every_percentile(sql_store: SqlStore) -> None:
    rows = [req(RequestState.REMOVED, acknowledged=timedelta(hours=1), resolved=timedelta(hours=3))]
    await write_rows(sql_store, rows)
    [only] = await compare(sql_store, rows, TELEGRAM, now=T0 + timedelta(days=1))
    assert only["time_to_removal_s"] == {"p50": 10500, "p90": 10500, "max": 10500}


async def test_ties_and_fractions_of_a_second(sql_store: SqlStore) -> None:
    # Ten removals: durations 1.999999 s (four times), 2 s (four times), 2.000001 s and 59.5 s.
    waits = [timedelta(seconds=2) - US] * 4 + [timedelta(seconds=2)] * 4 + [timedelta(seconds=2) + US]
    waits.append(timedelta(seconds=59.5))
    rows = [
        req(RequestState.REMOVED, notice=f"TD-{i}", delivered=timedelta(0), resolved=wait)
        for i, wait in enumerate(waits)
    ]
    await write_rows(sql_store, rows)
    [only] = await compare(sql_store, rows, TELEGRAM, now=T0 + timedelta(days=1))
    assert only["time_to_removal_s"] == {"p50": 2, "p90": 2, "max": 59}
    assert (only["notices"], only["delivered"]) == (10, 10)


async def test_exactly_the_bound_is_within_and_a_microsecond_more_is_a_breach(sql_store: SqlStore) -> None:
    rows = [
        req(RequestState.REMOVED, delivered=timedelta(0), acknowledged=H36, resolved=H36),
        req(RequestState.REMOVED, delivered=timedelta(0), acknowledged=H36 + US, resolved=H36 + US),
        req(RequestState.REJECTED, delivered=timedelta(0), resolved=H36 + US),  # an answer, late
        req(RequestState.DELIVERED, delivered=timedelta(0)),  # open, exactly the bound old
        req(RequestState.ACKNOWLEDGED, delivered=-US, acknowledged=timedelta(hours=1)),  # open, 1 µs past
    ]
    await write_rows(sql_store, rows)
    [only] = await compare(sql_store, rows, TELEGRAM, now=T0 + H36)
    assert (only["ack_breaches"], only["removal_breaches"]) == (2, 3)
    assert only["oldest_open_s"] == 129600


async def test_the_window_edges_and_requests_never_delivered(sql_store: SqlStore) -> None:
    since, until = T0 + timedelta(days=1), T0 + timedelta(days=2)
    rows = [
        req(RequestState.DELIVERED, notice="TD-start", delivered=timedelta(days=1)),  # in
        req(RequestState.DELIVERED, notice="TD-end", delivered=timedelta(days=2) - US),  # in
        req(RequestState.DELIVERED, notice="TD-until", delivered=timedelta(days=2)),  # out
        req(
            RequestState.DELIVERED,
            notice="TD-early",
            ingested=timedelta(days=1),
            delivered=timedelta(days=1) - US,
        ),
        req(RequestState.FAILED, notice="TD-f", ingested=timedelta(days=1, hours=1), delivered=None),  # in
        req(RequestState.PENDING, notice=None, ingested=timedelta(days=2), delivered=None),  # out
    ]
    await write_rows(sql_store, rows)
    [only] = await compare(sql_store, rows, TELEGRAM, now=T0 + timedelta(days=3), since=since, until=until)
    assert (only["requests"], only["notices"], only["delivered"], only["failed"]) == (3, 3, 2, 1)
    for window in [(since, None), (None, until), (until, None), (None, since)]:
        await compare(sql_store, rows, TELEGRAM, now=T0 + timedelta(days=3), since=window[0], until=window[1])


async def test_each_platform_with_its_own_bounds_and_the_silent_and_unknown_ones(sql_store: SqlStore) -> None:
    bounds = {
        "clipshare": Bounds(ack_within=timedelta(hours=1), removal_within=timedelta(hours=2)),
        "telegram": Bounds(ack_within=H36, removal_within=H36),
        "picboard": Bounds(ack_within=H36, removal_within=H36),  # configured, nothing sent
    }
    two_hours = timedelta(hours=2)
    rows = [
        req(
            RequestState.REMOVED,
            platform=name,
            delivered=timedelta(0),
            acknowledged=two_hours,
            resolved=two_hours,
        )
        for name in ("telegram", "clipshare", "unlisted")  # unlisted: not configured, left out
    ]
    await write_rows(sql_store, rows)
    clipshare, telegram, picboard = await compare(sql_store, rows, bounds, now=T0 + timedelta(days=1))
    assert [d["platform"] for d in (clipshare, telegram, picboard)] == ["clipshare", "telegram", "picboard"]
    assert (clipshare["ack_breaches"], clipshare["removal_breaches"], clipshare["ack_within"]) == (1, 0, 3600)
    assert (telegram["ack_breaches"], telegram["removal_breaches"]) == (0, 0)
    assert picboard == platform_documents({}, bounds={"picboard": bounds["picboard"]})[0]


async def test_states_with_missing_times_and_times_out_of_order(sql_store: SqlStore) -> None:
    two_days, hour = timedelta(days=2), timedelta(hours=1)
    rows = [
        # Answered, removed or rejected with no time recorded for it.
        req(RequestState.ACKNOWLEDGED),
        req(RequestState.REMOVED, resolved=None),
        req(RequestState.REJECTED, acknowledged=hour),
        # Timestamps the state does not explain: acknowledged yet delivered, failed yet answered.
        req(RequestState.DELIVERED, acknowledged=hour),
        req(RequestState.FAILED, acknowledged=two_days + hour),
        req(RequestState.WITHDRAWN, notice="TD-2"),
        # Clocks out of order: removed before delivery, delivered before intake, after ``now``.
        req(RequestState.REMOVED, delivered=2 * hour, resolved=hour),
        req(RequestState.BATCHED, ingested=hour, delivered=timedelta(0)),
        req(RequestState.DELIVERED, delivered=timedelta(days=5)),
    ]
    await write_rows(sql_store, rows)
    [only] = await compare(sql_store, rows, TELEGRAM, now=T0 + two_days)
    assert only["oldest_open_s"] == 0  # delivered after ``now``: not a negative age


def random_rows(rng: random.Random, count: int) -> list[ReportRow]:
    """Requests in every state, each time missing or not, on a grid coarse enough for ties and
    exact bounds and with microseconds either side of them."""
    steps = [timedelta(0), US, -US, timedelta(seconds=1) - US, timedelta(hours=12), H36, timedelta(hours=24)]

    def offset() -> timedelta:
        return (
            timedelta(hours=rng.randrange(0, 96, 6)) + rng.choice(steps) + timedelta(seconds=rng.randrange(3))
        )

    def maybe(chance: float) -> timedelta | None:
        return offset() if rng.random() < chance else None

    rows = []
    for _ in range(count):
        ingested = offset()
        waited = maybe(0.8)
        delivered = None if waited is None else ingested + waited
        acknowledged = None if delivered is None or rng.random() < 0.4 else delivered + offset()
        rows.append(
            req(
                rng.choice(list(RequestState)),
                platform=rng.choice(["telegram", "telegram", "clipshare", "picboard", "unlisted"]),
                notice=rng.choice([None, "TD-1", "TD-2", "TD-3", "TD-4", "TD-5", "TD-6"]),
                ingested=ingested,
                delivered=delivered,
                acknowledged=acknowledged,
                resolved=maybe(0.5),  # from T0: sometimes before delivery, as a stepped clock may
            )
        )
    # Two of the notices were decided unfiled past their bound.
    return [replace(row, undelivered_breach=row.notice_id in ("TD-2", "TD-5")) for row in rows]


async def test_random_datasets_give_the_figures_of_the_tally(sql_store: SqlStore) -> None:
    bounds = {
        "telegram": H36,
        "clipshare": timedelta(hours=24),
        "picboard": timedelta(hours=12) + US,
        "silent": H36,
    }
    for seed in range(25):
        rng = random.Random(seed)
        platform_bounds = {
            name: Bounds(ack_within=bound, removal_within=rng.choice([bound, H36, timedelta(hours=48)]))
            for name, bound in bounds.items()
        }
        rows = random_rows(rng, rng.choice([1, 2, 10, 150]))
        await write_rows(sql_store, rows)
        moments = [T0 + timedelta(hours=h) + rng.choice([timedelta(0), US]) for h in range(0, 200, 6)]
        for _ in range(4):
            now = rng.choice(moments)
            since = rng.choice([None, *moments])
            until = rng.choice([None, *(m for m in moments if since is None or m > since)])
            try:
                await compare(sql_store, rows, platform_bounds, now=now, since=since, until=until)
            except AssertionError as error:
                raise AssertionError(f"seed {seed}, now {now}, window {since} → {until}") from error


async def test_requests_of_deadline_profiles_are_judged_by_their_profiles_bounds(sql_store: SqlStore) -> None:
    """On PostgreSQL the grouped statement judges each request by its profile's bounds on its
    platform, as the tally does: a profile the platform has, one it has not, and none; and groups
    the figures by profile when asked to (``report --by profile``)."""
    h36 = Bounds(ack_within=H36, removal_within=H36)
    bounds = {"telegram": h36, "clipshare": h36}
    hour = timedelta(hours=1)
    week = Bounds(ack_within=timedelta(hours=24), removal_within=timedelta(days=7))
    profiles = {
        ("telegram", "tco"): Bounds(ack_within=hour, removal_within=hour),
        ("clipshare", "tco"): Bounds(ack_within=hour + US, removal_within=timedelta(hours=24)),
        ("telegram", "netzdg"): week,
    }
    # A group per profile, NO_PROFILE for requests without one; "other" is configured nowhere.
    groups = {NO_PROFILE: h36, "tco": Bounds(ack_within=hour, removal_within=hour), "netzdg": week}
    for seed in range(25):
        rng = random.Random(seed)
        rows = [
            replace(row, deadline=rng.choice([None, None, "tco", "netzdg", "other"]))
            for row in random_rows(rng, rng.choice([1, 10, 150]))
        ]
        await write_rows(sql_store, rows)
        now = T0 + timedelta(hours=rng.randrange(0, 200, 6)) + rng.choice([timedelta(0), US])
        since = rng.choice([None, T0 + timedelta(hours=rng.randrange(0, 96, 6))])
        for grouped in (None, groups):
            computed = await sql_store.report_figures(
                bounds=bounds, now=now, since=since, until=None, profiles=profiles, groups=grouped
            )
            reference = tally(rows, bounds=bounds, now=now, since=since, profiles=profiles, groups=grouped)
            shown = grouped or bounds
            assert platform_documents(computed, bounds=shown) == platform_documents(
                reference, bounds=shown
            ), (
                seed,
                grouped,
            )
    # The profiles change the figures here: judged by the platforms' bounds alone, they differ.
    plain = tally(rows, bounds=bounds, now=now, since=since)
    judged = tally(rows, bounds=bounds, now=now, since=since, profiles=profiles)
    assert platform_documents(plain, bounds=bounds) != platform_documents(judged, bounds=bounds)
