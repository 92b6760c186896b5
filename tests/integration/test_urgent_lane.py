"""The urgent lane: urgent requests taken in and sent by a process of the daemon's own (PostgreSQL,
RabbitMQ, an SMTP sink); restarted when it dies, gone when the daemon is, counted in /metrics."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import aiohttp
import pytest

from notifier.app import Daemon
from notifier.settings import load_settings
from tests.acceptance.harness import write_config
from tests.evidence_key import EVIDENCE_ENV
from tests.integration.test_email_channel import Sink, running
from tests.waiting import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.timeout(120)]


@dataclass(frozen=True)
class World:
    config: Path  # PostgreSQL, RabbitMQ, the sink, the lane on
    urgent_queue: str
    sink: Sink


@pytest.fixture
def world(
    tmp_path: Path, postgres_url: str, amqp_server: str, queue_name: str, amqp_cleanup: list[str]
) -> Iterator[World]:
    handler = Sink()
    urgent_queue = f"{queue_name}.urgent"
    amqp_cleanup.extend([queue_name, urgent_queue, f"{queue_name}.acks"])
    with running(handler) as controller:
        yield World(
            _config(tmp_path, postgres_url, amqp_server, queue_name, controller.port), urgent_queue, handler
        )


def _config(tmp_path: Path, postgres_url: str, amqp_server: str, queue: str, smtp_port: int) -> Path:
    return write_config(
        tmp_path,
        store_url=postgres_url,
        queue_url=amqp_server,
        requests_queue=queue,
        acks_queue=f"{queue}.acks",
        runtime='grace = "5s"\nurgent_process = true',
        extra=f'[smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\nstarttls = "off"',
    )


EXAMPLE = json.loads((Path(__file__).parents[2] / "examples" / "requests.jsonl").read_text().splitlines()[0])


def _urgent(request_id: str) -> bytes:
    request = {**EXAMPLE, "request_id": request_id, "platform": "telegram", "priority": "urgent"}
    request["urls"] = [f"https://t.me/c/{request_id}"]
    return json.dumps(request).encode()


async def _publish(amqp_server: str, queue: str, body: bytes) -> None:
    connection = await aio_pika.connect(amqp_server)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.default_exchange.publish(aio_pika.Message(body=body), routing_key=queue)


def _delivered(sink: Sink, request_id: str) -> bool:
    return any(f"https://t.me/c/{request_id}".encode() in message.data for message in sink.received)


def _gone(pid: int) -> bool:
    """The process has exited (a zombie not yet reaped by a container's init counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return True
    return state in {"Z", "X"}


async def test_the_lane_sends_urgent_requests_and_comes_back_when_killed(
    world: World, amqp_server: str
) -> None:
    handler, urgent_queue = world.sink, world.urgent_queue
    daemon = Daemon(load_settings(world.config))
    await daemon.start()
    try:
        lane = daemon.urgent_lane
        assert lane is not None
        await _publish(amqp_server, urgent_queue, _urgent("u-1"))

        async def first_delivered() -> bool:
            return _delivered(handler, "u-1")

        await wait_for(first_delivered, within=60, what="the urgent notice at the sink")
        first_pid = lane.pid
        assert first_pid is not None and first_pid != os.getpid()
        # The lane took it in, not the daemon's own intake; /metrics counts it all the same.
        accepted = {"platform": "telegram", "outcome": "accepted"}
        assert daemon.metrics.registry.get_sample_value("notifier_requests_total", accepted) is None

        async def counted() -> bool:
            value = daemon.metrics.exposition.get_sample_value("notifier_requests_total", accepted)
            return value == 1

        await wait_for(counted, within=10, what="the lane's intake counted by the daemon's /metrics")

        os.kill(first_pid, signal.SIGKILL)

        async def restarted() -> bool:
            return lane.pid is not None and lane.pid != first_pid

        await wait_for(restarted, within=30, what="a new lane after kill -9")
        await _publish(amqp_server, urgent_queue, _urgent("u-2"))

        async def second_delivered() -> bool:
            return _delivered(handler, "u-2")

        await wait_for(second_delivered, within=60, what="the next urgent notice, sent by the new lane")

        async def counted_both() -> bool:
            value = daemon.metrics.exposition.get_sample_value("notifier_requests_total", accepted)
            return value == 2  # what the killed lane counted is kept

        await wait_for(counted_both, within=10, what="both lanes' intake counted")
        assert daemon.http is not None
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{daemon.http.bound_port}/metrics") as response,
        ):
            text = await response.text()
        assert 'notifier_requests_total{outcome="accepted",platform="telegram"} 2.0' in text
        second_pid = lane.pid
    finally:
        daemon.stop()
        assert await daemon.wait() == 0
    assert second_pid is not None and _gone(second_pid)
    assert sum(_delivered(handler, r) for r in ("u-1", "u-2")) == 2


async def test_notifier_run_yields_the_cpu_to_its_lane_which_ends_with_it(
    world: World, amqp_server: str, tmp_path: Path
) -> None:
    handler, urgent_queue, config = world.sink, world.urgent_queue, world.config
    log = tmp_path / "daemon.log"
    with log.open("wb") as output:
        daemon = subprocess.Popen(  # noqa: ASYNC220  # waited for below, killed at the end
            [sys.executable, "-m", "notifier", "run", "-c", str(config)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, **EVIDENCE_ENV},
        )
    lane_pid: int | None = None
    try:

        async def lane_started() -> bool:
            nonlocal lane_pid
            for line in log.read_text().splitlines():
                if '"lane.started"' in line and lane_pid is not None:
                    return True
                if '"helper.started"' in line:
                    lane_pid = json.loads(line)["pid"]
            return False

        await wait_for(lane_started, within=60, what="the lane's start in the daemon's log")
        assert lane_pid is not None
        base = os.getpriority(os.PRIO_PROCESS, os.getpid())
        assert os.getpriority(os.PRIO_PROCESS, lane_pid) == base
        assert os.getpriority(os.PRIO_PROCESS, daemon.pid) == min(19, base + 10)

        await _publish(amqp_server, urgent_queue, _urgent("u-3"))

        async def delivered() -> bool:
            return _delivered(handler, "u-3")

        await wait_for(delivered, within=60, what="the urgent notice at the sink")

        daemon.kill()  # kill -9: the lane notices its daemon is gone, drains and ends
        await asyncio.to_thread(daemon.wait)
        pid = lane_pid

        async def lane_gone() -> bool:
            return _gone(pid)

        await wait_for(lane_gone, within=30, what="the lane to end after its daemon's kill -9")
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        if lane_pid is not None and not _gone(lane_pid):
            os.kill(lane_pid, signal.SIGKILL)


async def test_without_the_lane_the_daemon_takes_the_urgent_queue_itself(
    world: World, amqp_server: str, tmp_path: Path
) -> None:
    text = world.config.read_text().replace("urgent_process = true", "urgent_process = false")
    config = tmp_path / "no-lane.toml"
    config.write_text(text)
    daemon = Daemon(load_settings(config))
    await daemon.start()
    try:
        assert daemon.urgent_lane is None
        await _publish(amqp_server, world.urgent_queue, _urgent("u-4"))

        async def delivered() -> bool:
            return _delivered(world.sink, "u-4")

        await wait_for(delivered, within=60, what="the urgent notice, sent by the daemon's own process")
        accepted = {"platform": "telegram", "outcome": "accepted"}
        assert daemon.metrics.registry.get_sample_value("notifier_requests_total", accepted) == 1
    finally:
        daemon.stop()
        assert await daemon.wait() == 0
