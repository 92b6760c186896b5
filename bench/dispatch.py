"""Dispatch throughput: notices/s to a local SMTP sink, and 100,000 requests from queue to delivered.

Measures, in one run on this machine:

1. a bare aiosmtplib loop: 4 connections (SmtpTransport's pool size), each sending message after
   message, every one the bytes of a real rendered 50-request notice
   (``flatten(build_notice_email(...))``), as many messages as (2) sends notices;
2. notifier's dispatch through the daemon (:class:`notifier.app.Daemon` in this process, with its
   real store, channels, SMTP pool, and JSON logging written to /dev/null): the requests are stored
   as ``pending`` first, 50 per notice, then timed from the daemon's start until every notice is
   ``delivered``; and its ratio to (1);
3. 100,000 requests over 5 email platforms (batches of 50, max_wait 1 s), published to RabbitMQ
   first, then timed from the daemon's start until every request is ``delivered`` (PostgreSQL).
   With ``--processes N`` (N > 1), N - 1 more daemons run beside it as operators run them, each a
   ``python -m notifier run`` process on the same configuration, started once the clock runs;
   completion is then seen by polling the store's notices (a sum over a few thousand rows, five
   times a second), since the other processes' deliveries pass no wrapper of ours. Before it, the
   Celery peer (:mod:`bench.celery_peer`) sends the first ``--celery`` of the same requests to the
   same sink, one task and one email each, and the figure is notifier's rate over the peer's.

Both senders talk to the same sink (:mod:`bench.sink`), a minimal SMTP server in a child process, so
that it runs on the other core; its CPU use is printed to show it is not what limits the figures.
Completion is seen by counting, in a pass-through wrapper of the daemon's own store, the deliveries
it records (polling the store would compete with what is measured); the store is then asked once
to confirm. Databases, queues and the sink process are the script's own and removed afterwards.

Usage: .venv/bin/python bench/dispatch.py [--notices N] [--requests N] [--rounds N]
       [--processes N] [--celery N] [--store postgresql|sqlite] [--profile FILE] [--evidence on|off]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import os
import random
import secrets
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import aiosmtplib
import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.celery_peer import celery_rate
from bench.cpu import ProgramCpu, per_message_line
from bench.intake import AMQP_URL, PG_ADMIN, delete_queues
from bench.sink import SinkProcess, SinkStats
from notifier import app, opening
from notifier.channels.email import build_notice_email, flatten, message_id_for
from notifier.channels.rendering import Renderer
from notifier.domain.models import IntakeOutcome, TakedownRequest
from notifier.domain.notices import MessageKind, Notice, NoticeContent, notice_id
from notifier.domain.validation import Vocabulary, parse_request
from notifier.intake.amqp import AmqpQueue, dead_letter_queue
from notifier.logging import configure_logging
from notifier.ports import Incoming, Store
from notifier.settings import Settings, load_settings
from notifier.store import create_store
from tests.acceptance.dataset import PLATFORMS as DATASET_PLATFORMS
from tests.acceptance.dataset import valid_request
from tests.acceptance.harness import write_config

PLATFORMS = ("telegram", "videohost", "clipshare", "picboard", "streamhub")
PER_NOTICE = 50
POOL = 4  # SmtpTransport's default pool_size, which the daemon's Channels use
MB = 1e6


# -- requests ---------------------------------------------------------------------------------------


def request_body(rng: random.Random, index: int, platform: str, *, keep_priority: bool) -> bytes:
    """Request ``index`` of the acceptance dataset, moved to ``platform`` (its URLs too).

    ``keep_priority`` keeps the dataset's one urgent request in 97; otherwise all are normal, so that
    every notice is closed full, with exactly 50 requests.
    """
    data = valid_request(rng, index)
    old = DATASET_PLATFORMS[index % len(DATASET_PLATFORMS)]
    data["platform"] = platform
    data["urls"] = [u.replace(f"//{old}.", f"//{platform}.", 1) for u in cast(list[str], data["urls"])]
    if not keep_priority:
        data["priority"] = "normal"
    return json.dumps(data, ensure_ascii=False).encode()


def notice_bodies(notices: int) -> list[bytes]:
    """``notices`` times 50 requests, each block of 50 for one platform, the platforms in turn."""
    rng = random.Random(7)
    return [
        request_body(rng, i, PLATFORMS[(i // PER_NOTICE) % len(PLATFORMS)], keep_priority=False)
        for i in range(notices * PER_NOTICE)
    ]


def bulk_bodies(count: int) -> list[bytes]:
    rng = random.Random(11)
    return [request_body(rng, i, PLATFORMS[i % len(PLATFORMS)], keep_priority=True) for i in range(count)]


# -- configuration and environment ------------------------------------------------------------------

# The evidence record, as --evidence says: on (the default, as a deployment runs it, with a key made
# for the run) or off. The daemon processes of (3) inherit it from this process's environment.
EVIDENCE_ENV: dict[str, str] = {}


def evidence_environment(mode: str) -> dict[str, str]:
    if mode == "off":
        return {"NOTIFIER_EVIDENCE__ENABLED": "false"}
    return {"NOTIFIER_EVIDENCE_KEY": secrets.token_hex(32)}


def platforms_toml(max_wait: str) -> str:
    return "\n".join(
        f'[platforms.{p}]\nname = "{p.title()}"\nchannel = "email"\n'
        f'[platforms.{p}.email]\nto = ["abuse@{p}.example"]\n'
        f'[platforms.{p}.batch]\nmax_items = {PER_NOTICE}\nmax_wait = "{max_wait}"\n'
        for p in PLATFORMS
    )


@dataclass(frozen=True, slots=True)
class Environment:
    store_url: str
    queue_url: str
    requests_queue: str
    acks_queue: str

    def settings(self, folder: Path, smtp_port: int, *, max_wait: str) -> Settings:
        return load_settings(self.config(folder, smtp_port, max_wait=max_wait), environ=EVIDENCE_ENV)

    def config(self, folder: Path, smtp_port: int, *, max_wait: str) -> Path:
        return write_config(
            folder,
            store_url=self.store_url,
            queue_url=self.queue_url,
            requests_queue=self.requests_queue,
            acks_queue=self.acks_queue,
            http_listen="",
            extra=f'[smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\nstarttls = "off"\n',
            platforms=platforms_toml(max_wait),
        )


@contextlib.asynccontextmanager
async def environment(kind: str) -> AsyncIterator[Environment]:
    """A fresh store (a PostgreSQL database of its own, or a SQLite file) and queue names; removed
    afterwards. PostgreSQL comes with RabbitMQ (queues of their own), SQLite with the local queue."""
    suffix = uuid.uuid4().hex[:8]
    requests_queue, acks_queue = f"bench.dispatch.{suffix}", f"bench.dispatch.acks.{suffix}"
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite:///{Path(folder) / 'notifier.db'}"
            yield Environment(url, url, requests_queue, acks_queue)
        return
    database = f"notifier_bench_{suffix}"
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
        url = PG_ADMIN.rsplit("/", 1)[0] + f"/{database}"
        yield Environment(url, AMQP_URL, requests_queue, acks_queue)
    finally:
        queues = (requests_queue, acks_queue)
        await delete_queues(*queues, *map(dead_letter_queue, queues))
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()


# -- the daemon, and seeing it finish ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Timeline:
    """Seconds from the daemon's start (NaN: did not happen)."""

    stored: float  # intake had stored every request expected
    formed: float  # the last notice was formed
    first_delivered: float

    def line(self) -> str:
        stored = f"all requests stored at {self.stored:.1f} s, " if self.stored == self.stored else ""
        return (
            f"{stored}last notice formed at {self.formed:.1f} s, "
            f"first delivered at {self.first_delivered:.2f} s"
        )


class CountingStore:
    """The daemon's real store, counting what it stores, forms and records as delivered, and when."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._sizes: dict[str, int] = {}
        self.notices = 0
        self.requests = 0
        self.expected = 0  # requests intake is to store (0: not watched)
        self._stored = 0
        self._started = self._stored_at = self._formed_at = self._delivered_at = 0.0
        self._changed = asyncio.Event()

    def start_clock(self) -> None:
        self._started = time.perf_counter()

    def timeline(self) -> Timeline:
        def since(at: float) -> float:
            return at - self._started if at else float("nan")

        return Timeline(since(self._stored_at), since(self._formed_at), since(self._delivered_at))

    async def ingest(self, incoming: Any, dead_letters: Any, *, now: datetime) -> list[IntakeOutcome]:
        outcomes = await self._store.ingest(incoming, dead_letters, now=now)
        self._stored += sum(1 for o in outcomes if o is IntakeOutcome.ACCEPTED)
        if self.expected and self._stored >= self.expected and not self._stored_at:
            self._stored_at = time.perf_counter()
        return outcomes

    async def form_notice(self, platform: str, **kwargs: Any) -> Notice | None:
        notice = await self._store.form_notice(platform, **kwargs)
        if notice is not None:
            self._sizes[notice.notice_id] = len(notice.request_ids)
            self._formed_at = time.perf_counter()
        return notice

    async def form_claimed(self, platform: str, **kwargs: Any) -> tuple[Notice, list[Any]] | None:
        # Urgent requests' notices, formed already claimed by the urgent path.
        formed = await self._store.form_claimed(platform, **kwargs)
        if formed is not None:
            self._sizes[formed[0].notice_id] = len(formed[0].request_ids)
            self._formed_at = time.perf_counter()
        return formed

    async def record_delivery(self, notice_id: str, **kwargs: Any) -> bool:
        recorded = await self._store.record_delivery(notice_id, **kwargs)
        if recorded:
            self._delivered_at = self._delivered_at or time.perf_counter()
            self.notices += 1
            self.requests += self._sizes.pop(notice_id, 0)
            self._changed.set()
        return recorded

    async def until(self, reached: Callable[[], bool], *, within: float) -> None:
        async with asyncio.timeout(within):
            while not reached():
                self._changed.clear()
                await self._changed.wait()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@contextlib.asynccontextmanager
async def running_daemon(settings: Settings) -> AsyncIterator[CountingStore]:
    """Start the daemon with its store wrapped in a :class:`CountingStore`; stop it on exit.

    The daemon opens its own store through ``notifier.app.open_store``, the composition root's one
    seam for it; the wrapper goes in there for the start only. Nothing is awaited between the start
    and the ``yield``, so the caller's clock starts before the daemon's tasks first run."""
    opened: list[CountingStore] = []
    original = app.open_store

    async def open_counting(
        settings: Settings, *, existing: bool = False, deferred_evidence: bool = False
    ) -> Store:
        counting = CountingStore(
            await original(settings, existing=existing, deferred_evidence=deferred_evidence)
        )
        opened.append(counting)
        return cast(Store, counting)

    app.open_store = open_counting
    try:
        daemon = app.Daemon(settings)
        await daemon.start()
    finally:
        app.open_store = original
    try:
        yield opened[0]
    finally:
        daemon.stop()
        await daemon.wait()


async def store_pending(url: str, bodies: Sequence[bytes], vocabulary: Vocabulary) -> None:
    """Store ``bodies`` as pending requests, as intake would have (not timed)."""
    store = await create_store(url)
    try:
        now = datetime.now(UTC)
        for start in range(0, len(bodies), 1000):
            batch = [
                Incoming(request=parse_request(body, vocabulary), source="bench")
                for body in bodies[start : start + 1000]
            ]
            await store.ingest(batch, [], now=now)
    finally:
        await store.close()


async def all_delivered(store: CountingStore, requests: int) -> None:
    counts = await store.status_counts()
    delivered = sum(states.get("delivered", 0) for states in counts.requests.values())
    if delivered != requests:
        raise RuntimeError(f"the store has {delivered} requests delivered, {requests} expected: {counts}")


# -- measurements -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Run:
    seconds: float
    sink: SinkStats
    cpu_seconds: float  # this process's (the daemon's or the bare loop's)
    machine_busy: float  # cores' worth of CPU the whole machine used
    programs: dict[str, float]  # CPU seconds by program (see bench.cpu)

    def programs_line(self) -> str:
        return per_message_line(self.programs, self.sink.messages)

    def line(self) -> str:
        per_message = self.cpu_seconds / max(1, self.sink.messages) * 1000
        return (
            f"{self.sink.bytes / self.seconds / MB:5.1f} MB/s; CPU: this process "
            f"{self.cpu_seconds / self.seconds:4.0%} ({per_message:.1f} ms a message), "
            f"sink {self.sink.cpu_seconds / self.seconds:4.0%}, "
            f"machine {self.machine_busy:.1f} of {os.cpu_count()} cores"
        )


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores, from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


class Meter:
    """Times one run and what it cost: ``await prepare()``, ``start()``, the work, ``await stop()``.

    The sink is asked for its counters before the clock starts and after it stops, so that the
    question itself is never part of the time."""

    def __init__(self, sink: SinkProcess) -> None:
        self._sink = sink
        self._before = SinkStats(0, 0, 0.0)
        self._started = self._cpu = 0.0
        self._ticks = (0, 0)
        self._programs = ProgramCpu(sink_pid=sink.pid)

    async def prepare(self) -> None:
        self._before = await self._sink.stats()

    def start(self) -> None:
        self._cpu, self._ticks = time.process_time(), _machine_ticks()
        self._programs.start()
        self._started = time.perf_counter()

    async def stop(self) -> Run:
        seconds = time.perf_counter() - self._started
        cpu = time.process_time() - self._cpu
        programs = self._programs.stop()
        busy, total = _machine_ticks()
        cores = (busy - self._ticks[0]) / max(1, total - self._ticks[1]) * (os.cpu_count() or 1)
        return Run(seconds, await self._sink.stats() - self._before, cpu, cores, programs)


async def bare_smtp(sink: SinkProcess, data: bytes, sender: str, to: list[str], count: int) -> Run:
    """``count`` sends of ``data`` over POOL connections, opened as part of the timed work."""

    async def connection(share: int) -> None:
        smtp = aiosmtplib.SMTP(
            hostname="127.0.0.1", port=sink.port, start_tls=False, local_hostname="bench.local"
        )
        await smtp.connect()
        await smtp.ehlo()
        for _ in range(share):
            await smtp.sendmail(sender, to, data)
        await smtp.quit()

    meter = Meter(sink)
    await meter.prepare()
    meter.start()
    await asyncio.gather(*(connection(count // POOL + (i < count % POOL)) for i in range(POOL)))
    return await meter.stop()


async def notifier_dispatch(
    sink: SinkProcess, kind: str, bodies: Sequence[bytes], notices: int, profile: Path | None
) -> tuple[Run, Timeline]:
    """Store the requests as pending, then time the daemon until every notice is delivered."""
    async with environment(kind) as env:
        with tempfile.TemporaryDirectory() as folder:
            settings = env.settings(Path(folder), sink.port, max_wait="10m")
            await store_pending(env.store_url, bodies, opening.vocabulary(settings))
            profiler = cProfile.Profile() if profile is not None else None
            meter = Meter(sink)
            await meter.prepare()
            async with running_daemon(settings) as store:
                meter.start()
                store.start_clock()
                if profiler is not None:
                    profiler.enable()
                await store.until(lambda: store.notices >= notices, within=60 + notices / 5)
                run = await meter.stop()
                if profiler is not None and profile is not None:
                    profiler.disable()
                    profiler.dump_stats(profile)
                await all_delivered(store, len(bodies))
                timeline = store.timeline()
    return run, timeline


@dataclass(frozen=True, slots=True)
class Bulk:
    published: float  # seconds to publish, before the daemon starts (not part of the figure)
    run: Run
    timeline: Timeline
    notices: int


async def notifier_bulk(sink: SinkProcess, bodies: Sequence[bytes], processes: int) -> Bulk:
    """Publish ``bodies`` to RabbitMQ, then time ``processes`` daemons until every request is
    delivered: this one's in-process daemon, and ``processes - 1`` more as child processes."""
    async with environment("postgresql") as env:
        with tempfile.TemporaryDirectory() as folder:
            config = env.config(Path(folder), sink.port, max_wait="1s")
            settings = load_settings(config, environ=EVIDENCE_ENV)
            publisher = AmqpQueue(AMQP_URL, queues=[env.requests_queue])
            started = time.perf_counter()
            try:
                await publisher.connect()
                await publisher.publish(env.requests_queue, bodies)
            finally:
                await publisher.close()
            published = time.perf_counter() - started
            meter = Meter(sink)
            await meter.prepare()
            async with running_daemon(settings) as store:
                store.expected = len(bodies)
                meter.start()
                store.start_clock()
                if processes == 1 and settings.runtime.urgent_process is False:
                    await store.until(lambda: store.requests >= len(bodies), within=600)
                    run = await meter.stop()
                elif processes == 1:
                    # The daemon's urgent lane, a process of its own, delivers the urgent requests:
                    # the wrapper sees only the rest, so completion is read from the store.
                    await delivered_in_store(env.store_url, len(bodies), within=600)
                    run = await meter.stop()
                else:
                    async with other_daemons(config, processes - 1):
                        await delivered_in_store(env.store_url, len(bodies), within=600)
                        # Before the other daemons stop: neither their stopping nor the loss of
                        # their processes' CPU counters is part of the figure.
                        run = await meter.stop()
                await all_delivered(store, len(bodies))
                return Bulk(published, run, store.timeline(), await delivered_notices(env.store_url))


@contextlib.asynccontextmanager
async def other_daemons(
    config: Path, count: int, *, logs: Path | None = None, profiles: Path | None = None
) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """``count`` more daemons on ``config``, each ``python -m notifier run``, logs to /dev/null (or
    to ``<logs>/daemon-<n>.log``), under cProfile with ``profiles`` (stats to
    ``<profiles>/daemon-<n>.prof``); stopped with SIGTERM afterwards."""
    if not EVIDENCE_ENV:  # one key for every daemon of the run: `notifier run` refuses to start without
        EVIDENCE_ENV.update(evidence_environment("on"))
    for folder in (logs, profiles):
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as files:
        outputs = [
            files.enter_context(open(logs / f"daemon-{n}.log", "wb")) if logs is not None else None  # noqa: ASYNC230
            for n in range(count)
        ]
        children = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                *(["-m", "cProfile", "-o", str(profiles / f"daemon-{n}.prof")] if profiles else []),
                "-m",
                "notifier",
                "run",
                "-c",
                str(config),
                stdout=output or asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.STDOUT if output else asyncio.subprocess.DEVNULL,
                env=os.environ | EVIDENCE_ENV,
            )
            for n, output in enumerate(outputs)
        ]
        async with _stopped_after(children):
            yield children


@contextlib.asynccontextmanager
async def _stopped_after(children: Sequence[asyncio.subprocess.Process]) -> AsyncIterator[None]:
    """Checks the daemons ran to the end, then stops them with SIGTERM."""
    try:
        yield
        for child in children:
            if child.returncode is not None:
                raise RuntimeError(f"a daemon process exited early with {child.returncode}")
    finally:
        for child in children:
            if child.returncode is None:
                child.terminate()
        for child in children:
            await child.wait()


_DELIVERED_REQUESTS = "SELECT coalesce(sum(request_count), 0) FROM notices WHERE state = 'delivered'"


async def delivered_in_store(url: str, requests: int, *, within: float) -> None:
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        async with asyncio.timeout(within):
            # Other processes deliver: only the store sees it, so it is polled.
            while await connection.fetchval(_DELIVERED_REQUESTS) < requests:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
    finally:
        await connection.close()


async def delivered_notices(url: str) -> int:
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        count: int = await connection.fetchval("SELECT count(*) FROM notices WHERE state = 'delivered'")
        return count
    finally:
        await connection.close()


def sample_message(settings: Settings, bodies: Sequence[bytes]) -> tuple[bytes, str, list[str]]:
    """The bytes of one real 50-request notice to the first platform, its envelope sender and
    recipients, built the way EmailChannel builds them."""
    platform_id = PLATFORMS[0]
    platform = settings.platforms[platform_id]
    assert platform.email is not None
    vocabulary = opening.vocabulary(settings)
    requests: list[TakedownRequest] = [parse_request(b, vocabulary) for b in bodies[:PER_NOTICE]]
    now = datetime.now(UTC)
    nid = notice_id(platform_id, now, 1)
    content = NoticeContent(
        notice_id=nid,
        platform=platform_id,
        platform_name=platform.name,
        language=platform.language,
        created_at=now,
        ack_by=now + settings.sla.ack_within,
        remove_by=now + settings.sla.removal_within,
        authority=opening.authority(settings),
        requests=tuple(requests),
        category_labels=settings.category_labels,
    )
    message = build_notice_email(
        content,
        renderer=Renderer(settings.templates.folder),
        from_addr=settings.smtp.from_,
        reply_to=settings.authority.reply_to,
        to=platform.email.to,
        cc=platform.email.cc,
        message_id=message_id_for(nid, MessageKind.NOTICE, settings.authority.email),
        in_reply_to=None,
        date=now,
    )
    return flatten(message), settings.smtp.envelope_from.replace("{notice_id}", nid), list(platform.email.to)


# -- main -------------------------------------------------------------------------------------------


def machine_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{os.cpu_count()} cores, load average {one:.2f} {five:.2f} {fifteen:.2f} (1, 5, 15 min)"


async def dispatch_figures(sink: SinkProcess, args: argparse.Namespace) -> None:
    bodies = notice_bodies(args.notices)
    with tempfile.TemporaryDirectory() as folder:
        unused = f"sqlite:///{folder}/unused.db"  # only parsed: the sample needs the settings, not a store
        settings = Environment(unused, unused, "r", "a").settings(Path(folder), sink.port, max_wait="10m")
        data, sender, to = sample_message(settings, bodies)
    print(
        f"\ndispatch: {args.notices:,} notices of {PER_NOTICE} requests over {len(PLATFORMS)} platforms, "
        f"{args.store} store, {POOL} SMTP connections; {args.rounds} alternating rounds, best of each"
    )
    print(f"   one rendered notice as sent: {len(data):,} bytes")
    bare_runs: list[Run] = []
    notifier_runs: list[tuple[Run, Timeline]] = []
    for round_ in range(args.rounds):
        bare_runs.append(await bare_smtp(sink, data, sender, to, args.notices))
        profile = args.profile if round_ == 0 else None
        notifier_runs.append(await notifier_dispatch(sink, args.store, bodies, args.notices, profile))
    bare = min(bare_runs, key=lambda r: r.seconds)
    ours, timeline = min(notifier_runs, key=lambda r: r[0].seconds)
    bare_rate, our_rate = args.notices / bare.seconds, args.notices / ours.seconds
    print(f"   bare aiosmtplib loop:     {bare_rate:6,.0f} messages/s, {bare.line()}")
    print(f"      {bare.programs_line()}")
    print(f"   notifier daemon -> sink:  {our_rate:6,.0f} notices/s,  {ours.line()}")
    print(f"      {ours.programs_line()}")
    ratio = our_rate / bare_rate
    print(
        f"   ratio to bare: {ratio:.0%}; notifier's notices averaged "
        f"{ours.sink.bytes / max(1, ours.sink.messages):,.0f} bytes; SPEC §11: ≥ 50 % of bare "
        f"({'met' if ratio >= 0.5 else 'not met'})"
    )
    print(f"   notifier: {timeline.line()}")
    if args.profile and args.rounds:
        print(f"   (round 1 ran under cProfile, stats in {args.profile}; the best round is reported)")


async def bulk_figures(sink: SinkProcess, args: argparse.Namespace) -> None:
    bodies = bulk_bodies(args.requests)
    print(
        f"\nqueue to delivered: {args.requests:,} requests over {len(PLATFORMS)} email platforms, "
        f"RabbitMQ -> PostgreSQL -> SMTP sink (max_items {PER_NOTICE}, max_wait 1 s), "
        f"{args.processes} daemon process{'es' if args.processes > 1 else ''}"
    )
    peer = None
    if args.celery:
        peer = await celery_rate(sink, bodies[: args.celery])
        print(
            f"   the Celery peer, same run: {peer:,.0f} requests/s over {args.celery:,} requests "
            "(one task and one smtplib email each, acks_late, prefetch 1, 2 worker processes)"
        )
    bulk = await notifier_bulk(sink, bodies, args.processes)
    run = bulk.run
    rate = args.requests / run.seconds
    print(f"   published in {bulk.published:.1f} s (before the daemon starts; not timed)")
    print(
        f"   queue to delivered: {run.seconds:6.1f} s  {rate:8,.0f} requests/s, {bulk.notices:,} notices "
        f"({bulk.notices / run.seconds:,.0f}/s)"
    )
    mine = " (this process's daemon)" if args.processes > 1 else ""
    print(f"   {bulk.timeline.line()}{mine}")
    print(f"   sent {run.line()}")
    print(f"      {run.programs_line()}")
    if args.processes > 1:
        print("   (CPU of 'this process': the daemon in this process only, per message of all)")
    if peer is not None:
        wanted = 10 if args.processes > 1 else 6
        print(
            f"   SPEC §11: {rate / peer:.1f} × the Celery peer of the same run, ≥ {wanted} × wanted with "
            f"{args.processes} process{'es' if args.processes > 1 else ''} "
            f"({'met' if rate / peer >= wanted else 'not met'}; {args.requests / (peer * wanted):.1f} s "
            f"for these {args.requests:,} requests)"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--notices", type=int, default=400, help="notices in (1) and (2)")
    parser.add_argument("--requests", type=int, default=100_000, help="requests in (3); 0 skips it")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of (1) and (2)")
    parser.add_argument("--processes", type=int, default=1, help="daemon processes sharing the store in (3)")
    parser.add_argument("--store", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument(
        "--celery", type=int, default=5_000, help="requests the Celery peer sends before (3); 0 skips it"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="run round 1 of (2) under cProfile, stats to FILE (SQLAlchemy's greenlets blur cumulative "
        "times; py-spy, attached to the process, gives the truer picture)",
    )
    parser.add_argument("--log", type=Path, help="keep the daemon's JSON log in FILE (default: discarded)")
    parser.add_argument(
        "--evidence",
        choices=("on", "off"),
        default="on",
        help="the evidence record on (payloads encrypted and kept, as deployed) or off (SPEC §15's cost)",
    )
    args = parser.parse_args()
    EVIDENCE_ENV.update(evidence_environment(args.evidence))
    os.environ.update(EVIDENCE_ENV)
    print(f"machine: {machine_line()}")
    print(f"evidence record: {args.evidence}")
    # The daemon's JSON log: to /dev/null, or kept for reading where a run's time went.
    with open(args.log or os.devnull, "w") as log_stream:  # noqa: ASYNC230 - opened once, before timing
        configure_logging(json=True, level="info", stream=log_stream)
        async with SinkProcess() as sink:
            if args.notices and args.rounds:
                await dispatch_figures(sink, args)
            if args.requests:
                await bulk_figures(sink, args)
    print(f"\nmachine at the end: {machine_line()}")


if __name__ == "__main__":
    asyncio.run(main())
