"""Urgent latency: urgent requests from the queue to delivered, while normal load flows.

SPEC §11: an urgent request, queue to delivered, p99 ≤ 250 ms over ≥ 1,000 samples under 500
requests/s of load. Measures, in one run on this machine:

1. notifier: ``--processes`` daemons (default 2), each ``python -m notifier run`` as operators run
   it, on RabbitMQ and PostgreSQL, with 5 email platforms (notices of 50 requests, ``max_wait``
   1 s) sending to the benchmarks' SMTP sink (:mod:`bench.sink`, a process of its own). This
   process publishes the normal load (``--load`` requests/s spread over the platforms) and,
   ``--urgent-rate`` times a second, one urgent request, to the urgent requests' own queue
   (``queue.urgent``, as ``notifier submit`` does; ``--main-queue``: to the main queue, behind the
   load). An urgent request's latency runs from
   just before its publish to the moment the sink has received the end of the notice carrying it
   (the sink keeps each message's arrival time and envelope sender, which names the notice; the
   store says which notice holds which request).
2. the bare peer, interleaved with (1) under the same load: the same publish of one message, with
   plain aio-pika, to a quorum queue of its own, consumed by a plain aio-pika consumer in this
   process that sends the bytes of a rendered one-request notice with aiosmtplib over an open
   connection to the same sink. It is the round trip of one message through the same broker and
   sink, with nothing stored: what notifier's urgent path adds to it is the figure's cost.

Percentiles are nearest-rank; an urgent request not delivered by the end counts as infinitely late.
Databases, queues and the sink are the script's own and removed afterwards.

Usage: .venv/bin/python bench/latency.py [--samples N] [--urgent-rate N] [--load N]
       [--processes N] [--warmup S]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import aiosmtplib
import asyncpg
from aio_pika.abc import AbstractIncomingMessage, DeliveryMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.dispatch import (
    PLATFORMS,
    Meter,
    environment,
    machine_line,
    other_daemons,
    request_body,
    sample_message,
)
from bench.intake import AMQP_URL, QUORUM, delete_queues
from bench.sink import SinkProcess
from notifier.intake.amqp import AmqpQueue, dead_letter_queue
from notifier.settings import load_settings

NOTICE_IN_SENDER = re.compile(r"TD-[a-z][a-z0-9_]*-\d{8}-\d{6,}")
TARGET_P99_MS = 250.0


def bodies(count: int, prefix: str, *, urgent: bool, seed: int) -> list[tuple[str, bytes]]:
    """``count`` requests of the acceptance dataset, ids ``<prefix>-<n>``, the platforms in turn."""
    rng = random.Random(seed)
    made: list[tuple[str, bytes]] = []
    for index in range(count):
        data = json.loads(request_body(rng, index, PLATFORMS[index % len(PLATFORMS)], keep_priority=False))
        data["request_id"] = f"{prefix}-{index}"
        data["priority"] = "urgent" if urgent else "normal"
        made.append((data["request_id"], json.dumps(data, ensure_ascii=False).encode()))
    return made


def cpu_seconds(processes: Sequence[asyncio.subprocess.Process]) -> float:
    """User and system CPU seconds the processes have used so far (Linux)."""
    total = 0
    for process in processes:
        with open(f"/proc/{process.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat(5))
    return total / os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest rank: the smallest value with at least ``share`` of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


# -- the load, the samples and the bare peer -------------------------------------------------------


async def normal_load(
    queue: AmqpQueue, name: str, load: Sequence[bytes], rate: float, stop: asyncio.Event
) -> int:
    """Publish ``load`` at ``rate`` a second, in ticks of 10 ms or more, until ``stop`` or the end;
    how many were published. Each tick's publish runs on its own, so a slow confirm delays no tick."""
    per_tick = max(1, round(rate * 0.02))
    tick = per_tick / rate
    loop = asyncio.get_running_loop()
    start = loop.time()
    in_flight: set[asyncio.Task[None]] = set()
    sent = 0
    while sent < len(load) and not stop.is_set():
        await asyncio.sleep(max(0.0, start + sent / per_tick * tick - loop.time()))
        task = asyncio.create_task(queue.publish(name, load[sent : sent + per_tick]))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
        sent += per_tick
    await asyncio.gather(*in_flight)
    return min(sent, len(load))


class BarePeer:
    """Consumes its own quorum queue with plain aio-pika and sends each message's notice bytes to
    the sink with aiosmtplib over one open connection, the envelope sender naming the message."""

    def __init__(self, queue: str, sink_port: int, data: bytes, to: list[str]) -> None:
        self.queue = queue
        self._port = sink_port
        self._data = data
        self._to = to
        self._lock = asyncio.Lock()
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._smtp: aiosmtplib.SMTP | None = None

    async def __aenter__(self) -> BarePeer:
        self._smtp = aiosmtplib.SMTP(
            hostname="127.0.0.1", port=self._port, start_tls=False, local_hostname="bench.local"
        )
        await self._smtp.connect()
        await self._smtp.ehlo()
        self._connection = await aio_pika.connect(AMQP_URL)
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=10)
        queue = await channel.declare_queue(self.queue, durable=True, arguments=QUORUM)
        await queue.consume(self._on_message)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._connection is not None:
            await self._connection.close()
        if self._smtp is not None:
            await self._smtp.quit()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        assert self._smtp is not None
        async with self._lock:
            await self._smtp.sendmail(f"{message.body.decode()}@bench.example", self._to, self._data)
        await message.ack()


@dataclass
class Samples:
    urgent_sent: dict[str, float] = field(default_factory=dict)  # request id -> monotonic publish time
    bare_sent: dict[str, float] = field(default_factory=dict)  # bare key -> monotonic publish time


async def sample(
    requests_queue: str, bare_queue: str, urgent: Sequence[tuple[str, bytes]], rate: float
) -> Samples:
    """Every 1/``rate`` s one urgent request to notifier, and half-way between two of them one
    message to the bare peer; both published the same way, on one channel with confirms."""
    samples = Samples()
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = channel.default_exchange
        loop = asyncio.get_running_loop()
        start = loop.time()
        for index, (request_id, body) in enumerate(urgent):
            await asyncio.sleep(max(0.0, start + index / rate - loop.time()))
            message = aio_pika.Message(body, delivery_mode=DeliveryMode.PERSISTENT)
            samples.urgent_sent[request_id] = time.monotonic()
            await exchange.publish(message, routing_key=requests_queue)
            await asyncio.sleep(max(0.0, start + (index + 0.5) / rate - loop.time()))
            key = f"bare-{index}"
            samples.bare_sent[key] = time.monotonic()
            await exchange.publish(
                aio_pika.Message(key.encode(), delivery_mode=DeliveryMode.PERSISTENT), routing_key=bare_queue
            )
    return samples


# -- reading the outcome -------------------------------------------------------------------------


async def notices_of(url: str, request_ids: Sequence[str]) -> dict[str, str]:
    """request id -> notice id, for those in a notice (none before the daemons made the schema)."""
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        if await connection.fetchval("SELECT to_regclass('notices')") is None:
            return {}
        rows = await connection.fetch(
            "SELECT request_id, notice_id FROM requests WHERE request_id = ANY($1) AND notice_id IS NOT NULL",
            list(request_ids),
        )
    finally:
        await connection.close()
    return {row["request_id"]: row["notice_id"] for row in rows}


async def load_figures(url: str) -> dict[str, int]:
    """Normal requests by state, and normal notices waiting to be sent (a backlog, if any)."""
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        states = await connection.fetch(
            "SELECT state, count(*) AS n FROM requests WHERE priority = 'normal' GROUP BY state"
        )
        waiting = await connection.fetchval(
            "SELECT count(*) FROM notices WHERE NOT urgent AND state IN ('queued', 'retrying', 'sending')"
        )
    finally:
        await connection.close()
    figures = {row["state"]: int(row["n"]) for row in states}
    figures["notices waiting"] = int(waiting)
    return figures


async def arrivals_until(
    sink: SinkProcess,
    url: str,
    request_ids: Sequence[str],
    bare_keys: Sequence[str],
    arrived: dict[str, float],
    *,
    within: float,
) -> dict[str, str]:
    """Collect the sink's arrivals into ``arrived`` (the first per notice id or bare key) until the
    notice of every request and every bare message has arrived, or ``within`` seconds have passed;
    the key each sample arrives under (request id -> notice id, bare key -> itself)."""
    deadline = time.monotonic() + within
    while True:
        key_of = await notices_of(url, request_ids) | {k: k for k in bare_keys}
        for at, sender in await sink.arrivals():
            found = NOTICE_IN_SENDER.search(sender)
            arrived.setdefault(found.group(0) if found else sender.partition("@")[0], at)
        done = all(key_of.get(k) in arrived for k in (*request_ids, *bare_keys))
        if done or time.monotonic() > deadline:
            return key_of
        await asyncio.sleep(0.2)


def latencies(sent: dict[str, float], key_of: dict[str, str], arrived: dict[str, float]) -> list[float]:
    """Milliseconds from publish to arrival per sample; infinity for one that never arrived."""
    out: list[float] = []
    for sample_id, at in sent.items():
        key = key_of.get(sample_id)
        out.append((arrived[key] - at) * 1000 if key in arrived else math.inf)
    return out


def row(name: str, values: Sequence[float]) -> str:
    lost = sum(1 for v in values if v == math.inf)
    figures = "".join(f"{percentile(values, p):9.1f}" for p in (0.5, 0.9, 0.99)) + f"{max(values):9.1f}"
    return f"   {name:<44}{figures}{len(values):9,}" + (f"  ({lost} never arrived)" if lost else "")


# -- main -------------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> None:
    samples_n = args.samples
    duration = samples_n / args.urgent_rate
    load = [b for _, b in bodies(int(args.load * (args.warmup + duration + 5)), "load", urgent=False, seed=5)]
    urgent = bodies(samples_n, "urgent", urgent=True, seed=6)
    warm = bodies(1, "warmup", urgent=True, seed=7)
    bare_queue = f"bench.latency.bare.{uuid.uuid4().hex[:8]}"
    print(
        f"\nurgent latency: {args.processes} daemon process{'es' if args.processes > 1 else ''}, RabbitMQ -> "
        f"PostgreSQL -> SMTP sink; normal load {args.load:,.0f} requests/s over {len(PLATFORMS)} email "
        f"platforms (notices of 50, max_wait 1 s); {samples_n:,} urgent requests at {args.urgent_rate:g}/s "
        f"to {'the main queue' if args.main_queue else 'the urgent queue'}"
    )
    async with SinkProcess(record=True) as sink, environment("postgresql") as env:
        with tempfile.TemporaryDirectory() as folder:
            config = env.config(Path(folder), sink.port, max_wait="1s")
            settings = load_settings(config, environ={})
            data, _, to = sample_message(settings, [warm[0][1]])
            urgent_queue = env.requests_queue if args.main_queue else settings.queue.urgent_requests
            # Declared (as the daemons declare them) before anything is published to them.
            publisher = AmqpQueue(AMQP_URL, queues=[env.requests_queue, settings.queue.urgent_requests])
            await publisher.connect()
            try:
                daemons = other_daemons(config, args.processes, logs=args.daemon_logs, profiles=args.profile)
                async with daemons as children, BarePeer(bare_queue, sink.port, data, to):
                    arrived: dict[str, float] = {}
                    # The daemons are up once a first urgent request has gone through.
                    first = await sample(urgent_queue, bare_queue, warm, 1.0)
                    await arrivals_until(
                        sink,
                        env.store_url,
                        list(first.urgent_sent),
                        list(first.bare_sent),
                        arrived,
                        within=60,
                    )
                    stop = asyncio.Event()
                    started = time.perf_counter()
                    flowing = asyncio.create_task(
                        normal_load(publisher, env.requests_queue, load, args.load, stop)
                    )
                    try:
                        await asyncio.sleep(args.warmup)
                        meter = Meter(sink)
                        await meter.prepare()
                        daemon_cpu = cpu_seconds(children)
                        meter.start()
                        samples = await sample(urgent_queue, bare_queue, urgent, args.urgent_rate)
                        cost = await meter.stop()
                        daemon_cpu = cpu_seconds(children) - daemon_cpu
                        figures = await load_figures(env.store_url)
                    finally:
                        stop.set()
                        published = await flowing  # raises what stopped the load, if anything did
                    flowed = time.perf_counter() - started
                    key_of = await arrivals_until(
                        sink,
                        env.store_url,
                        list(samples.urgent_sent),
                        list(samples.bare_sent),
                        arrived,
                        within=30,
                    )
            finally:
                await publisher.close()
                await delete_queues(
                    bare_queue,
                    settings.queue.urgent_requests,
                    dead_letter_queue(settings.queue.urgent_requests),
                )
    ours = latencies(samples.urgent_sent, key_of, arrived)
    bare = latencies(samples.bare_sent, key_of, arrived)
    sizes = Counter(key_of[r] for r in samples.urgent_sent if r in key_of)
    print(f"   normal load: {published:,} published in {flowed:.1f} s ({published / flowed:,.0f}/s)")
    print(
        f"   CPU while sampling ({cost.seconds:.0f} s): daemons {daemon_cpu / cost.seconds:.0%} of a core "
        f"together, this process {cost.cpu_seconds / cost.seconds:.0%}, sink "
        f"{cost.sink.cpu_seconds / cost.seconds:.0%}; the machine {cost.machine_busy:.1f} of "
        f"{os.cpu_count()} cores busy"
    )
    print(
        "   normal requests when sampling ended: "
        + ", ".join(f"{state} {count:,}" for state, count in sorted(figures.items()))
    )
    print(
        f"   urgent notices: {len(sizes):,} for {sum(sizes.values()):,} urgent requests "
        f"({sum(sizes.values()) / max(1, len(sizes)):.2f} a notice, at most {max(sizes.values(), default=0)})"
    )
    print(f"   {'queue -> delivered, ms':<44}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}{'samples':>9}")
    print(row("bare peer: aio-pika publish/consume, aiosmtplib", bare))
    print(row("notifier: urgent request", ours))
    p50, p99 = percentile(ours, 0.5), percentile(ours, 0.99)
    bare50, bare99 = percentile(bare, 0.5), percentile(bare, 0.99)
    print(f"   ratio to bare: p50 {p50 / bare50:.1f} ×, p99 {p99 / bare99:.1f} ×")
    met = p99 <= TARGET_P99_MS and len(ours) >= 1000
    print(
        f"   SPEC §11: p99 ≤ {TARGET_P99_MS:.0f} ms over ≥ 1,000 samples: {'met' if met else 'not met'} "
        f"(p99 {p99:.1f} ms, {len(ours):,} samples)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=1000, help="urgent requests measured")
    parser.add_argument("--urgent-rate", type=float, default=12.0, help="urgent requests a second")
    parser.add_argument("--load", type=float, default=500.0, help="normal requests a second")
    parser.add_argument("--processes", type=int, default=2, help="daemon processes")
    parser.add_argument(
        "--main-queue", action="store_true", help="publish urgent requests to the main queue, behind the load"
    )
    parser.add_argument("--daemon-logs", type=Path, help="write the daemons' logs to DIR/daemon-<n>.log")
    parser.add_argument(
        "--profile", type=Path, help="run the daemons under cProfile, stats to DIR/daemon-<n>.prof"
    )
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds of load before sampling")
    args = parser.parse_args()
    print(f"machine: {machine_line()}")
    await run(args)
    print(f"\nmachine at the end: {machine_line()}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(main())
