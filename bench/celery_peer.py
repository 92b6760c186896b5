"""The Celery peer of SPEC §11, measured in the same run as notifier's bulk figure.

What a team without notifier would write: Celery on RabbitMQ, one task per request, each task
sending one email with :mod:`smtplib` (a connection of its own), ``acks_late``, prefetch 1, a worker
with 2 processes (one a core). The requests are published first (not timed); then the worker is
started, and the rate is counted at the sink from its first message to its last, so that the
worker's start is not part of it.

Used by ``bench/dispatch.py`` (``--celery N``); alone:

    .venv/bin/python bench/celery_peer.py [--requests 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import smtplib
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from email.message import EmailMessage
from pathlib import Path

from celery import Celery

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.intake import AMQP_URL, delete_queues  # noqa: E402
from bench.sink import SinkProcess  # noqa: E402

QUEUE = os.environ.get("BENCH_CELERY_QUEUE", "bench.celery")
SINK_PORT = int(os.environ.get("BENCH_CELERY_SINK_PORT", "0"))

app = Celery("bench_celery_peer", broker=AMQP_URL.replace("amqp://", "pyamqp://", 1))
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_default_queue=QUEUE,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.send_request")  # type: ignore[untyped-decorator]  # celery has no types
def send_request(body: str) -> None:
    """One takedown request, one email."""
    request = json.loads(body)
    message = EmailMessage()
    message["From"] = "takedown@authority.example"
    message["To"] = f"abuse@{request['platform']}.example"
    message["Subject"] = f"Takedown request {request['request_id']}"
    message.set_content(
        f"Please remove the following content ({request['category']}):\n\n" + "\n".join(request["urls"])
    )
    with smtplib.SMTP("127.0.0.1", SINK_PORT, timeout=30) as smtp:
        smtp.send_message(message)


async def celery_rate(sink: SinkProcess, bodies: Sequence[bytes]) -> float:
    """Requests/s of the Celery peer over ``bodies``, each one task and one email to ``sink``."""
    queue = f"bench.celery.{uuid.uuid4().hex[:8]}"
    environ = {**os.environ, "BENCH_CELERY_QUEUE": queue, "BENCH_CELERY_SINK_PORT": str(sink.port)}
    publisher = Celery("bench_celery_publisher", broker=app.conf.broker_url)
    publisher.conf.task_default_queue = queue
    try:
        with publisher.producer_or_acquire() as producer:
            for body in bodies:
                publisher.send_task(
                    "bench.send_request", args=[body.decode()], queue=queue, producer=producer
                )
        before = (await sink.stats()).messages
        errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed below, read only if the peer fails
        worker = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bench.celery_peer",
            "worker",
            "--pool=prefork",
            "--concurrency=2",
            "--prefetch-multiplier=1",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel=WARNING",
            "-Q",
            queue,
            cwd=ROOT,
            env=environ,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=errors,  # Celery warns about running as root; shown only if the peer fails
        )
        try:
            return await _rate(sink, before, len(bodies), within=120 + len(bodies) / 20)
        except RuntimeError:
            errors.seek(0)
            sys.stderr.write(errors.read().decode(errors="replace")[-4000:])
            raise
        finally:
            worker.terminate()
            await worker.wait()
            errors.close()
    finally:
        publisher.close()
        await delete_queues(queue)


async def _rate(sink: SinkProcess, before: int, count: int, *, within: float) -> float:
    """Messages/s between the first and the ``count``-th message to arrive after ``before``."""
    deadline = time.monotonic() + within
    first: tuple[float, int] | None = None
    while time.monotonic() < deadline:
        received = (await sink.stats()).messages - before
        now = time.perf_counter()
        if received and first is None:
            first = (now, received)
        if received >= count and first is not None:
            return (received - first[1]) / max(1e-9, now - first[0])
        await asyncio.sleep(0.05)
    raise RuntimeError(f"the Celery peer sent fewer than {count} emails within {within:.0f} s")


async def main() -> None:
    from bench.dispatch import bulk_bodies

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=5_000)
    args = parser.parse_args()
    async with SinkProcess() as sink:
        rate = await celery_rate(sink, bulk_bodies(args.requests))
    print(
        f"Celery peer: {rate:,.0f} requests/s over {args.requests:,} requests (one task and one email each)"
    )


if __name__ == "__main__":
    asyncio.run(main())
