"""Fixtures of the acceptance tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.acceptance.harness import Daemons


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    running = Daemons(tmp_path)
    try:
        yield running
    finally:
        running.kill_leftovers()


@dataclass(frozen=True, slots=True)
class Shared:
    """The PostgreSQL database and the RabbitMQ queue of one test, deleted after it."""

    store_url: str
    amqp_url: str
    queue: str


@pytest.fixture
def shared(postgres_url: str, amqp_server: str, queue_name: str, amqp_cleanup: list[str]) -> Shared:
    amqp_cleanup.extend([queue_name, f"{queue_name}.acks"])
    return Shared(store_url=postgres_url, amqp_url=amqp_server, queue=queue_name)
