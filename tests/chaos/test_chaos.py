"""The short chaos run (SPEC §12), in ``make test``: two daemons on PostgreSQL and RabbitMQ, 300
requests over five sandbox platforms, three kill -9 and a RabbitMQ restart, then the verifier's
checklist must hold in full. ``make chaos`` runs the long one.

On a developer's machine other tests share the broker, so the restart takes away only this run's
virtual host (its connections closed, reconnections refused for a while); under ``CI=true`` tests
run one at a time and the broker node itself is restarted.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from notifier.store import SqlStore
from tests.chaos.driver import Record, run_chaos
from tests.chaos.plan import Plan
from tests.chaos.verify import Check, report, verify

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.slow, pytest.mark.timeout(420)]


@pytest.fixture
def broker_restart(postgres_server: str, amqp_server: str) -> str:
    if shutil.which("rabbitmqctl") is None:
        pytest.fail("rabbitmqctl is needed to restart RabbitMQ in the chaos run")
    return "node" if os.environ.get("CI") == "true" else "vhost"


async def test_a_short_chaos_run_loses_nothing_and_decides_everything_once(
    tmp_path: Path, broker_restart: str
) -> None:
    plan = Plan(
        requests=300,
        publish_for=20.0,
        kills=3,
        broker_restart=broker_restart,
        postgres_restart=False,
        outages=False,
        sigterm=False,
        seed=7,
        ack_within=8.0,
        removal_within=16.0,
        settle_within=180.0,
    )

    async def checked(record: Record, store: SqlStore) -> tuple[str, list[Check]]:
        checks = await verify(record, store)
        return report(record, checks), checks

    text, checks = await run_chaos(plan, tmp_path, checked)
    print(text)
    assert len(checks) == 8
    failed = [c for c in checks if not c.holds]
    assert failed == [], text
