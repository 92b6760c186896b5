"""The report's verification figures (SPEC §13) from the store, on SQLite and PostgreSQL.

PostgreSQL computes them in grouped statements, SQLite tallies its rows with the domain's
:func:`notifier.domain.verification.verification_figures`; both must give exactly what that tally
gives of the rows as written here, straight into the tables: edges (a wait of a fraction of a
second, ties, a removal seen before the delivery, a request verified but never delivered, checks
that concluded something, withdrawn requests, left out) and seeded random datasets. Both ways the
store gives them: :meth:`verification_figures` alone, and ``report_figures(verification=True)``,
which reads them in the same statements as the report's other figures. The store is the contract
tests' own (``conftest.py``): each database in turn.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete

from notifier.domain.report import Bounds
from notifier.domain.verification import CheckOutcome, VerificationRow, verification_figures
from notifier.store import SqlStore
from notifier.store.tables import requests, url_checks

T0 = datetime(2024, 9, 3, 1, 0, tzinfo=UTC)
US = timedelta(microseconds=1)


@dataclass(frozen=True)
class Written:
    """A request as written, with the outcomes of its checks."""

    platform: str
    ingested_at: datetime
    delivered_at: datetime | None
    verified_removed_at: datetime | None = None
    false_claims: int = 0
    reappeared_at: datetime | None = None
    checks: tuple[CheckOutcome, ...] = ()
    withdrawn: bool = False


async def write(store: SqlStore, written: Sequence[Written]) -> None:
    """``written`` as the requests and checks in the tables, replacing whatever was there."""
    async with store.engine.begin() as conn:
        await conn.execute(delete(url_checks))
        await conn.execute(delete(requests))
        if not written:
            return
        await conn.execute(
            requests.insert(),
            [
                {
                    "request_id": f"r{index:05d}",
                    "platform": w.platform,
                    "state": "withdrawn"
                    if w.withdrawn
                    else "delivered"
                    if w.delivered_at is not None
                    else "pending",
                    "priority": "normal",
                    "content_hash": "0" * 64,
                    "body": "{}",
                    "source": "test",
                    "ingested_at": w.ingested_at,
                    "delivered_at": w.delivered_at,
                    "verified_removed_at": w.verified_removed_at,
                    "false_claims": w.false_claims,
                    "reappeared_at": w.reappeared_at,
                }
                for index, w in enumerate(written)
            ],
        )
        checks = [
            _check(f"r{index:05d}", w.platform, outcome)
            for index, w in enumerate(written)
            for outcome in w.checks
        ]
        if checks:
            await conn.execute(url_checks.insert(), checks)


def _check(request_id: str, platform: str, outcome: CheckOutcome) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "platform": platform,
        "url": f"https://example.test/{request_id}",
        "at": T0,
        "outcome": outcome.value,
        "reason": "test",
        "http_status": None,
        "final_url": "",
        "content_type": "",
        "bytes_read": 0,
        "sha256": "",
        "rule": "",
    }


def expected(
    written: Sequence[Written],
    *,
    since: datetime | None,
    until: datetime | None,
    platforms: Sequence[str] | None,
) -> dict[str, dict[str, Any]]:
    """The domain's tally of the written requests the report's window and platforms select (but
    the withdrawn ones)."""
    rows = []
    for w in written:
        if w.withdrawn:
            continue
        at = w.delivered_at if w.delivered_at is not None else w.ingested_at
        if (since is not None and at < since) or (until is not None and at >= until):
            continue
        if platforms is not None and w.platform not in platforms:
            continue
        rows.append(
            VerificationRow(
                platform=w.platform,
                delivered_at=w.delivered_at,
                verified_removed_at=w.verified_removed_at,
                false_claims=w.false_claims,
                reappeared=w.reappeared_at is not None,
                inconclusive=sum(1 for c in w.checks if c is CheckOutcome.INCONCLUSIVE),
            )
        )
    return verification_figures(rows)


async def compare(
    store: SqlStore,
    written: Sequence[Written],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    platforms: Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    figures = await store.verification_figures(since=since, until=until, platforms=platforms)
    wanted = expected(written, since=since, until=until, platforms=platforms)
    assert figures == wanted
    # The report's own statements give the same figures for each platform it reports.
    names = platforms if platforms is not None else sorted({w.platform for w in written})
    bounds = {
        name: Bounds(ack_within=timedelta(hours=36), removal_within=timedelta(hours=36)) for name in names
    }
    report = await store.report_figures(
        bounds=bounds, now=T0 + timedelta(days=30), since=since, until=until, verification=True
    )
    assert {p: f.verification for p, f in report.items() if f.verification is not None} == wanted
    return figures


def delivered(
    hours: float, *, verified_after: timedelta | None, platform: str = "telegram", **more: Any
) -> Written:
    at = T0 + timedelta(hours=hours)
    return Written(
        platform=platform,
        ingested_at=at - timedelta(minutes=5),
        delivered_at=at,
        verified_removed_at=None if verified_after is None else at + verified_after,
        **more,
    )


async def test_nothing_in_the_window_gives_no_platform(store: SqlStore) -> None:
    assert await compare(store, []) == {}
    written = [delivered(1, verified_after=timedelta(hours=2))]
    await write(store, written)
    assert await compare(store, written, since=T0 + timedelta(days=1)) == {}


async def test_counts_and_the_spread_of_the_waits(store: SqlStore) -> None:
    written = [
        delivered(
            0, verified_after=timedelta(hours=3), false_claims=2, checks=(CheckOutcome.INCONCLUSIVE,) * 2
        ),
        delivered(1, verified_after=timedelta(hours=1, seconds=0.999999)),  # a fraction: truncated
        delivered(2, verified_after=timedelta(hours=1, seconds=0.999999)),  # a tie
        delivered(3, verified_after=None, reappeared_at=T0, checks=(CheckOutcome.LIVE, CheckOutcome.REMOVED)),
        delivered(4, verified_after=-timedelta(minutes=1)),  # seen gone before the delivery: 0 s
        Written(platform="telegram", ingested_at=T0, delivered_at=None, verified_removed_at=T0 + US),
        delivered(
            5, verified_after=timedelta(days=2), platform="clipshare", checks=(CheckOutcome.INCONCLUSIVE,)
        ),
    ]
    await write(store, written)
    figures = await compare(store, written)
    assert figures["telegram"] == {
        "verified_removed": 5,  # the one never delivered too, with no wait
        "false_claims": 2,
        "reappeared": 1,
        "inconclusive": 2,
        "time_to_verified_removal_s": {"p50": 3600, "p90": 10800, "max": 10800},
    }
    assert figures["clipshare"]["time_to_verified_removal_s"] == {"p50": 172800, "p90": 172800, "max": 172800}
    assert list(await compare(store, written, platforms=["clipshare"])) == ["clipshare"]


async def test_withdrawn_requests_are_left_out(store: SqlStore) -> None:
    """A request the authority withdrew is out of every figure but its own count (SPEC §14): its
    checks count neither for nor against the platform."""
    kept = delivered(0, verified_after=timedelta(hours=2))
    gone = delivered(1, verified_after=timedelta(hours=9), false_claims=1, reappeared_at=T0, withdrawn=True)
    only_withdrawn = delivered(2, verified_after=timedelta(hours=1), platform="clipshare", withdrawn=True)
    written = [kept, gone, only_withdrawn]
    await write(store, written)
    figures = await compare(store, written)
    assert figures == {
        "telegram": {
            "verified_removed": 1,
            "false_claims": 0,
            "reappeared": 0,
            "inconclusive": 0,
            "time_to_verified_removal_s": {"p50": 7200, "p90": 7200, "max": 7200},
        }
    }


async def test_random_datasets_give_the_figures_of_the_tally(store: SqlStore) -> None:
    moments = [T0 + timedelta(hours=h) for h in range(0, 96, 6)]
    for seed in range(20):
        rng = random.Random(seed)
        written = [_random(rng) for _ in range(rng.choice([1, 3, 40, 150]))]
        await write(store, written)
        for _ in range(3):
            since = rng.choice([None, *moments])
            until = rng.choice([None, *(m for m in moments if since is None or m > since)])
            platforms = rng.choice([None, ["telegram"], ["telegram", "clipshare", "silent"]])
            try:
                await compare(store, written, since=since, until=until, platforms=platforms)
            except AssertionError as error:
                raise AssertionError(
                    f"seed {seed}, window {since} → {until}, platforms {platforms}"
                ) from error


def _random(rng: random.Random) -> Written:
    def offset() -> timedelta:
        # Whole hours (ties), seconds, and fractions of a second; now and then negative.
        return rng.choice([timedelta(hours=rng.randint(0, 72)), timedelta(seconds=rng.uniform(-60, 7200))])

    ingested = T0 + timedelta(hours=rng.randint(0, 90))
    delivered_at = rng.choice([None, ingested + timedelta(minutes=rng.randint(0, 600))])
    base = delivered_at or ingested
    return Written(
        platform=rng.choice(["telegram", "clipshare", "picboard"]),
        ingested_at=ingested,
        delivered_at=delivered_at,
        verified_removed_at=rng.choice([None, base + offset()]),
        false_claims=rng.choice([0, 0, 1, 3]),
        reappeared_at=rng.choice([None, None, base + offset()]),
        checks=tuple(rng.choice(list(CheckOutcome)) for _ in range(rng.choice([0, 0, 1, 4]))),
        withdrawn=rng.random() < 0.1,
    )
