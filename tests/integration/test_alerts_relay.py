"""Operations alerts over a relay of their own (``[alerts]``): when the notice relay is what fails,
the alert about the failed notice still reaches the operations staff.

Two real SMTP servers (aiosmtpd): the notice relay refuses every message, the alerts relay takes
them. The daemon runs in this process on a simulated clock, on a SQLite store in a temporary folder.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from notifier.app import Daemon
from notifier.clock import SimulatedClock
from notifier.domain.models import NoticeState
from notifier.domain.notices import AttemptOutcome
from notifier.sandbox.smtp import SmtpSink
from notifier.settings import load_settings
from tests.acceptance.harness import notifier, write_config
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(60)

OPS = "ops@authority.example"
REFUSAL = "554 5.7.1 relay refuses everything"


def request_body(request_id: str) -> bytes:
    return json.dumps(
        {
            "request_id": request_id,
            "platform": "telegram",
            "urls": [f"https://telegram.example/v/{request_id}"],
            "category": "deepfake_sexual_abuse",
        }
    ).encode()


def config(tmp_path: Path, notice_relay: SmtpSink, alerts: str) -> Path:
    database = tmp_path / "var" / "notifier.db"
    return write_config(
        tmp_path,
        store_url=f"sqlite:///{database}",
        queue_url=f"sqlite:///{database}",
        http_listen="",
        runtime='grace = "5s"\nin_call_retry_wait = "0.01"',
        extra=f"""
[smtp]
host = "127.0.0.1"
port = {notice_relay.port}
starttls = "off"
from = "takedown@authority.example"

{alerts}
""",
        platforms="""
[platforms.telegram]
name = "Telegram"
channel = "email"
[platforms.telegram.email]
to = ["abuse@telegram.example"]
[platforms.telegram.batch]
max_items = 1
""",
    )


@pytest.fixture
async def relays() -> AsyncIterator[tuple[SmtpSink, SmtpSink]]:
    notice_relay = await SmtpSink().start()
    alerts_relay = await SmtpSink().start()
    notice_relay.faults.data_answers = [REFUSAL] * 20
    try:
        yield notice_relay, alerts_relay
    finally:
        await alerts_relay.stop()
        await notice_relay.stop()


async def fail_one_notice(config_path: Path) -> tuple[Daemon, str]:
    """Start the daemon, submit one request and wait until its notice has failed for good."""
    daemon = Daemon(load_settings(config_path, {}), clock=SimulatedClock())
    await daemon.start()
    assert daemon.queue is not None and daemon.store is not None
    store = daemon.store
    await daemon.queue.publish("takedown.requests", [request_body("r-1")])

    async def failed() -> bool:
        found = await store.get_requests(["r-1"])
        if not found or found[0].notice_id is None:
            return False
        (notice,) = await store.get_notices([found[0].notice_id])
        return notice.state is NoticeState.FAILED

    await wait_for(failed, within=30, what="the notice to fail")
    (request,) = await store.get_requests(["r-1"])
    assert request.notice_id is not None
    return daemon, request.notice_id


async def stop(daemon: Daemon) -> None:
    daemon.stop()
    assert await daemon.wait() == 0


async def test_an_alert_reaches_the_alerts_relay_while_the_notice_relay_refuses_everything(
    tmp_path: Path, relays: tuple[SmtpSink, SmtpSink]
) -> None:
    notice_relay, alerts_relay = relays
    path = config(
        tmp_path,
        notice_relay,
        f"""
[alerts]
host = "127.0.0.1"
port = {alerts_relay.port}
starttls = "off"
from = "notifier-alerts@authority.example"
""",
    )
    daemon, notice_id = await fail_one_notice(path)
    try:
        (alert,) = await alerts_relay.wait_for(1)
        assert daemon.store is not None
        (notice,) = await daemon.store.get_notices([notice_id])
    finally:
        await stop(daemon)

    assert [a.outcome for a in notice.attempts] == [AttemptOutcome.PERMANENT_ERROR]
    assert alert.recipients == (OPS,)
    # The envelope sender is the alert's own VERP address, so a bounce of it is told apart.
    assert alert.sender == f"bounces+alert.{notice_id}.failed@authority.example"
    message = alert.message()
    assert message["From"].addresses[0].addr_spec == "notifier-alerts@authority.example"
    assert notice_id in str(message["Subject"])
    body: Any = message.get_body(preferencelist=("plain",))
    assert f"notifier retry {notice_id}" in body.get_content()
    # The notice relay refused the notice, and nothing else was offered to it.
    assert notice_relay.received == []
    assert len(notice_relay.faults.data_answers) == 20 - 1


async def test_without_an_alerts_host_alerts_use_the_notice_relay_and_from_changes_only_the_sender(
    tmp_path: Path, relays: tuple[SmtpSink, SmtpSink]
) -> None:
    notice_relay, alerts_relay = relays
    # This time the notice relay takes mail and only the platform's address is refused.
    notice_relay.faults.data_answers = []
    notice_relay.faults.recipients["abuse@telegram.example"] = "550 5.1.1 no such user"
    path = config(tmp_path, notice_relay, '[alerts]\nfrom = "notifier-alerts@authority.example"')
    daemon, notice_id = await fail_one_notice(path)
    try:
        (alert,) = await notice_relay.wait_for(1)
    finally:
        await stop(daemon)

    assert alert.recipients == (OPS,)
    assert alert.sender == f"bounces+alert.{notice_id}.failed@authority.example"
    assert alert.message()["From"].addresses[0].addr_spec == "notifier-alerts@authority.example"
    assert notice_id in str(alert.message()["Subject"])
    assert alerts_relay.connections == 0


def test_check_config_says_which_relay_alerts_use(tmp_path: Path) -> None:
    relay = SmtpSink(port=2526)  # never started: check-config connects to nothing
    alerts = (
        '[alerts]\nhost = "alerts.authority.example"\nport = 587\nfrom = "notifier-alerts@authority.example"'
    )
    result = notifier("check-config", "-c", str(config(tmp_path / "own", relay, alerts)))
    assert result.returncode == 0, result.stderr.decode()
    assert (
        "alerts: alerts.authority.example:587  starttls=auto  from notifier-alerts@authority.example"
        in result.stdout.decode()
    )

    result = notifier("check-config", "-c", str(config(tmp_path / "shared", relay, "")))
    assert result.returncode == 0, result.stderr.decode()
    assert "alerts: through the [smtp] relay  from takedown@authority.example" in result.stdout.decode()
