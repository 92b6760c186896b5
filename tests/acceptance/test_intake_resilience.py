"""Intake survives what production throws at it: kill -9, a PostgreSQL restart, dropped AMQP links.

Each test publishes valid requests straight onto a RabbitMQ quorum queue, disturbs the daemon or a
service in the middle of intake, and then checks that every published request is stored exactly
once and nothing was dead-lettered or left on the queue.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aio_pika
import pytest

from notifier.app import Daemon
from notifier.settings import load_settings
from notifier.store import create_store
from tests.acceptance.dataset import valid_request
from tests.acceptance.harness import start_daemon, wait_for, write_config

pytestmark = [pytest.mark.timeout(300), pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.slow]

TOTAL = 12_000


async def _publish(amqp_url: str, queue: str, bodies: list[bytes]) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue(
            queue,
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-delivery-limit": 20,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": f"{queue}.dead",
            },
        )
        for start in range(0, len(bodies), 1000):
            for body in bodies[start : start + 1000]:
                await channel.default_exchange.publish(
                    aio_pika.Message(body=body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=queue,
                )


async def _queue_depth(amqp_url: str, queue: str) -> int:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)


def _bodies(count: int, seed: int) -> tuple[list[bytes], set[str]]:
    rng = random.Random(seed)
    requests = [valid_request(rng, i) for i in range(count)]
    return [json.dumps(r).encode() for r in requests], {str(r["request_id"]) for r in requests}


@pytest.fixture
async def setup(
    tmp_path: Path, postgres_url: str, amqp_server: str, queue_name: str, amqp_cleanup: list[str]
) -> AsyncIterator[tuple[Path, str]]:
    amqp_cleanup.extend([queue_name, f"{queue_name}.acks"])
    config = write_config(
        tmp_path,
        store_url=postgres_url,
        queue_url=amqp_server,
        requests_queue=queue_name,
        acks_queue=f"{queue_name}.acks",
        http_listen="",
    )
    yield config, postgres_url


async def _assert_all_stored_once(
    postgres_url: str, expected_ids: set[str], amqp_url: str, queue: str
) -> None:
    store = await create_store(postgres_url)
    try:

        async def complete() -> bool:
            counts = await store.status_counts()
            return sum(sum(s.values()) for s in counts.requests.values()) >= len(expected_ids)

        await wait_for(complete, within=180, what=f"{len(expected_ids)} requests stored")
        counts = await store.status_counts()
        assert sum(sum(s.values()) for s in counts.requests.values()) == len(expected_ids)
        assert counts.dead_letters_total == 0
        assert await store.conflicts() == []
        stored = await store.get_requests(sorted(expected_ids))
        assert {s.request.request_id for s in stored} == expected_ids
    finally:
        await store.close()

    async def drained() -> bool:
        return await _queue_depth(amqp_url, queue) == 0

    await wait_for(drained, within=60, what="the intake queue to drain")


async def test_kill_9_mid_intake_then_restart_stores_every_request_once(
    setup: tuple[Path, str], tmp_path: Path, amqp_server: str, queue_name: str
) -> None:
    config, postgres_url = setup
    bodies, ids = _bodies(TOTAL, seed=9)
    await _publish(amqp_server, queue_name, bodies)
    store = await create_store(postgres_url)
    log_file = tmp_path / "daemon.log"
    try:
        for kill_at in (2_000, 6_000):
            daemon = start_daemon(config, log_file)

            async def progressed(threshold: int = kill_at) -> bool:
                counts = await store.status_counts()
                return sum(sum(s.values()) for s in counts.requests.values()) >= threshold

            try:
                await wait_for(progressed, within=120, what=f"{kill_at} requests stored before the kill")
            finally:
                daemon.send_signal(signal.SIGKILL)
                daemon.wait(timeout=30)
            counts = await store.status_counts()
            assert sum(sum(s.values()) for s in counts.requests.values()) < TOTAL, (
                "killed too late to prove anything"
            )
    finally:
        await store.close()

    daemon = start_daemon(config, log_file)
    try:
        await _assert_all_stored_once(postgres_url, ids, amqp_server, queue_name)
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0, log_file.read_text()[-3000:]


def _pg_ctlcluster(action: str) -> None:
    versions = sorted(os.listdir("/etc/postgresql"))
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", action],
        check=True,
        capture_output=True,
        timeout=120,
    )


async def _survives_disturbance(
    setup: tuple[Path, str],
    amqp_server: str,
    queue_name: str,
    *,
    seed: int,
    disturb: Callable[[], Awaitable[object]],
    instead: str,
) -> None:
    """Publish, disturb a service once intake is under way, then check nothing was lost and the
    daemon rode it out (``instead`` says what it must not have done)."""
    config, postgres_url = setup
    bodies, ids = _bodies(TOTAL, seed=seed)
    daemon = Daemon(load_settings(config))
    await daemon.start()
    try:
        await _publish(amqp_server, queue_name, bodies)
        assert daemon.store is not None
        store = daemon.store

        async def started() -> bool:
            counts = await store.status_counts()
            return sum(sum(s.values()) for s in counts.requests.values()) >= 1_000

        await wait_for(started, within=120, what="intake under way")
        await disturb()
        await _assert_all_stored_once(postgres_url, ids, amqp_server, queue_name)
        assert not daemon.supervisor.stop.is_set(), f"the daemon stopped instead of {instead}"
    finally:
        daemon.stop()
        assert await daemon.wait() == 0


async def test_postgresql_restart_during_intake_loses_nothing(
    setup: tuple[Path, str], amqp_server: str, queue_name: str
) -> None:
    if shutil.which("pg_ctlcluster") is None or not os.path.isdir("/etc/postgresql"):
        pytest.fail("pg_ctlcluster is needed to restart PostgreSQL in this test")
    await _survives_disturbance(
        setup,
        amqp_server,
        queue_name,
        seed=5,
        disturb=lambda: asyncio.to_thread(_pg_ctlcluster, "restart"),
        instead="waiting for the store",
    )


async def test_dropped_rabbitmq_connections_during_intake_lose_nothing(
    setup: tuple[Path, str], amqp_server: str, queue_name: str
) -> None:
    if shutil.which("rabbitmqctl") is None:
        pytest.fail("rabbitmqctl is needed to drop the broker's connections in this test")
    await _survives_disturbance(
        setup,
        amqp_server,
        queue_name,
        seed=7,
        disturb=lambda: asyncio.to_thread(
            subprocess.run,
            ["rabbitmqctl", "close_all_connections", "notifier test: connection dropped"],
            check=True,
            capture_output=True,
            timeout=120,
        ),
        instead="reconnecting",
    )
