"""Restarting the machine's PostgreSQL and RabbitMQ under a running daemon, and publishing to a broker
that may be restarting meanwhile.

The services are shared with every other test on the machine: a restart is short (a PostgreSQL
restart takes a second or two; ``stop_app`` / ``start_app`` keeps the Erlang node up) and a test that
restarts one brings it back in a ``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Sequence

import aio_pika

__all__ = ["Publisher", "pg_ctlcluster", "pg_running", "rabbitmqctl"]


def _pg_version() -> str:
    return sorted(os.listdir("/etc/postgresql"))[-1]


def pg_ctlcluster(action: str) -> None:
    """``pg_ctlcluster VERSION main ACTION`` (stop, start, restart) of the machine's cluster."""
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", _pg_version(), "main", action],
        check=True,
        capture_output=True,
        timeout=120,
    )


def pg_running() -> bool:
    status = subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", _pg_version(), "main", "status"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    return status.returncode == 0


def rabbitmqctl(*args: str) -> str:
    """Run ``rabbitmqctl ARGS``; its standard output."""
    done = subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)
    return done.stdout.decode(errors="replace")


class Publisher:
    """Publishes to RabbitMQ as a platform's own client would: when the broker is away it connects
    again and publishes the whole batch again (a repeat is absorbed by notifier's idempotency)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self.retries = 0

    async def publish(self, queue: str, bodies: Sequence[bytes]) -> None:
        while True:
            try:
                if self._channel is None or self._channel.is_closed:
                    await self.close()
                    self._connection = await aio_pika.connect(self._url, timeout=5)
                    self._channel = await self._connection.channel(publisher_confirms=True)
                for body in bodies:
                    await self._channel.default_exchange.publish(
                        aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                        routing_key=queue,
                        timeout=10,
                    )
                return
            except Exception:  # any failure of a broker that is going or coming back: try again
                self.retries += 1
                await self.close()
                await asyncio.sleep(0.5)

    async def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()
