"""The shared services of a chaos run: its own PostgreSQL database and RabbitMQ virtual host, and the
ways to disturb them.

A RabbitMQ "restart" is either the real one (``stop_app`` / ``start_app``: every client on the
machine loses the broker for a few seconds) or, where other tests share the broker right now, an
outage of this run's virtual host only: its connections are closed and its permissions withdrawn,
so every reconnection is refused until they are given back.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

import asyncpg

from tests.restarts import pg_ctlcluster, rabbitmqctl

PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
AMQP_BASE = "amqp://guest:guest@127.0.0.1:5672"


@dataclass(frozen=True, slots=True)
class Services:
    database: str
    vhost: str
    admin_dsn: str = PG_ADMIN_DSN

    @property
    def store_url(self) -> str:
        return self.admin_dsn.rsplit("/", 1)[0] + f"/{self.database}"

    @property
    def amqp_url(self) -> str:
        return f"{AMQP_BASE}/{self.vhost}"


async def _admin(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def create_services(admin_dsn: str = PG_ADMIN_DSN) -> Services:
    token = uuid.uuid4().hex[:10]
    services = Services(database=f"notifier_chaos_{token}", vhost=f"chaos-{token}", admin_dsn=admin_dsn)
    await _admin(admin_dsn, f'CREATE DATABASE "{services.database}"')
    await asyncio.to_thread(rabbitmqctl, "add_vhost", services.vhost)
    await asyncio.to_thread(_grant, services.vhost)
    return services


async def drop_services(services: Services) -> None:
    await _admin(services.admin_dsn, f'DROP DATABASE IF EXISTS "{services.database}" WITH (FORCE)')
    await asyncio.to_thread(rabbitmqctl, "delete_vhost", services.vhost)


def _grant(vhost: str) -> None:
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")


def restart_postgres() -> None:
    pg_ctlcluster("restart")


def stop_broker(services: Services, mode: str) -> None:
    if mode == "node":
        rabbitmqctl("stop_app")
        return
    rabbitmqctl("clear_permissions", "-p", services.vhost, "guest")
    # Connections already open keep working without permissions: close this vhost's, and any that
    # were opening while the permissions went.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        listed = rabbitmqctl("list_connections", "-q", "--no-table-headers", "pid", "vhost")
        pids = [line.split()[0] for line in listed.splitlines() if line.split()[-1:] == [services.vhost]]
        if not pids:
            return
        for pid in pids:
            try:
                rabbitmqctl("close_connection", pid, "chaos: the broker goes away")
            except Exception:  # noqa: S112 - closed meanwhile
                continue
        time.sleep(0.2)


def start_broker(services: Services, mode: str) -> None:
    if mode == "node":
        rabbitmqctl("start_app")
        rabbitmqctl("await_startup")
        return
    _grant(services.vhost)
