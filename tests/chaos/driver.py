"""The chaos driver: two ``notifier run`` processes on one PostgreSQL store and one RabbitMQ vhost,
five sandbox platforms in this process, requests published at a steady rate, and the disturbances
of the plan while they flow.

Beside the daemons the driver plays the platforms' part: it acknowledges delivered notices on the
ack queue (a third "removed", a third "received", a third never, so reminders and breaches fall due)
and files portal notices as the authority's staff would. It records what the sandbox received and
when, every disturbance, and how long each daemon took to be ready again, for the verifier.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aio_pika
import aiohttp
from sqlalchemy import func, select

from notifier.domain.models import NoticeState
from notifier.sandbox.api import PlatformApi, ReceivedNotice
from notifier.sandbox.smtp import Received, SmtpSink
from notifier.services.operator import record_submitted
from notifier.store import SqlStore, create_store
from notifier.store.engine import is_unavailable
from notifier.store.tables import notices, requests
from tests.acceptance.harness import start_daemon
from tests.chaos import services as svc
from tests.chaos.plan import Bodies, Event, Plan, bodies, daemon_config, schedule
from tests.restarts import Publisher

T = TypeVar("T")
REQUESTS_QUEUE = "takedown.requests"
ACKS_QUEUE = "takedown.acks"
BURST_EVERY = 0.25
# Which notices the platforms acknowledge, by the notice's sequence number modulo 3.
ACK_POLICY = {0: "removed", 1: "received"}  # 2: never acknowledged
UNSETTLED = {
    NoticeState.QUEUED.value,
    NoticeState.SENDING.value,
    NoticeState.RETRYING.value,
    NoticeState.AWAITING_SUBMISSION.value,
}


@dataclass(frozen=True, slots=True)
class Disturbance:
    kind: str
    at: float  # wall clock
    detail: str = ""
    until: float | None = None  # the end of an outage


@dataclass(frozen=True, slots=True)
class Readiness:
    """A daemon ready again (or not) after a restart of itself or of a service under it."""

    cause: str  # kill, sigterm, broker, postgres, start
    slot: int
    seconds: float | None  # None: not ready within the limit
    since: float = 0.0  # wall clock: the restart
    ready_at: float | None = None  # wall clock


@dataclass(slots=True)
class Record:
    plan: Plan
    services: svc.Services
    directory: Path
    bodies: Bodies
    started: float = 0.0
    published_at_end: float = 0.0
    settled_at: float | None = None
    disturbances: list[Disturbance] = field(default_factory=list)
    readiness: list[Readiness] = field(default_factory=list)
    sigterm_exits: list[tuple[int | None, float]] = field(default_factory=list)  # (code, seconds)
    final_exits: list[int | None] = field(default_factory=list)
    emails: list[tuple[float, Received]] = field(default_factory=list)
    api_posts: list[tuple[float, ReceivedNotice]] = field(default_factory=list)
    broker_dead: list[tuple[bytes, dict[str, Any]]] = field(default_factory=list)
    acked: dict[str, str] = field(default_factory=dict)  # notice id -> status published
    filed: set[str] = field(default_factory=set)
    logs: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Slot:
    """One daemon position: its config and log file; the process in it is replaced on restarts."""

    def __init__(self, index: int, config: Path, log: Path, port: int) -> None:
        self.index, self.config, self.log, self.port = index, config, log, port
        self.process: subprocess.Popen[bytes] | None = None
        self.ready = False
        self.stopping = False  # the driver is stopping it: not a process that gave up by itself
        self.generation = 0  # processes started in this slot

    def start(self) -> None:
        self.ready = False
        self.stopping = False
        self.generation += 1
        self.process = start_daemon(self.config, self.log)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Driver:
    def __init__(self, plan: Plan, directory: Path, say: Callable[[str], None] = print) -> None:
        self.plan, self.directory, self.say = plan, directory, say
        self.sink = SmtpSink()
        self.api = PlatformApi(ticket_prefix="API")
        self.slots: list[Slot] = []
        self.store: SqlStore | None = None
        self.record: Record | None = None
        self.stop_flow = asyncio.Event()
        self.session: aiohttp.ClientSession | None = None
        self._waits: list[asyncio.Task[None]] = []

    def _now(self) -> float:
        assert self.record is not None
        return time.time() - self.record.started

    # -- the run --------------------------------------------------------------------------------

    async def run(self, services: svc.Services) -> Record:
        plan = self.plan
        record = self.record = Record(plan, services, self.directory, bodies(plan))
        self.sink.listeners.append(lambda r: record.emails.append((time.time(), r)))
        self.api.listeners.append(lambda n: record.api_posts.append((time.time(), n)))
        await self.sink.start()
        await self.api.start()
        for index in (1, 2):
            port = free_port()
            config = daemon_config(
                self.directory / f"daemon-{index}",
                plan,
                store_url=services.store_url,
                amqp_url=services.amqp_url,
                http_port=port,
                smtp_port=self.sink.port,
                api_url=self.api.url,
            )
            slot = Slot(index, config, self.directory / f"daemon-{index}.log", port)
            self.slots.append(slot)
            record.logs.append(slot.log)
        self.session = aiohttp.ClientSession()
        # A daemon that hangs is told to abort and dumps its stacks into its log first.
        os.environ["PYTHONFAULTHANDLER"] = "1"
        flows: list[asyncio.Task[None]] = []
        try:
            record.started = time.time()
            self.slots[0].start()  # the first brings the schema up; the second joins it
            await self._wait_ready(self.slots[0], "start", time.monotonic())
            self.slots[1].start()
            await self._wait_ready(self.slots[1], "start", time.monotonic())
            self.store = await create_store(services.store_url)
            record.started = time.time()
            self.say(f"chaos: {plan.short}")
            flows = [
                asyncio.create_task(self._publish()),
                asyncio.create_task(self._acknowledge()),
                asyncio.create_task(self._file_portal_notices()),
            ]
            await self._disturb(schedule(plan))
            await flows[0]
            record.published_at_end = time.time()
            self.say(f"chaos: published for {self._now():.0f} s; waiting for every notice and SLA decision")
            await asyncio.gather(*self._waits)
            record.settled_at = await self._settle()
            self.stop_flow.set()
            await asyncio.gather(*flows[1:])
            for slot in self.slots:
                ready = await self._ready_now(slot)
                record.readiness.append(Readiness("end", slot.index, 0.0 if ready else None))
            for slot in self.slots:
                if slot.process is not None and slot.alive:
                    slot.process.send_signal(signal.SIGTERM)
            for slot in self.slots:
                assert slot.process is not None
                record.final_exits.append(await _exit_code(slot.process, plan.grace + 30))
            record.broker_dead = await self._drain_broker_dead(services)
        finally:
            self.stop_flow.set()
            for task in [*flows, *self._waits]:
                task.cancel()
            await asyncio.gather(*flows, *self._waits, return_exceptions=True)
            for slot in self.slots:
                if slot.alive and slot.process is not None:
                    slot.process.kill()
                    slot.process.wait(timeout=30)
            await self.session.close()
            os.environ.pop("PYTHONFAULTHANDLER", None)
            await self.api.stop()
            await self.sink.stop()
        return record

    async def close(self) -> None:
        if self.store is not None:
            await self.store.close()

    # -- the flow: requests, acknowledgements, portal staff -------------------------------------

    async def _publish(self) -> None:
        assert self.record is not None
        order = self.record.bodies.order
        per_burst = max(1, round(len(order) * BURST_EVERY / self.plan.publish_for))
        publisher = Publisher(self.record.services.amqp_url)
        start = time.monotonic()
        try:
            for n, first in enumerate(range(0, len(order), per_burst)):
                await publisher.publish(REQUESTS_QUEUE, order[first : first + per_burst])
                delay = start + (n + 1) * BURST_EVERY - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
        finally:
            await publisher.close()

    async def _acknowledge(self) -> None:
        assert self.record is not None and self.store is not None
        record = self.record
        publisher = Publisher(record.services.amqp_url)
        try:
            while not self.stop_flow.is_set():
                rows = await _query(
                    self.store,
                    select(notices.c.notice_id, notices.c.sequence).where(
                        notices.c.state == NoticeState.DELIVERED.value
                    ),
                )
                fresh = [
                    (str(r.notice_id), status)
                    for r in rows or []
                    if (status := ACK_POLICY.get(r.sequence % 3)) is not None
                    and r.notice_id not in record.acked
                ]
                if fresh:
                    await publisher.publish(
                        ACKS_QUEUE, [json.dumps({"notice_id": n, "status": s}).encode() for n, s in fresh]
                    )
                    record.acked.update(fresh)
                await _pause(self.stop_flow, 0.5)
        finally:
            await publisher.close()

    async def _file_portal_notices(self) -> None:
        """The authority's staff file each portal notice on the portal and record it, promptly."""
        assert self.record is not None and self.store is not None
        store = self.store
        while not self.stop_flow.is_set():
            rows = await _query(
                store,
                select(notices.c.notice_id).where(notices.c.state == NoticeState.AWAITING_SUBMISSION.value),
            )
            for row in rows or []:
                now = datetime.now(UTC)
                try:
                    await record_submitted(store, row.notice_id, at=now, now=now, ticket=f"P-{row.notice_id}")
                    self.record.filed.add(row.notice_id)
                except Exception as error:
                    if not is_unavailable(error) and "awaiting submission" not in str(error):
                        raise
            await _pause(self.stop_flow, 0.5)

    # -- disturbances ---------------------------------------------------------------------------

    async def _disturb(self, events: list[Event]) -> None:
        assert self.record is not None
        rng_index = 0
        for event in events:
            delay = event.at - self._now()
            if delay > 0:
                await asyncio.sleep(delay)
            if event.kind == "kill":
                slot = await self._victim(rng_index)
                rng_index += 1
                await self._kill(slot)
            elif event.kind == "sigterm":
                await self._sigterm(await self._victim(rng_index))
            elif event.kind == "broker":
                await self._restart_broker()
            elif event.kind == "postgres":
                await self._restart_postgres()
            elif event.kind == "smtp_down":
                self._waits.append(asyncio.create_task(self._outage("smtp", self.sink)))
            elif event.kind == "api_down":
                self._waits.append(asyncio.create_task(self._outage("api", self.api)))

    async def _victim(self, n: int) -> Slot:
        """A daemon that is up and ready; the other is taken when one is still coming back."""
        import random

        rng = random.Random(self.plan.seed * 1000 + n)
        while True:
            ready = [s for s in self.slots if s.ready and s.alive]
            if ready:
                return rng.choice(ready)
            await asyncio.sleep(0.1)

    def _note(self, kind: str, detail: str = "", until: float | None = None) -> None:
        assert self.record is not None
        self.record.disturbances.append(Disturbance(kind, time.time(), detail, until))
        self.say(f"chaos: {self._now():6.1f} s  {kind} {detail}".rstrip())

    async def _kill(self, slot: Slot) -> None:
        assert slot.process is not None
        self._note("kill -9", f"daemon-{slot.index} (pid {slot.process.pid})")
        slot.stopping = True
        slot.process.send_signal(signal.SIGKILL)
        await _exit_code(slot.process, 30)
        slot.start()
        self._waits.append(asyncio.create_task(self._wait_ready(slot, "kill", time.monotonic())))

    async def _sigterm(self, slot: Slot) -> None:
        assert slot.process is not None and self.record is not None
        self._note("SIGTERM", f"daemon-{slot.index} (pid {slot.process.pid})")
        began = time.monotonic()
        slot.stopping = True
        slot.process.send_signal(signal.SIGTERM)
        code = await _exit_code(slot.process, self.plan.grace + 30)
        self.record.sigterm_exits.append((code, time.monotonic() - began))
        slot.start()
        self._waits.append(asyncio.create_task(self._wait_ready(slot, "sigterm", time.monotonic())))

    async def _restart_broker(self) -> None:
        assert self.record is not None
        mode, services = self.plan.broker_restart, self.record.services
        began = time.time()
        await asyncio.to_thread(svc.stop_broker, services, mode)
        try:
            # Down until both daemons have said so on /readyz (or 15 s).
            await self._all_unready(15)
        finally:
            await asyncio.to_thread(svc.start_broker, services, mode)
        self._note(f"RabbitMQ restart ({mode})", f"down {time.time() - began:.1f} s", until=time.time())
        self._started_at(began)
        back = time.monotonic()
        for slot in self.slots:
            slot.ready = False
            self._waits.append(asyncio.create_task(self._wait_ready(slot, "broker", back)))

    async def _restart_postgres(self) -> None:
        began = time.time()
        await asyncio.to_thread(svc.restart_postgres)
        self._note("PostgreSQL restart", f"took {time.time() - began:.1f} s", until=time.time())
        self._started_at(began)
        back = time.monotonic()
        for slot in self.slots:
            slot.ready = False
            self._waits.append(asyncio.create_task(self._wait_ready(slot, "postgres", back)))

    async def _outage(self, what: str, server: SmtpSink | PlatformApi) -> None:
        began = time.time()
        await server.stop()
        await asyncio.sleep(self.plan.outage_for)
        await server.start()
        label = "SMTP sink down" if what == "smtp" else "platform API down"
        self._note(label, f"{time.time() - began:.1f} s", until=time.time())
        self._started_at(began)

    def _started_at(self, began: float) -> None:
        """The last note was written when its outage ended: date it from its start."""
        assert self.record is not None
        last = self.record.disturbances.pop()
        self.record.disturbances.append(Disturbance(last.kind, began, last.detail, last.until))

    # -- readiness ------------------------------------------------------------------------------

    async def _ready_now(self, slot: Slot) -> bool:
        assert self.session is not None
        try:
            timeout = aiohttp.ClientTimeout(total=5)
            async with self.session.get(f"http://127.0.0.1:{slot.port}/readyz", timeout=timeout) as answer:
                return answer.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def _wait_ready(self, slot: Slot, cause: str, since: float) -> None:
        assert self.record is not None
        limit = self.plan.ready_within + 60
        wall = time.time() - (time.monotonic() - since)
        generation = slot.generation
        while time.monotonic() - since < limit:
            if slot.generation != generation:
                return  # killed or stopped again meanwhile: that restart is measured on its own
            if await self._ready_now(slot):
                slot.ready = True
                seconds = time.monotonic() - since
                self.record.readiness.append(Readiness(cause, slot.index, seconds, wall, time.time()))
                return
            if not slot.alive and not slot.stopping:
                # It gave up by itself (it cannot start while the broker or the store is away):
                # started again, as a process manager would (docker-compose: restart: unless-stopped).
                assert slot.process is not None
                code = slot.process.poll()
                self.record.notes.append(
                    f"daemon-{slot.index} exited by itself ({code}) after {cause}; restarted"
                )
                slot.start()
                generation = slot.generation
            await asyncio.sleep(0.2)
        self.record.readiness.append(Readiness(cause, slot.index, None, wall))
        self.record.notes.append(f"daemon-{slot.index} not ready after {cause} (alive: {slot.alive})")
        if slot.alive and slot.process is not None:
            # Its threads' stacks into its log (faulthandler, on in every daemon of the run), then a
            # fresh process, so that the run goes on.
            slot.stopping = True
            slot.process.send_signal(signal.SIGABRT)
            await _exit_code(slot.process, 30)
            slot.start()
            self._waits.append(asyncio.create_task(self._wait_ready(slot, "abort", time.monotonic())))

    async def _all_unready(self, within: float) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            states = await asyncio.gather(*(self._ready_now(s) for s in self.slots))
            if not any(states):
                return
            await asyncio.sleep(0.2)

    # -- the end --------------------------------------------------------------------------------

    async def _settle(self) -> float | None:
        """Wait until every request is in a notice, no notice is on its way, and the SLA decisions
        due by the last delivery's bounds have fallen due and been sent."""
        assert self.store is not None
        deadline = time.monotonic() + self.plan.settle_within
        total = len(self.plan_bodies().valid)
        while time.monotonic() < deadline:
            if await self._settled(total):
                return time.time()
            await asyncio.sleep(1.0)
        return None

    def plan_bodies(self) -> Bodies:
        assert self.record is not None
        return self.record.bodies

    async def _settled(self, total: int) -> bool:
        from notifier.store.tables import sla_decisions

        assert self.store is not None
        rows = await _query(
            self.store,
            select(
                select(func.count()).select_from(requests).scalar_subquery(),
                select(func.count())
                .select_from(requests)
                .where(requests.c.notice_id.is_(None))
                .scalar_subquery(),
                select(func.count())
                .select_from(notices)
                .where(notices.c.state.in_(UNSETTLED))
                .scalar_subquery(),
                select(func.max(notices.c.delivered_at)).scalar_subquery(),
                select(func.count())
                .select_from(sla_decisions)
                .where(sla_decisions.c.sent_at.is_(None), sla_decisions.c.dropped_at.is_(None))
                .scalar_subquery(),
            ),
        )
        if not rows:
            return False
        stored, loose, unsettled, last_delivery, unsent = rows[0]
        if (stored, loose, unsettled) != (total, 0, 0) or last_delivery is None:
            return False
        last = last_delivery if last_delivery.tzinfo else last_delivery.replace(tzinfo=UTC)
        bound = max(self.plan.ack_within, self.plan.removal_within)
        return bool(time.time() > last.timestamp() + bound + 3 and unsent == 0)

    async def _drain_broker_dead(self, services: svc.Services) -> list[tuple[bytes, dict[str, Any]]]:
        """What the broker itself dead-lettered (or notifier republished) on ``<requests>.dead``."""
        found: list[tuple[bytes, dict[str, Any]]] = []
        connection = await aio_pika.connect(services.amqp_url)
        try:
            channel = await connection.channel()
            queue = await channel.get_queue(f"{REQUESTS_QUEUE}.dead", ensure=True)
            while (message := await queue.get(fail=False, no_ack=True)) is not None:
                found.append((message.body, dict(message.headers or {})))
        finally:
            await connection.close()
        return found


async def _query(store: SqlStore, statement: Any) -> list[Any] | None:
    """The rows, or None while the store is unavailable (as notifier itself judges that)."""
    try:
        async with store.engine.connect() as conn:
            return list((await conn.execute(statement)).all())
    except Exception as error:
        if is_unavailable(error):
            return None
        raise


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def _exit_code(process: subprocess.Popen[bytes], within: float) -> int | None:
    try:
        return await asyncio.to_thread(process.wait, within)
    except subprocess.TimeoutExpired:
        return None


async def run_chaos(plan: Plan, directory: Path, verify: Callable[[Record, SqlStore], Awaitable[T]]) -> T:
    """Create the run's database and vhost, run the plan, verify while the store is there, drop them."""
    services = await svc.create_services()
    driver = Driver(plan, directory)
    try:
        record = await driver.run(services)
        assert driver.store is not None
        return await verify(record, driver.store)
    finally:
        await driver.close()
        await svc.drop_services(services)
