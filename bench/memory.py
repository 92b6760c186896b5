"""Daemon memory behind a large backlog (SPEC §11: peak RSS ≤ 200 MB with 1,000,000 open requests).

Creates a PostgreSQL database of its own and loads it with the backlog of ``bench/sla.py`` (its own
planning and loading code): 20,000 delivered notices of 50 open requests each (1,000,000 open
requests), three in four acknowledged and not removed, the rest silent, each notice's SLA timer at
its next decision, and among them notices whose reminders and breaches fall due during the run.

Then it runs the real daemon, ``python -m notifier run`` as operators run it, on that store with
RabbitMQ and 5 email platforms sending to the benchmarks' SMTP sink (:mod:`bench.sink`), for
``--seconds``, while this process publishes ``--load`` new requests a second: intake, batching,
dispatch and the SLA monitor's timers all work while the million open requests sit in the store.
The daemon's RSS is sampled every half second; its peak is the kernel's high-water mark
(``VmHWM`` in ``/proc/<pid>/status``, which starts afresh at exec, so the launching process's size
is not counted).

The bare peer, measured in the same run: a bare interpreter importing what the daemon's entry point
imports (``notifier.cli``, and through it the composition root, every service and adapter, and
their libraries), then nothing else: the floor the daemon's own code costs before it holds a
single request.

Usage: .venv/bin/python bench/memory.py [--notices N] [--seconds S] [--load N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.dispatch import environment, machine_line, other_daemons
from bench.intake import AMQP_URL
from bench.latency import bodies, normal_load
from bench.sink import SinkProcess
from bench.sla import LEAD, PER_NOTICE, load, notice_ids, plan
from notifier.intake.amqp import AmqpQueue
from notifier.logging import configure_logging
from notifier.store import create_store

RSS_TARGET_MB = 200
MIB = 1024 * 1024

# The bare peer: the daemon's entry point's imports, then its own memory figures (kB, as Linux
# reports them).
_BARE = """
import notifier.cli, notifier.app
fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(int(fields["VmHWM"].split()[0]), int(fields["VmRSS"].split()[0]))
"""


def children(pid: int) -> list[tuple[str, int]]:
    """The daemon's helper processes (urgent lane, composing workers, multiprocessing's resource
    tracker), by what they run, as (name, pid)."""
    found: list[tuple[str, int]] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            command = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            kind = "resource tracker" if "resource_tracker" in command else "urgent lane or composing worker"
            found.append((f"{kind} (pid {child})", int(child)))
    return found


def memory_kib(pid: int) -> tuple[int, int]:
    """(peak RSS, current RSS) of a process in KiB (``VmHWM``, ``VmRSS``)."""
    with open(f"/proc/{pid}/status") as status:
        fields = dict(line.split(":", 1) for line in status if ":" in line)
    return int(fields["VmHWM"].split()[0]), int(fields["VmRSS"].split()[0])


async def seed(url: str, notices: int, seconds: int) -> datetime:
    """The schema (through the migrations), then ``bench/sla.py``'s backlog, the notices whose
    decisions fall due during the run loaded last, due from a few seconds after; when that is."""
    store = await create_store(url)
    await store.close()
    rng = random.Random(11)
    guess = datetime.now(UTC) + timedelta(minutes=3)
    planned = plan(notices, guess, seconds, rng)
    ids = notice_ids(planned)
    scheduled = 4 * seconds
    await load(url, planned[scheduled:], ids[scheduled:], scheduled, rng)
    start = datetime.now(UTC) + LEAD
    await load(url, plan(scheduled, start, seconds, rng)[:scheduled], ids[:scheduled], 0, rng)
    return start


async def store_figures(url: str, since: datetime) -> tuple[int, int, int]:
    """Open requests (delivered or acknowledged, not resolved), requests taken in since the seed,
    and SLA decisions made since ``since``."""
    connection = await asyncpg.connect(url)
    try:
        open_requests = await connection.fetchval(
            "SELECT count(*) FROM requests WHERE state IN ('delivered', 'acknowledged')"
        )
        taken_in = await connection.fetchval("SELECT count(*) FROM requests WHERE request_id LIKE 'load-%'")
        decided = await connection.fetchval(
            "SELECT count(*) FROM sla_decisions WHERE decided_at >= $1", since
        )
    finally:
        await connection.close()
    return int(open_requests), int(taken_in), int(decided)


def bare_interpreter() -> tuple[int, int]:
    """(peak, current) RSS in KiB of a bare interpreter with the daemon's imports."""
    result = subprocess.run([sys.executable, "-c", _BARE], capture_output=True, check=True, text=True)
    peak, current = result.stdout.split()
    return int(peak), int(current)


async def run(args: argparse.Namespace) -> None:
    load_bodies = [b for _, b in bodies(int(args.load * (args.seconds + 5)), "load", urgent=False, seed=5)]
    async with SinkProcess() as sink, environment("postgresql") as env:
        t0 = time.perf_counter()
        start = await seed(env.store_url, args.notices, args.seconds)
        print(
            f"\nseeded {args.notices:,} notices, {args.notices * PER_NOTICE:,} open requests over 5 "
            f"platforms, in {time.perf_counter() - t0:.0f} s (bench/sla.py's backlog)"
        )
        with tempfile.TemporaryDirectory() as folder:
            config = env.config(Path(folder), sink.port, max_wait="1s")
            publisher = AmqpQueue(AMQP_URL, queues=[env.requests_queue])
            await publisher.connect()
            try:
                async with other_daemons(config, 1) as (daemon,):
                    stop = asyncio.Event()
                    flowing = asyncio.create_task(
                        normal_load(publisher, env.requests_queue, load_bodies, args.load, stop)
                    )
                    samples: list[int] = []
                    ends = time.monotonic() + args.seconds
                    while time.monotonic() < ends:
                        samples.append(memory_kib(daemon.pid)[1])
                        await asyncio.sleep(0.5)
                    stop.set()
                    published = await flowing
                    peak, current = memory_kib(daemon.pid)
                    helpers = [(name, memory_kib(child)[0]) for name, child in children(daemon.pid)]
                    open_requests, taken_in, decided = await store_figures(env.store_url, start - LEAD)
            finally:
                await publisher.close()
    bare_peak, _ = bare_interpreter()
    print(
        f"daemon (python -m notifier run) for {args.seconds} s: {published:,} new requests published "
        f"({args.load:g}/s), {taken_in:,} taken in; {decided:,} SLA decisions made on its timers; "
        f"{open_requests:,} requests open in the store at the end"
    )
    print(
        f"   the daemon's RSS, sampled every 0.5 s: {samples[len(samples) // 10] / 1024:.1f} MiB after "
        f"{len(samples) // 20} s, {current / 1024:.1f} MiB at the end, at most {max(samples) / 1024:.1f} MiB"
    )
    print(f"   {'':<58}{'peak RSS':>12}")
    print(f"   {'bare interpreter, the daemon entry point imports':<58}{bare_peak / 1024:9.1f} MiB")
    print(f"   {f'notifier daemon, {open_requests:,} open requests in PostgreSQL':<58}{peak / 1024:9.1f} MiB")
    print(
        f"   daemon / bare: {peak / bare_peak:.2f} × ({(peak - bare_peak) / 1024:.0f} MiB over the imports)"
    )
    for name, helper_peak in helpers:
        print(f"   {f'its helper process: {name}':<58}{helper_peak / 1024:9.1f} MiB")
    peak_mb = peak * 1024 / 1e6
    verdict = "met" if peak_mb <= RSS_TARGET_MB and open_requests >= 1_000_000 else "not met"
    print(f"   SPEC §11: peak RSS ≤ {RSS_TARGET_MB} MB with 1,000,000 open: {verdict} ({peak_mb:.0f} MB)")


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--notices", type=int, default=20_000, help="notices of 50 open requests each")
    parser.add_argument("--seconds", type=int, default=60, help="seconds the daemon runs")
    parser.add_argument("--load", type=float, default=200.0, help="new requests a second while it runs")
    args = parser.parse_args()
    print(f"machine: {machine_line()}")
    with open(os.devnull, "w") as devnull:  # noqa: ASYNC230 - opened once, before anything runs
        configure_logging(json=True, level="info", stream=devnull)
        await run(args)
    print(f"\nmachine at the end: {machine_line()}")


if __name__ == "__main__":
    asyncio.run(main())
