"""The daemon rides out a PostgreSQL restart and a RabbitMQ restart while busy, and loses nothing.

A real ``notifier run`` on PostgreSQL and RabbitMQ sends notices to an SMTP sink while requests keep
arriving on the requests queue and acknowledgements of the delivered notices on the ack queue. Under
it, PostgreSQL is stopped and started again, then RabbitMQ. Each outage lasts until ``/readyz`` has
said 503, so readiness is observed, not hoped for; acknowledgements are published while PostgreSQL
is down, so the ack consumer holds some when the store is away.

Afterwards the same process is still running and ready, every request is stored once and in exactly
one notice, every notice was delivered (and reached the sink), every acknowledgement was applied
exactly once (a repeat, from a message the broker handed over again, is recorded as unchanged) and
nothing was dead-lettered; the log says ``store.unavailable`` and no task died.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import Row, Select, func, select

from notifier.sandbox.smtp import SmtpSink
from notifier.store import SqlStore, create_store
from notifier.store.engine import is_unavailable
from notifier.store.tables import acks, dead_letters, notices, request_conflicts, requests
from tests.acceptance.harness import Daemons, wait_for, write_config
from tests.restarts import Publisher, pg_ctlcluster, pg_running, rabbitmqctl

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.slow, pytest.mark.timeout(300)]

PLATFORMS = ("telegram", "discord")
BURST = 10  # requests published every BURST_EVERY seconds while the flow runs
BURST_EVERY = 0.25
HELD_ACKS = 5  # delivered notices whose acknowledgements are published while PostgreSQL is down
# The daemon's tasks that use the store, by the ``operation`` of their ``store.unavailable``.
STORE_USERS = {"ingest", "acknowledge", "dispatch", "sla"}
NOTICE_IN_SUBJECT = re.compile(r"\[(TD-[a-z0-9_]+-\d{8}-\d{6,})\]")


def reconnects_failed(log: Path) -> int:
    """Reconnection attempts to the broker that failed, as aio-pika's robust connection logs them."""
    return sum(
        1
        for line in log.read_text(errors="replace").splitlines()
        if '"aio_pika.robust_connection"' in line and "Connection attempt" in line and "failed" in line
    )


def request_body(index: int) -> bytes:
    platform = PLATFORMS[index % len(PLATFORMS)]
    return json.dumps(
        {
            "request_id": f"restart-{index:06d}",
            "platform": platform,
            "urls": [f"https://{platform}.example/c/{index}"],
            "category": "deepfake_sexual_abuse",
            "explanation": "Synthetic sexual imagery of an identifiable person made without consent.",
        }
    ).encode()


async def query(store: SqlStore, statement: Select[Any]) -> list[Row[Any]] | None:
    """The rows, or None while the store is unavailable (as notifier itself judges that)."""
    try:
        async with store.engine.connect() as conn:
            return list((await conn.execute(statement)).all())
    except Exception as error:
        if is_unavailable(error):
            return None
        raise


class Flow:
    """Requests published in bursts, and an acknowledgement ("removed") published for every notice
    the store shows delivered; all of them remembered for the checks."""

    def __init__(self, amqp_url: str, requests_queue: str, acks_queue: str, store: SqlStore) -> None:
        self.requests_queue, self.acks_queue, self.store = requests_queue, acks_queue, store
        self.request_publisher, self.ack_publisher = Publisher(amqp_url), Publisher(amqp_url)
        self.published_requests = 0
        self.acked: set[str] = set()
        self.held: list[str] = []
        self.holding = True
        self.requests_on = asyncio.Event()
        self.stop = asyncio.Event()

    async def run_requests(self) -> None:
        self.requests_on.set()
        while self.requests_on.is_set():
            first = self.published_requests
            await self.request_publisher.publish(
                self.requests_queue, [request_body(i) for i in range(first, first + BURST)]
            )
            self.published_requests = first + BURST
            await asyncio.sleep(BURST_EVERY)

    async def run_acks(self) -> None:
        while not self.stop.is_set():
            rows = await query(
                self.store,
                select(notices.c.notice_id)
                .where(notices.c.state == "delivered")
                .order_by(notices.c.notice_id),
            )
            delivered = [row.notice_id for row in rows or []]
            fresh = [n for n in delivered if n not in self.acked and n not in self.held]
            if self.holding:
                keep = fresh[: HELD_ACKS - len(self.held)]
                self.held.extend(keep)
                fresh = fresh[len(keep) :]
            await self.publish_acks(fresh)
            await asyncio.sleep(0.2)

    async def publish_held_acks(self) -> None:
        self.holding = False
        held, self.held = self.held, []
        await self.publish_acks(held)

    async def publish_acks(self, notice_ids: Sequence[str]) -> None:
        if notice_ids:
            bodies = [json.dumps({"notice_id": n, "status": "removed"}).encode() for n in notice_ids]
            await self.ack_publisher.publish(self.acks_queue, bodies)
            self.acked.update(notice_ids)

    async def close(self) -> None:
        self.requests_on.clear()
        self.stop.set()
        await self.request_publisher.close()
        await self.ack_publisher.close()


class Readiness:
    def __init__(self, session: aiohttp.ClientSession, port: int) -> None:
        self._session, self._url = session, f"http://127.0.0.1:{port}/readyz"

    async def check(self) -> tuple[int, dict[str, Any]]:
        async with self._session.get(self._url, timeout=aiohttp.ClientTimeout(total=30)) as response:
            return response.status, await response.json()

    async def wait(self, status: int, *, component: str | None = None, within: float = 90) -> dict[str, Any]:
        seen: dict[str, Any] = {}

        async def answers() -> bool:
            nonlocal seen
            code, seen = await self.check()
            return code == status

        await wait_for(answers, within=within, what=f"/readyz {status} ({component or 'all'})", interval=0.2)
        return seen


@pytest.fixture
async def sink() -> AsyncIterator[SmtpSink]:
    server = await SmtpSink().start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def services_back() -> Iterator[None]:
    """Whatever happens in the test, PostgreSQL and RabbitMQ are running again afterwards."""
    if shutil.which("pg_ctlcluster") is None or not os.path.isdir("/etc/postgresql"):
        pytest.fail("pg_ctlcluster is needed to restart PostgreSQL in this test")
    if shutil.which("rabbitmqctl") is None:
        pytest.fail("rabbitmqctl is needed to restart RabbitMQ in this test")
    yield None
    if not pg_running():
        pg_ctlcluster("start")
    rabbitmqctl("start_app")


def platforms_config() -> str:
    return "\n".join(
        f"""
[platforms.{platform}]
name = "{platform.title()}"
channel = "email"
[platforms.{platform}.email]
to = ["abuse@{platform}.example"]
[platforms.{platform}.batch]
max_items = 10
max_wait = "1s"
"""
        for platform in PLATFORMS
    )


async def test_a_busy_daemon_rides_out_a_postgresql_restart_and_a_rabbitmq_restart_losing_nothing(
    tmp_path: Path,
    daemons: Daemons,
    sink: SmtpSink,
    postgres_url: str,
    amqp_server: str,
    queue_name: str,
    amqp_cleanup: list[str],
    services_back: None,  # last: its teardown runs first, so the database and queues can be cleaned up
) -> None:
    acks_queue = f"{queue_name}.acks"
    amqp_cleanup.extend([queue_name, acks_queue])
    config = write_config(
        tmp_path,
        store_url=postgres_url,
        queue_url=f"{amqp_server}?reconnect_interval=1",
        requests_queue=queue_name,
        acks_queue=acks_queue,
        http_listen="127.0.0.1:0",
        runtime='grace = "10s"\nin_call_retry_wait = "0.05s"',
        extra=f'[smtp]\nhost = "127.0.0.1"\nport = {sink.port}\nstarttls = "off"\n',
        platforms=platforms_config(),
    )
    daemon = daemons.start(config, "daemon")

    async def listening() -> bool:
        daemons.assert_alive(daemon)
        return bool(daemons.events("http.listening", daemon))

    await wait_for(listening, within=90, what="the daemon's HTTP server")
    port = int(daemons.events("http.listening", daemon)[0]["port"])

    store = await create_store(postgres_url)
    flow = Flow(amqp_server, queue_name, acks_queue, store)
    tasks: list[asyncio.Task[None]] = []
    try:
        async with aiohttp.ClientSession() as session:
            ready = Readiness(session, port)
            await ready.wait(200)
            tasks = [asyncio.create_task(flow.run_requests()), asyncio.create_task(flow.run_acks())]

            async def busy() -> bool:
                daemons.assert_alive(daemon)
                return len(flow.acked) >= 5 and len(flow.held) >= HELD_ACKS

            await wait_for(busy, within=120, what="notices delivered and acknowledged")

            # PostgreSQL goes away under load, with acknowledgements on their way to the daemon.
            await asyncio.to_thread(pg_ctlcluster, "stop")
            try:
                await flow.publish_held_acks()
                body = await ready.wait(503, component="store")
                assert body["checks"]["store"].startswith("unavailable"), body
                assert body["checks"]["queue"] == "ok", body

                async def every_store_user_waiting() -> bool:
                    daemons.assert_alive(daemon)
                    seen = {e.get("operation") for e in daemons.events("store.unavailable", daemon)}
                    return seen >= STORE_USERS

                # Down until intake, the ack consumer, the dispatcher and the SLA monitor have each
                # found the store gone (each polls within a second, and requests keep coming).
                await wait_for(
                    every_store_user_waiting, within=60, what=f"{sorted(STORE_USERS)} to find the store away"
                )
            finally:
                await asyncio.to_thread(pg_ctlcluster, "start")
            await ready.wait(200)
            published_before, acked_before = flow.published_requests, len(flow.acked)

            async def flowing_again() -> bool:
                daemons.assert_alive(daemon)
                return (
                    flow.published_requests >= published_before + 5 * BURST and len(flow.acked) > acked_before
                )

            await wait_for(flowing_again, within=90, what="notices acknowledged after PostgreSQL came back")

            # Then RabbitMQ.
            await asyncio.to_thread(rabbitmqctl, "stop_app")
            try:
                body = await ready.wait(503, component="queue")
                assert body["checks"]["queue"].startswith("unavailable"), body
                failed_before = reconnects_failed(daemons.log_of(daemon))

                async def reconnecting() -> bool:
                    daemons.assert_alive(daemon)
                    return reconnects_failed(daemons.log_of(daemon)) >= failed_before + 2

                # Down until the daemon has tried to reconnect, and failed, twice.
                await wait_for(reconnecting, within=60, what="two failed reconnection attempts")
            finally:
                await asyncio.to_thread(rabbitmqctl, "start_app")
            await ready.wait(200)
            published_before = flow.published_requests

            async def published_after_the_broker() -> bool:
                daemons.assert_alive(daemon)
                return flow.published_requests >= published_before + 5 * BURST

            await wait_for(published_after_the_broker, within=60, what="requests published after RabbitMQ")
            flow.requests_on.clear()
            await tasks[0]
            total = flow.published_requests

            async def settled() -> bool:
                daemons.assert_alive(daemon)
                rows = await query(
                    store,
                    select(
                        select(func.count()).select_from(requests).scalar_subquery(),
                        select(func.count())
                        .select_from(notices)
                        .where(notices.c.state != "resolved")
                        .scalar_subquery(),
                        select(func.count())
                        .select_from(requests)
                        .where(requests.c.notice_id.is_(None))
                        .scalar_subquery(),
                    ),
                )
                return rows is not None and tuple(rows[0]) == (total, 0, 0)

            await wait_for(
                settled, within=150, what=f"all {total} requests noticed, delivered and acknowledged"
            )
            flow.stop.set()
            await tasks[1]

            status, body = await ready.check()
            assert status == 200, body
            daemons.assert_alive(daemon)
    finally:
        await flow.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    try:
        async with store.engine.connect() as conn:
            stored_ids = (await conn.execute(select(requests.c.request_id, requests.c.notice_id))).all()
            notice_rows = (await conn.execute(select(notices.c.notice_id, notices.c.request_count))).all()
            ack_rows = (await conn.execute(select(acks.c.notice_id, acks.c.outcome))).all()
            dead = await conn.scalar(select(func.count()).select_from(dead_letters))
            conflicts = await conn.scalar(select(func.count()).select_from(request_conflicts))
    finally:
        await store.close()

    # Every request stored once, in exactly one notice; nothing refused.
    assert sorted(r.request_id for r in stored_ids) == sorted(
        json.loads(request_body(i))["request_id"] for i in range(total)
    )
    assert all(r.notice_id is not None for r in stored_ids)
    assert sum(n.request_count for n in notice_rows) == total
    assert Counter(r.notice_id for r in stored_ids) == {n.notice_id: n.request_count for n in notice_rows}
    assert (dead, conflicts) == (0, 0)

    # Every notice delivered to the sink (a send whose record the outage interrupted may repeat).
    sent = {m.group(1) for r in sink.received if (m := NOTICE_IN_SUBJECT.search(str(r.message()["Subject"])))}
    assert {n.notice_id for n in notice_rows} <= sent

    # Every acknowledgement applied exactly once; any repeat recorded as unchanged.
    assert flow.acked == {n.notice_id for n in notice_rows}
    applied = Counter(a.notice_id for a in ack_rows if a.outcome == "applied")
    assert applied == dict.fromkeys(flow.acked, 1)
    others = [a.outcome for a in ack_rows if a.outcome != "applied"]
    assert all(outcome.startswith("unchanged") for outcome in others), others

    # The log: no task died.
    assert daemons.events("task.crashed", daemon) == []
    assert daemons.events("task.exited", daemon) == []

    daemon.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(daemon.wait, 60) == 0, daemons.tail(daemon)
