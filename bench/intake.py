"""Intake throughput: requests/s from the queue to durable, idempotent storage.

Measures, in one run on this machine:

1. a bare aio-pika consume-and-ack loop on a quorum queue (the reference: nothing stored);
2. notifier's intake, RabbitMQ -> PostgreSQL, through the daemon's own IntakeService, adapters and
   JSON logging (to /dev/null), and its ratio to (1);
3. notifier's intake, local SQLite queue -> SQLite store;
4. with ``--without-search-index``, (2) again on a store without the console's trigram search
   index (migration 0036), to show what maintaining that index costs intake.

Each run publishes its messages first, then times consumption until the last one is stored
(or acked, for the bare loop). Queues and the PostgreSQL database are the script's own and are
removed afterwards. Usage: .venv/bin/python bench/intake.py [--messages N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
from aiormq.abc import FieldTable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from notifier.clock import SystemClock
from notifier.domain.models import IntakeOutcome
from notifier.domain.validation import Vocabulary
from notifier.intake.amqp import AmqpQueue
from notifier.intake.local import LocalQueue
from notifier.intake.service import IntakeService
from notifier.logging import configure_logging
from notifier.metrics import Metrics
from notifier.ports import IntakeQueue, Store
from notifier.store import create_store
from notifier.store.console_tables import SEARCH_INDEX
from notifier.store.evidence_writer import EvidenceOptions
from tests.acceptance.dataset import valid_request

AMQP_URL = os.environ.get("BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
PG_ADMIN = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
VOCABULARY = Vocabulary(
    platforms={"telegram", "videohost", "clipshare"}, categories={"deepfake_sexual_abuse"}
)
QUORUM: FieldTable = {"x-queue-type": "quorum"}


def bodies(count: int) -> list[bytes]:
    rng = random.Random(11)
    return [json.dumps(valid_request(rng, i)).encode() for i in range(count)]


async def publish_raw(queue: str, payloads: list[bytes], arguments: FieldTable) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue(queue, durable=True, arguments=arguments)
        window = 2000
        for start in range(0, len(payloads), window):
            await asyncio.gather(
                *(
                    channel.default_exchange.publish(
                        aio_pika.Message(body=b, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                        routing_key=queue,
                    )
                    for b in payloads[start : start + window]
                )
            )


async def delete_queues(*names: str) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        for name in names:
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):  # never declared: nothing to delete
                await channel.queue_delete(name)


async def bare_consume(queue: str, count: int, prefetch: int) -> float:
    """Consume and ack ``count`` messages with plain aio-pika; seconds taken."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        declared = await channel.declare_queue(queue, durable=True, arguments=QUORUM)
        done = asyncio.Event()
        seen = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal seen
            await message.ack()
            seen += 1
            if seen >= count:
                done.set()

        started = time.perf_counter()
        await declared.consume(on_message)
        await done.wait()
        return time.perf_counter() - started


class CountingStore:
    """The real store, with an event set once ``target`` requests have been committed.

    Counting the outcomes the store returns costs nothing, where polling the store would compete
    with the intake being measured.
    """

    def __init__(self, store: Store, target: int) -> None:
        self._store = store
        self._target = target
        self.stored = 0
        self.done = asyncio.Event()

    async def ingest(self, incoming: Any, dead_letters: Any, *, now: datetime) -> list[IntakeOutcome]:
        outcomes = await self._store.ingest(incoming, dead_letters, now=now)
        self.stored += sum(1 for o in outcomes if o is IntakeOutcome.ACCEPTED)
        if self.stored >= self._target:
            self.done.set()
        return outcomes

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def run_intake(store: Store, queue: IntakeQueue, queue_name: str, count: int, batch: int) -> float:
    """Run the daemon's intake service until ``count`` requests are stored; seconds taken."""
    counting = CountingStore(store, count)
    service = IntakeService(
        store=counting,
        queue=queue,
        queue_name=queue_name,
        vocabulary=VOCABULARY,
        clock=SystemClock(),
        metrics=Metrics(),
        batch_size=batch,
    )
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(service.run(stop))
    await counting.done.wait()
    elapsed = time.perf_counter() - started
    stop.set()
    await task
    return elapsed


async def amqp_to_postgres(
    payloads: list[bytes], prefetch: int, batch: int, *, search_index: bool = True
) -> float:
    database = f"notifier_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{database}"')
    queue_name = f"bench.requests.{uuid.uuid4().hex[:8]}"
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{database}"
    store = await create_store(url)
    if not search_index:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f"DROP INDEX IF EXISTS {SEARCH_INDEX}")
        finally:
            await conn.close()
    queue = AmqpQueue(AMQP_URL, prefetch=prefetch, queues=[queue_name])
    try:
        await queue.connect()
        await queue.publish(queue_name, payloads)
        return await run_intake(store, queue, queue_name, len(payloads), batch)
    finally:
        await queue.close()
        await store.close()
        await delete_queues(queue_name, f"{queue_name}.dead")
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()


async def local_to_sqlite(
    payloads: list[bytes], batch: int, evidence: EvidenceOptions | None = None
) -> float:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "notifier.db"
        store = await create_store(f"sqlite:///{path}", evidence=evidence)
        queue = LocalQueue(path)
        try:
            await queue.connect()
            await queue.publish("takedown.requests", payloads)
            return await run_intake(store, queue, "takedown.requests", len(payloads), batch)
        finally:
            await queue.close()
            await store.close()


async def bare(payloads: list[bytes], prefetch: int) -> float:
    queue_name = f"bench.bare.{uuid.uuid4().hex[:8]}"
    try:
        await publish_raw(queue_name, payloads, QUORUM)
        return await bare_consume(queue_name, len(payloads), prefetch)
    finally:
        await delete_queues(queue_name)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--prefetch", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best of each is kept")
    parser.add_argument(
        "--without-search-index", action="store_true", help="also time it without the search index"
    )
    args = parser.parse_args()
    with open(os.devnull, "w") as sink:  # noqa: ASYNC230 - opened once before anything is timed
        configure_logging(json=True, level="info", stream=sink)
        payloads = bodies(args.messages)
        size = sum(map(len, payloads)) / len(payloads)
        print(
            f"{args.messages} requests of {size:.0f} bytes on average; "
            f"prefetch {args.prefetch}, batch {args.batch}"
        )
        bare_s, amqp_s, local_s, plain_s = [], [], [], []
        for _ in range(args.rounds):
            bare_s.append(await bare(payloads, args.prefetch))
            amqp_s.append(await amqp_to_postgres(payloads, args.prefetch, args.batch))
            local_s.append(await local_to_sqlite(payloads, args.batch))
            if args.without_search_index:
                plain_s.append(
                    await amqp_to_postgres(payloads, args.prefetch, args.batch, search_index=False)
                )
        n = args.messages
        bare_rate, amqp_rate, local_rate = n / min(bare_s), n / min(amqp_s), n / min(local_s)
        print(f"bare aio-pika consume+ack (quorum queue):  {bare_rate:9,.0f} msg/s")
        print(
            f"notifier intake RabbitMQ -> PostgreSQL:    {amqp_rate:9,.0f} requests/s  "
            f"({amqp_rate / bare_rate:.0%} of bare)"
        )
        print(f"notifier intake SQLite queue -> SQLite:    {local_rate:9,.0f} requests/s")
        if plain_s:
            plain_rate = n / min(plain_s)
            print(
                f"  the same to PostgreSQL without the search index: {plain_rate:9,.0f} requests/s  "
                f"({plain_rate / bare_rate:.0%} of bare; the index costs {1 - amqp_rate / plain_rate:.0%})"
            )


if __name__ == "__main__":
    asyncio.run(main())
