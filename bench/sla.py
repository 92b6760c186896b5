"""The SLA monitor on time behind a large backlog (SPEC §7, §11): 1,000,000 open requests in 20,000
notices on PostgreSQL, reminders and breaches falling due every second or so.

Creates a PostgreSQL database of its own (schema through the migrations, as ``create_store`` does
it) and loads it with COPY, a chunk at a time:

* the backlog: 20,000 notices of 50 requests each, delivered over the last 35 hours, three in four
  acknowledged and not removed, the rest silent with their reminder already sent; each notice's SLA
  timer where the monitor left it, at its next decision (hours ahead);
* among them, the scheduled: notices whose decisions fall due during the run, on the real clock
  (the bounds are the real 36 h, the delivery times chosen so that it falls due then): a reminder
  every half second, an acknowledgement and removal breach together every second, and a removal
  breach of an acknowledged notice every second.

Then it runs the real :class:`notifier.services.sla.SlaMonitor` in a process of its own (started
from a small launcher, as ``bench/report.py`` does, so that its peak RSS is its own) for
``--seconds`` of real time, over a channel that takes every message at once (what is measured is
the monitor, not a mail server), with JSON logs to ``/dev/null``. It prints the lag of every
decision after its due time (decided_at - due_at; p50, p99, max), the store time of each round and
of each statement, and the monitor process's peak RSS. For comparison it times, on the same data,
the statement the monitor ran before timers (the 500 oldest open notices with their open-request
counts) and counts how many of the scheduled notices that page holds.

The database is dropped afterwards. Usage: .venv/bin/python bench/sla.py [--notices N] [--seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.report import BODY
from notifier.clock import SystemClock
from notifier.domain.models import NoticeState, RequestState
from notifier.domain.notices import Authority, NoticeContent, SendResult
from notifier.domain.sla import SlaBounds, SlaKind
from notifier.logging import configure_logging
from notifier.metrics import Metrics
from notifier.ports import SlaClaim, SlaDecision
from notifier.services.dispatcher import Route
from notifier.services.sla import SlaMonitor
from notifier.store import SqlStore, create_store

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).resolve()
PG_ADMIN = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
LAG_TARGET_S = 1.0
RSS_TARGET_MIB = 200
PLATFORMS = ("telegram", "videohost", "clipshare", "picboard", "streamhub")
BOUND = timedelta(hours=36)
REMIND_AT = 0.66
TICK = timedelta(microseconds=1)
PER_NOTICE = 50
# Time for the monitor's process to start (interpreter, imports, store) before the first due time.
LEAD = timedelta(seconds=6)

NOTICE_COLUMNS = [
    "notice_id", "platform", "sequence", "request_count", "channel", "primary_channel", "state",
    "created_at", "updated_at", "deliver_by", "message_id", "delivered_at", "acknowledged_at",
    "sla_due_at",
]  # fmt: skip
REQUEST_COLUMNS = [
    "request_id", "platform", "state", "priority", "content_hash", "body", "source", "ingested_at",
    "notice_id", "delivered_at", "acknowledged_at", "notice_position",
]  # fmt: skip
DECISION_COLUMNS = ["notice_id", "kind", "decided_at", "due_at", "sent_at", "message_ref"]


@dataclass(frozen=True, slots=True)
class Notice:
    """One notice to load: delivered at ``delivered``, acknowledged at ``acknowledged`` (or not),
    its timer at ``due``, and the decisions already sent."""

    platform: str
    delivered: datetime
    acknowledged: datetime | None
    due: datetime
    sent: tuple[SlaKind, ...] = ()


def plan(notices: int, start: datetime, seconds: int, rng: random.Random) -> list[Notice]:
    """The scheduled notices (decisions due during the run, from ``start``), then the backlog."""
    scheduled: list[Notice] = []
    for half in range(2 * seconds):  # a reminder every half second
        due = start + timedelta(seconds=half / 2)
        delivered = due - BOUND * REMIND_AT
        scheduled.append(
            Notice(platform=PLATFORMS[half % 5], delivered=delivered, acknowledged=None, due=due)
        )
    for second in range(seconds):
        # Silent: both bounds passed together (one escalation), the reminder sent long ago.
        due = start + timedelta(seconds=second + 0.25)
        delivered = due - BOUND - TICK
        scheduled.append(
            Notice(
                platform=PLATFORMS[second % 5],
                delivered=delivered,
                acknowledged=None,
                due=due,
                sent=(SlaKind.REMINDER,),
            )
        )
        # Acknowledged within the hour, never removed: the removal breach alone.
        due = start + timedelta(seconds=second + 0.75)
        delivered = due - BOUND - TICK
        scheduled.append(
            Notice(
                platform=PLATFORMS[(second + 2) % 5],
                delivered=delivered,
                acknowledged=delivered + timedelta(minutes=40),
                due=due,
            )
        )
    backlog: list[Notice] = []
    for index in range(notices - len(scheduled)):
        # Delivered from 35 h to 1 h ago: nothing falls due in the run.
        delivered = start - timedelta(seconds=rng.uniform(3600, 35 * 3600))
        platform = PLATFORMS[index % 5]
        if rng.random() < 0.75:
            acknowledged = delivered + timedelta(seconds=rng.uniform(60, 3000))
            backlog.append(
                Notice(
                    platform=platform,
                    delivered=delivered,
                    acknowledged=acknowledged,
                    due=delivered + BOUND + TICK,
                )
            )
        else:
            # Silent, its reminder sent already or due well after the run (never during it).
            if abs((delivered + BOUND * REMIND_AT - start).total_seconds() - seconds / 2) < seconds / 2 + 900:
                delivered -= timedelta(seconds=seconds + 1800)
            reminded = delivered + BOUND * REMIND_AT
            if reminded > start:
                backlog.append(
                    Notice(platform=platform, delivered=delivered, acknowledged=None, due=reminded)
                )
            else:
                due, sent = delivered + BOUND + TICK, (SlaKind.REMINDER,)
                backlog.append(
                    Notice(platform=platform, delivered=delivered, acknowledged=None, due=due, sent=sent)
                )
    return scheduled + backlog


def notice_ids(notices: list[Notice]) -> list[str]:
    return [f"TD-{n.platform}-{index:07d}" for index, n in enumerate(notices)]


def notice_rows(notices: list[Notice], ids: list[str], first: int) -> Iterator[tuple[Any, ...]]:
    for index, (n, nid) in enumerate(zip(notices, ids, strict=True), start=first):
        created = n.delivered - timedelta(seconds=40)
        state = NoticeState.DELIVERED if n.acknowledged is None else NoticeState.ACKNOWLEDGED
        yield (nid, n.platform, index + 1, PER_NOTICE, "email", "email", state.value, created,
               n.acknowledged or n.delivered, created + timedelta(hours=6), f"<{nid}@authority.example>",
               n.delivered, n.acknowledged, n.due)  # fmt: skip


def request_rows(
    notices: list[Notice], ids: list[str], first: int, rng: random.Random
) -> Iterator[tuple[Any, ...]]:
    for index, (n, nid) in enumerate(zip(notices, ids, strict=True), start=first):
        state = RequestState.DELIVERED if n.acknowledged is None else RequestState.ACKNOWLEDGED
        for position in range(PER_NOTICE):
            number = index * PER_NOTICE + position
            rid = f"kcsc-2025-{number:07d}"
            body = BODY.format(
                n=number, h=f"{rng.getrandbits(256):064x}", p=n.platform, prio="normal", rid=rid
            )
            yield (rid, n.platform, state.value, "normal", hashlib.sha256(body.encode()).hexdigest(), body,
                   "amqp:takedown.requests", n.delivered - timedelta(minutes=5), nid, n.delivered,
                   n.acknowledged, position)  # fmt: skip


def decision_rows(notices: list[Notice], ids: list[str]) -> Iterator[tuple[Any, ...]]:
    for n, nid in zip(notices, ids, strict=True):
        for kind in n.sent:
            at = n.delivered + BOUND * REMIND_AT
            yield (nid, kind.value, at, at, at, f"<{nid}.reminder@authority.example>")


def chunks(rows: Iterator[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    chunk: list[tuple[Any, ...]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def load(url: str, notices: list[Notice], ids: list[str], first: int, rng: random.Random) -> None:
    """``notices`` (numbered from ``first``) and their requests, a chunk of rows per COPY."""
    conn = await asyncpg.connect(url, command_timeout=300)  # a server restarted meanwhile: fail, not hang
    try:
        rows = list(notice_rows(notices, ids, first))
        await conn.copy_records_to_table("notices", records=rows, columns=NOTICE_COLUMNS)
        for chunk in chunks(request_rows(notices, ids, first, rng), 50_000):
            await conn.copy_records_to_table("requests", records=chunk, columns=REQUEST_COLUMNS)
        await conn.copy_records_to_table(
            "sla_decisions", records=list(decision_rows(notices, ids)), columns=DECISION_COLUMNS
        )
        # What autovacuum would have done, and the checkpoint the load owes, before anything is timed.
        await conn.execute("VACUUM ANALYZE notices, requests, sla_decisions")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


# What the monitor read every round before timers: the oldest open notices, with a correlated count
# of their open requests (notifier.store.sla_sql before this change, as PostgreSQL received it).
OLD_SCAN = """
SELECT n.notice_id, n.platform, n.channel, n.delivered_at, n.acknowledged_at,
       (SELECT count(*) FROM requests r
         WHERE r.notice_id = n.notice_id AND r.state NOT IN ('removed', 'rejected', 'withdrawn', 'failed'))
FROM notices n
WHERE n.state IN ('delivered', 'acknowledged') AND n.delivered_at IS NOT NULL AND n.delivered_at <= $1
  AND NOT (EXISTS (SELECT 1 FROM sla_decisions d
                    WHERE d.notice_id = n.notice_id AND d.kind = 'removal_breach')
           AND (n.acknowledged_at IS NOT NULL
                OR EXISTS (SELECT 1 FROM sla_decisions d
                            WHERE d.notice_id = n.notice_id AND d.kind = 'ack_breach')))
ORDER BY n.delivered_at, n.notice_id
LIMIT 500
"""
CLAIM_PLAN = """
EXPLAIN SELECT notice_id FROM notices WHERE sla_due_at IS NOT NULL AND sla_due_at <= $1
ORDER BY sla_due_at LIMIT 500 FOR UPDATE SKIP LOCKED
"""


async def old_scan(url: str, at: datetime, scheduled: set[str]) -> tuple[float, int, str]:
    """Best of five of the old round's statement, how many scheduled notices its page holds, and
    the plan of the new claim's probe."""
    conn = await asyncpg.connect(url)
    try:
        times, page = [], []
        for _ in range(5):
            t0 = time.perf_counter()
            page = await conn.fetch(OLD_SCAN, at)
            times.append(time.perf_counter() - t0)
        plan_lines = [row[0].strip() for row in await conn.fetch(CLAIM_PLAN, at)]
    finally:
        await conn.close()
    probe = " / ".join(
        line.removeprefix("->").split("  (")[0].strip() for line in plan_lines if "Scan" in line
    )
    return min(times), sum(1 for row in page if row["notice_id"] in scheduled), probe


# -- the monitor's process ------------------------------------------------------------------------


class TakesEverything:
    """A channel that takes every message at once: the monitor is measured, not a mail server."""

    name = "email"

    def __init__(self) -> None:
        self.sent = 0

    async def send(self, content: NoticeContent) -> SendResult:
        self.sent += 1
        return SendResult(
            code=250, message_id=f"<{content.notice_id}.{content.message_tag}@authority.example>"
        )

    async def close(self) -> None:
        return None


class TimedStore(SqlStore):
    """The store, with the time each of the monitor's statements takes kept by name."""

    timings: dict[str, list[float]]
    lags: list[tuple[float, float]]  # (lag, due time as epoch seconds)

    def _keep(self, name: str, started: float) -> None:
        self.timings.setdefault(name, []).append(time.perf_counter() - started)

    async def claim_sla_due(self, *, now: datetime, lease: timedelta, limit: int) -> list[SlaClaim]:
        t0 = time.perf_counter()
        try:
            return await super().claim_sla_due(now=now, lease=lease, limit=limit)
        finally:
            self._keep("claim_sla_due", t0)

    async def reschedule_sla(self, moves: Any) -> int:
        t0 = time.perf_counter()
        try:
            return await super().reschedule_sla(moves)
        finally:
            self._keep("reschedule_sla", t0)

    async def next_sla_due(self) -> datetime | None:
        t0 = time.perf_counter()
        try:
            return await super().next_sla_due()
        finally:
            self._keep("next_sla_due", t0)

    async def decide(self, notice_id: str, due: Any, *, decided_at: datetime) -> frozenset[SlaKind]:
        # The lag as the decision is written, by the wall clock: later than ``decided_at`` (the
        # round's start) by whatever the round did before it.
        wall = datetime.now(UTC)
        self.lags.extend(((wall - at).total_seconds(), at.timestamp()) for at in due.values())
        t0 = time.perf_counter()
        try:
            return await super().decide(notice_id, due, decided_at=decided_at)
        finally:
            self._keep("decide", t0)

    async def claim_unsent_decisions(self, *, owner: str, lease: timedelta, limit: int) -> list[SlaDecision]:
        t0 = time.perf_counter()
        try:
            return await super().claim_unsent_decisions(owner=owner, lease=lease, limit=limit)
        finally:
            self._keep("claim_unsent_decisions", t0)


class TimedMonitor(SlaMonitor):
    """The monitor, with the store time of each round kept."""

    store: TimedStore
    round_store_s: list[float]
    round_s: list[float]

    async def round(self) -> datetime | None:
        before = sum(sum(v) for v in self.store.timings.values())
        t0 = time.perf_counter()
        try:
            return await super().round()
        finally:
            self.round_s.append(time.perf_counter() - t0)
            self.round_store_s.append(sum(sum(v) for v in self.store.timings.values()) - before)


async def run_monitor(url: str, start: datetime, seconds: float) -> dict[str, Any]:
    store = TimedStore(url)
    store.timings, store.lags = {}, []
    await store.open()
    channel = TakesEverything()
    routes = {
        p: Route(platform=p, name=p.title(), language="en", primary=channel, fallback=None, max_items=50,
                 max_wait=timedelta(minutes=10), rate_per_minute=0, ack_within=BOUND, removal_within=BOUND)
        for p in PLATFORMS
    }  # fmt: skip
    monitor = TimedMonitor(
        store=store,
        routes=routes,
        bounds={p: SlaBounds(ack_within=BOUND, removal_within=BOUND, remind_at=REMIND_AT) for p in PLATFORMS},
        authority=Authority(
            name="Authority", email="takedown@authority.example", reply_to=None, timezone="UTC"
        ),
        category_labels={},
        clock=SystemClock(),
        metrics=Metrics(),
    )
    monitor.store, monitor.round_store_s, monitor.round_s = store, [], []
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    end = start + timedelta(seconds=seconds + 1.5)
    await asyncio.sleep(max(0.0, (end - datetime.now(UTC)).total_seconds()))
    stop.set()
    await task
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT kind, extract(epoch FROM decided_at - due_at) AS lag,"
            " extract(epoch FROM sent_at - due_at) AS sent FROM sla_decisions WHERE decided_at >= $1",
            start - LEAD,
        )
    finally:
        await conn.close()
    await store.close()
    return {
        "decisions": [
            (row["kind"], float(row["lag"]), None if row["sent"] is None else float(row["sent"]))
            for row in rows
        ],
        "written_lags": store.lags,
        "sent": channel.sent,
        "rounds": monitor.rounds,
        "round_s": monitor.round_s,
        "round_store_s": monitor.round_store_s,
        "timings": store.timings,
        "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


# Started from this small launcher rather than from the bench's process, whose size Linux would
# carry over to the monitor's peak RSS across fork and exec (see bench/report.py).
_LAUNCHER = """
import json, resource, subprocess, sys
result = subprocess.run(sys.argv[1:], capture_output=True, check=False)
print(json.dumps({"returncode": result.returncode, "stdout": result.stdout.decode(),
                  "stderr": result.stderr.decode()[-4000:],
                  "peak_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def rank(values: list[float], percent: int) -> float:
    """Nearest rank, as the report's percentiles."""
    ordered = sorted(values)
    return ordered[-(-percent * len(ordered) // 100) - 1] if ordered else float("nan")


def spread(values: list[float]) -> str:
    ordered = sorted(values)
    if not ordered:
        return "none"
    p50, p99 = rank(ordered, 50), rank(ordered, 99)
    return f"p50 {p50 * 1000:7.1f} ms, p99 {p99 * 1000:7.1f} ms, max {ordered[-1] * 1000:7.1f} ms"


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--notices", type=int, default=20_000, help="notices of 50 open requests each")
    parser.add_argument("--seconds", type=int, default=60, help="real seconds over which decisions fall due")
    parser.add_argument("--monitor", nargs=2, metavar=("URL", "START"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.monitor:  # the monitor's own process
        with open(os.devnull, "w") as devnull:  # noqa: ASYNC230 - opened once, before the run
            configure_logging(json=True, level="info", stream=devnull)
            result = await run_monitor(args.monitor[0], datetime.fromisoformat(args.monitor[1]), args.seconds)
        print(json.dumps(result))
        return

    rng = random.Random(11)
    database = f"notifier_bench_{uuid.uuid4().hex[:8]}"
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{database}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{database}"')
    try:
        store = await create_store(url)  # the migrations create the schema
        await store.close()
        # The due times are placed after the load, when the monitor is about to start.
        t0 = time.perf_counter()
        guess = datetime.now(UTC) + timedelta(minutes=3)
        notices = plan(args.notices, guess, args.seconds, rng)
        ids = notice_ids(notices)
        scheduled = 4 * args.seconds
        await load(url, notices[scheduled:], ids[scheduled:], scheduled, rng)
        start = datetime.now(UTC) + LEAD
        fresh = plan(scheduled, start, args.seconds, rng)[:scheduled]
        await load(url, fresh, ids[:scheduled], 0, rng)
        load_s = time.perf_counter() - t0
        requests_total = args.notices * PER_NOTICE
        print(f"{args.notices:,} notices, {requests_total:,} open requests over {len(PLATFORMS)} platforms;")
        print(
            f"{scheduled} of the notices with decisions due over {args.seconds} s; loaded in {load_s:.0f} s"
        )

        command = [sys.executable, "-c", _LAUNCHER, sys.executable, str(SCRIPT)]
        command += ["--seconds", str(args.seconds), "--monitor", url, start.isoformat()]
        launched = await asyncio.to_thread(subprocess.run, command, capture_output=True, cwd=REPO, check=True)
        outcome = json.loads(launched.stdout)
        if outcome["returncode"] != 0:
            raise SystemExit(f"the monitor's process failed ({outcome['returncode']}): {outcome['stderr']}")
        result = json.loads(outcome["stdout"])
        reminded = set(ids[: 2 * args.seconds])  # the scheduled reminders' notices
        scan_s, in_page, probe = await old_scan(url, start + timedelta(seconds=args.seconds), reminded)
    finally:
        admin.terminate()  # a fresh connection drops the database, whatever became of this one
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()

    decisions = result["decisions"]
    lags: list[float] = [lag for lag, _ in result["written_lags"]]
    worst_lag, worst_due = max(result["written_lags"], default=(0.0, start.timestamp()))
    recorded = [lag for _, lag, _ in decisions]
    sends = [sent for _, _, sent in decisions if sent is not None]
    kinds: dict[str, int] = {}
    for kind, _, _ in decisions:
        kinds[kind] = kinds.get(kind, 0) + 1
    expected = 2 * args.seconds + 2 * args.seconds + args.seconds
    worst = max(lags, default=float("inf"))
    peak_mib = max(result["peak_kib"], outcome["peak_kib"]) / 1024
    claims = result["timings"].get("claim_sla_due", [])
    per_round = result["round_store_s"]
    by_kind = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
    print(f"decisions: {len(decisions)} of {expected} due ({by_kind}); {result['sent']} messages sent;")
    print(f"{result['rounds']} rounds of the monitor in {args.seconds} s")
    print(f"lag of each decision after its due time: {spread(lags)} (wall clock, as it is written)")
    print(f"  the longest: {worst_lag * 1000:.0f} ms, due {worst_due - start.timestamp():.2f} s into the run")
    print(f"  as recorded (decided_at - due_at):     {spread(recorded)}")
    print(f"  and of its sending (sent_at - due_at): {spread(sends)}")
    print(f"store time per round:                    {spread(per_round)}")
    for name in ("claim_sla_due", "reschedule_sla", "next_sla_due", "decide", "claim_unsent_decisions"):
        print(f"  {name + ':':<37} {spread(result['timings'].get(name, []))}")
    print(f"peak RSS of the monitor's process:       {peak_mib:7.0f} MiB")
    print("for comparison, before timers (same data):")
    ratio = scan_s / max(1e-9, rank(claims, 50))
    print(f"  the round's scan of the 500 oldest open notices: {scan_s * 1000:7.1f} ms", end="")
    print(f" ({ratio:.0f} × the timer claim's p50)")
    print(f"  notices of the scheduled reminders in that page: {in_page} of {2 * args.seconds}")
    print(f"  the claim's probe: {probe}")
    lag_verdict = "met" if worst <= LAG_TARGET_S and len(decisions) == expected else "NOT met"
    rss_verdict = "met" if peak_mib <= RSS_TARGET_MIB else "NOT met"
    print(f"target: every decision within {LAG_TARGET_S:.0f} s of its due time: {lag_verdict}")
    print(f"SPEC §11 target: ≤ {RSS_TARGET_MIB} MB RSS: {rss_verdict}")


if __name__ == "__main__":
    asyncio.run(main())
