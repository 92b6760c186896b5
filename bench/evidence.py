"""What the evidence record costs: intake and the store's side of dispatch, record on and off.

Measures, in one run on this machine, alternating rounds (the best of each kept):

1. notifier's intake, local SQLite queue -> SQLite store (the daemon's IntakeService), and
   RabbitMQ -> PostgreSQL, each with ``[evidence] enabled`` false (the peer) and true;
2. the store's side of dispatch per notice (form it, claim it, record its delivery with the exact
   bytes of a 12 KB email), on SQLite and PostgreSQL, record off and on.

The record may cost at most 15 % of either (SPEC §15). Usage:
.venv/bin/python bench/evidence.py [--messages N] [--notices N] [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.intake import AMQP_URL, PG_ADMIN, bodies, delete_queues, local_to_sqlite, run_intake
from notifier.domain.evidence import EvidenceKind, EvidenceRecord
from notifier.domain.models import Priority, TakedownRequest
from notifier.domain.notices import Attempt, AttemptOutcome, SendResult
from notifier.intake.amqp import AmqpQueue
from notifier.logging import configure_logging
from notifier.ports import Incoming
from notifier.store import SqlStore, create_store
from notifier.store.evidence_writer import EvidenceOptions, parse_key

KEY = parse_key("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")
EMAIL = (b"Subject: [TD] notice\r\n\r\n" + b"x" * 76 + b"\r\n") * 150  # about 12 KB


def options(on: bool) -> EvidenceOptions:
    return EvidenceOptions(enabled=on, key=KEY)


async def postgres_database() -> tuple[str, Callable[[], Awaitable[None]]]:
    database = f"notifier_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{database}"')

    async def drop() -> None:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()

    return PG_ADMIN.rsplit("/", 1)[0] + f"/{database}", drop


async def intake_postgres(payloads: list[bytes], batch: int, on: bool) -> float:
    url, drop = await postgres_database()
    queue_name = f"bench.requests.{uuid.uuid4().hex[:8]}"
    store = await create_store(url, evidence=options(on))
    queue = AmqpQueue(AMQP_URL, prefetch=1000, queues=[queue_name])
    try:
        await queue.connect()
        await queue.publish(queue_name, payloads)
        return await run_intake(store, queue, queue_name, len(payloads), batch)
    finally:
        await queue.close()
        await store.close()
        await delete_queues(queue_name, f"{queue_name}.dead")
        await drop()


async def dispatch_cycle(store: SqlStore, notices: int, per_notice: int) -> float:
    """Seconds to form, claim and record the delivery of ``notices`` notices."""
    now = datetime.now(UTC)
    requests = [
        TakedownRequest(
            request_id=f"b-{i}",
            platform="telegram",
            urls=(f"https://t.me/c/{i}",),
            category="deepfake_sexual_abuse",
            priority=Priority.NORMAL,
        )
        for i in range(notices * per_notice)
    ]
    for start in range(0, len(requests), 500):
        await store.ingest(
            [Incoming(request=r, source="bench") for r in requests[start : start + 500]], [], now=now
        )
    started = time.perf_counter()
    for n in range(notices):
        notice = await store.form_notice(
            "telegram", max_items=per_notice, channel="email", now=now, deliver_by=now + timedelta(hours=6)
        )
        assert notice is not None
        [claimed] = await store.claim_due(owner="bench", now=now, lease=timedelta(minutes=5), limit=1)
        sent = EvidenceRecord(
            kind=EvidenceKind.EMAIL_SENT, notice_id=claimed.notice_id, payload=EMAIL + str(n).encode()
        )
        attempt = Attempt(
            at=now,
            channel="email",
            outcome=AttemptOutcome.DELIVERED,
            code=250,
            detail="250 ok",
            evidence=(sent,),
        )
        await store.record_delivery(
            claimed.notice_id, owner="bench", attempt=attempt, result=SendResult(code=250), channel="email"
        )
    return time.perf_counter() - started


async def dispatch_sqlite(notices: int, per_notice: int, on: bool) -> float:
    with tempfile.TemporaryDirectory() as folder:
        store = await create_store(f"sqlite:///{Path(folder) / 'notifier.db'}", evidence=options(on))
        try:
            return await dispatch_cycle(store, notices, per_notice)
        finally:
            await store.close()


async def dispatch_postgres(notices: int, per_notice: int, on: bool) -> float:
    url, drop = await postgres_database()
    store = await create_store(url, evidence=options(on))
    try:
        return await dispatch_cycle(store, notices, per_notice)
    finally:
        await store.close()
        await drop()


def line(what: str, unit: str, count: int, off: list[float], on: list[float]) -> str:
    rate_off, rate_on = count / min(off), count / min(on)
    return (
        f"{what:<34} off {rate_off:9,.0f} {unit}  on {rate_on:9,.0f} {unit}  "
        f"cost {1 - rate_on / rate_off:6.1%}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--notices", type=int, default=300)
    parser.add_argument("--per-notice", type=int, default=10)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best of each is kept")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args()
    with open(os.devnull, "w") as sink:  # noqa: ASYNC230 - opened once before anything is timed
        configure_logging(json=True, level="info", stream=sink)
        payloads = bodies(args.messages)
        runs: dict[str, dict[bool, list[float]]] = {}

        def keep(name: str, on: bool, seconds: float) -> None:
            runs.setdefault(name, {False: [], True: []})[on].append(seconds)

        for _ in range(args.rounds):
            for on in (False, True):
                keep(
                    "intake SQLite queue -> SQLite",
                    on,
                    await local_to_sqlite(payloads, args.batch, options(on)),
                )
                keep(
                    "dispatch store side, SQLite",
                    on,
                    await dispatch_sqlite(args.notices, args.per_notice, on),
                )
                if not args.no_postgres:
                    keep("intake RabbitMQ -> PostgreSQL", on, await intake_postgres(payloads, args.batch, on))
                    keep(
                        "dispatch store side, PostgreSQL",
                        on,
                        await dispatch_postgres(args.notices, args.per_notice, on),
                    )
        print(f"{args.messages} requests; {args.notices} notices of {args.per_notice}; best of {args.rounds}")
        for name, timings in runs.items():
            unit, count = (
                ("req/s", args.messages) if name.startswith("intake") else ("notices/s", args.notices)
            )
            print(line(name, unit, count, timings[False], timings[True]))


if __name__ == "__main__":
    asyncio.run(main())
