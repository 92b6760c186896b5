"""Acknowledgements end to end: signed callbacks, the ack queue and manual entries, on the real daemon.

A notice is delivered to the sandbox platform API first; then the platform answers in every way
SPEC §7 lists, including forged, stale, replayed, oversized and misdirected answers.
"""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from standardwebhooks.webhooks import Webhook

from notifier.app import Daemon
from notifier.clock import SimulatedClock
from notifier.domain.models import NoticeState, RequestState
from notifier.domain.notices import Notice
from notifier.sandbox.api import PlatformApi
from notifier.settings import load_settings
from tests.acceptance.harness import notifier, status_json, write_config
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(180)

SECRET = "whsec_" + base64.b64encode(b"videohost callback signing key 32b").decode()


def request_body(request_id: str) -> bytes:
    return json.dumps(
        {
            "request_id": request_id,
            "platform": "videohost",
            "urls": [f"https://videohost.example/v/{request_id}"],
            "category": "deepfake_sexual_abuse",
        }
    ).encode()


class World:
    def __init__(
        self,
        tmp_path: Path,
        api: PlatformApi,
        monkeypatch: pytest.MonkeyPatch,
        *,
        store_url: str | None = None,
        queue_url: str | None = None,
        requests_queue: str = "takedown.requests",
        acks_queue: str = "takedown.acks",
    ) -> None:
        monkeypatch.setenv("TEST_VIDEOHOST_SECRET", SECRET)
        database = f"sqlite:///{tmp_path / 'var' / 'notifier.db'}"
        self.requests_queue, self.acks_queue = requests_queue, acks_queue
        self.config = write_config(
            tmp_path,
            store_url=store_url or database,
            queue_url=queue_url or database,
            requests_queue=requests_queue,
            acks_queue=acks_queue,
            http_listen="127.0.0.1:0",
            runtime='grace = "5s"\nin_call_retry_wait = "0.01"',
            platforms=f"""
[platforms.videohost]
name = "VideoHost"
channel = "api"
[platforms.videohost.api]
url = "{api.url}"
signing_secret_env = "TEST_VIDEOHOST_SECRET"
[platforms.videohost.batch]
max_items = 2

[platforms.telegram]
name = "Telegram"
channel = "manual"
""",
        )
        self.clock = SimulatedClock()
        self.daemon = Daemon(load_settings(self.config), clock=self.clock)

    @property
    def callback_url(self) -> str:
        assert self.daemon.http is not None
        return f"http://127.0.0.1:{self.daemon.http.bound_port}/v1/callbacks"

    async def delivered_notice(self) -> Notice:
        assert self.daemon.queue is not None and self.daemon.store is not None
        store = self.daemon.store
        await self.daemon.queue.publish(self.requests_queue, [request_body("r-1"), request_body("r-2")])

        async def delivered() -> bool:
            found = await store.get_requests(["r-1"])
            return bool(found) and found[0].state is RequestState.DELIVERED

        await wait_for(delivered, within=30, what="the notice delivered to the API")
        (stored,) = await store.get_requests(["r-1"])
        assert stored.notice_id is not None
        (notice,) = await store.get_notices([stored.notice_id])
        return notice

    async def notice(self, notice_id: str) -> Notice:
        assert self.daemon.store is not None
        (notice,) = await self.daemon.store.get_notices([notice_id])
        return notice


@pytest.fixture
async def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    api = await PlatformApi().start()
    w = World(tmp_path, api, monkeypatch)
    await w.daemon.start()
    try:
        yield w
    finally:
        w.daemon.stop()
        assert await w.daemon.wait() == 0
        await api.stop()


def signed(body: bytes, *, webhook_id: str, secret: str = SECRET, age: float = 0.0) -> dict[str, str]:
    timestamp = datetime.fromtimestamp(time.time() - age, tz=UTC)
    signature = Webhook(secret).sign(webhook_id, timestamp, body.decode())
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


async def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=io.BytesIO(body), headers=headers) as r,
    ):
        return r.status, await r.text()


async def test_a_signed_callback_acknowledges_and_a_replay_is_not_applied_twice(world: World) -> None:
    notice = await world.delivered_notice()
    await world.clock.advance(timedelta(hours=3))
    body = json.dumps({"notice_id": notice.notice_id, "status": "received", "ticket": "VH-900"}).encode()
    status, _ = await post(f"{world.callback_url}/videohost", body, signed(body, webhook_id="msg_1"))
    assert status == 204
    acknowledged = await world.notice(notice.notice_id)
    assert acknowledged.state is NoticeState.ACKNOWLEDGED
    assert acknowledged.acknowledged_at == world.clock.now()

    await world.clock.advance(timedelta(hours=1))
    status, _ = await post(f"{world.callback_url}/videohost", body, signed(body, webhook_id="msg_1"))
    assert status == 204
    assert (await world.notice(notice.notice_id)).acknowledged_at == acknowledged.acknowledged_at

    removed = json.dumps({"notice_id": notice.notice_id, "status": "removed"}).encode()
    status, _ = await post(f"{world.callback_url}/videohost", removed, signed(removed, webhook_id="msg_2"))
    assert status == 204
    resolved = await world.notice(notice.notice_id)
    assert resolved.state is NoticeState.RESOLVED
    assert world.daemon.store is not None
    stored = await world.daemon.store.get_requests(["r-1", "r-2"])
    assert {s.state for s in stored} == {RequestState.REMOVED}
    assert all(s.resolved_at == world.clock.now() for s in stored)

    # /metrics, scraped as Prometheus would: both requests timed, 3 h to ack, 4 h to removal.
    async with (
        aiohttp.ClientSession() as session,
        session.get(world.callback_url.replace("/v1/callbacks", "/metrics")) as r,
    ):
        metrics = await r.text()
    assert 'notifier_time_to_ack_seconds_count{platform="videohost"} 2.0' in metrics
    assert 'notifier_time_to_ack_seconds_bucket{le="14400.0",platform="videohost"} 2.0' in metrics
    assert 'notifier_time_to_ack_seconds_bucket{le="7200.0",platform="videohost"} 0.0' in metrics
    assert 'notifier_time_to_removal_seconds_sum{platform="videohost"} 28800.0' in metrics
    assert 'notifier_acks_total{platform="videohost",source="callback",status="removed"} 1.0' in metrics
    # The gauges, read from the store at the scrape: everything removed, nothing left open.
    assert "notifier_open_items_up 1.0" in metrics
    assert 'notifier_open_requests{platform="videohost",state="delivered"} 0.0' in metrics
    assert 'notifier_oldest_open_seconds{kind="unacknowledged",platform="videohost"} 0.0' in metrics
    assert 'notifier_open_notices{platform="telegram",state="queued"} 0.0' in metrics


@pytest.mark.parametrize(
    ("case", "expected"),
    [("forged", 401), ("stale", 401), ("unsigned", 401), ("unknown_platform", 404), ("oversized", 413)],
)
async def test_bad_callbacks_are_refused_and_change_nothing(world: World, case: str, expected: int) -> None:
    notice = await world.delivered_notice()
    body = json.dumps({"notice_id": notice.notice_id, "status": "removed"}).encode()
    url, headers = f"{world.callback_url}/videohost", signed(body, webhook_id=f"msg_{case}")
    if case == "forged":
        headers = signed(
            body, webhook_id="msg_forged", secret="whsec_" + base64.b64encode(b"x" * 24).decode()
        )
    elif case == "stale":
        headers = signed(body, webhook_id="msg_stale", age=6 * 60)
    elif case == "unsigned":
        headers = {"content-type": "application/json"}
    elif case == "unknown_platform":
        url = f"{world.callback_url}/myspace"
    elif case == "oversized":
        body = body[:-1] + b', "pad": "' + b"x" * (300 * 1024) + b'"}'
        headers = signed(body, webhook_id="msg_big")
    status, text = await post(url, body, headers)
    assert status == expected
    assert json.loads(text)["error"]
    after = await world.notice(notice.notice_id)
    assert after.state is NoticeState.DELIVERED
    assert after.acknowledged_at is None


@pytest.mark.parametrize(
    "ack",
    [
        {"notice_id": "TD-videohost-20240101-999999", "status": "removed"},
        {
            "notice_id": "__NOTICE__",
            "status": "partial",
            "items": [{"request_id": "not-ours", "status": "removed"}],
        },
        {"notice_id": "TD-telegram-20240101-000001", "status": "removed"},
    ],
    ids=["unknown-notice", "unknown-item", "another-platforms-notice"],
)
async def test_a_valid_signature_for_something_unknown_is_422(world: World, ack: dict[str, object]) -> None:
    notice = await world.delivered_notice()
    body = json.dumps(ack).replace("__NOTICE__", notice.notice_id).encode()
    status, text = await post(f"{world.callback_url}/videohost", body, signed(body, webhook_id="msg_x"))
    assert status == 422, text
    assert (await world.notice(notice.notice_id)).state is NoticeState.DELIVERED


async def test_the_ack_queue_applies_acks_and_dead_letters_what_it_cannot_use(world: World) -> None:
    notice = await world.delivered_notice()
    assert world.daemon.queue is not None and world.daemon.store is not None
    store = world.daemon.store
    await world.daemon.queue.publish(
        "takedown.acks",
        [
            json.dumps(
                {
                    "notice_id": notice.notice_id,
                    "status": "partial",
                    "items": [{"request_id": "r-1", "status": "removed"}],
                }
            ).encode(),
            b"{not json",
            json.dumps({"notice_id": "TD-videohost-20240101-999999", "status": "removed"}).encode(),
            json.dumps(
                {
                    "notice_id": notice.notice_id,
                    "status": "partial",
                    "items": [{"request_id": "r-1", "status": "received"}],
                }
            ).encode(),
        ],
    )

    async def settled() -> bool:
        return (await store.status_counts()).dead_letters_total == 2

    await wait_for(settled, within=30, what="two dead letters from the ack queue")
    (r1,) = await store.get_requests(["r-1"])
    assert r1.state is RequestState.REMOVED  # the later "received" did not move it back
    letters = await store.dead_letters()
    assert {letter.source for letter in letters} == {"sqlite:takedown.acks"}
    assert any("no notice TD-videohost-20240101-999999" in letter.reason for letter in letters)
    assert any(letter.reason.startswith("body is not valid JSON") for letter in letters)


async def test_manual_acks_from_the_command_line(world: World) -> None:
    notice = await world.delivered_notice()
    assert notice.delivered_at is not None
    world.daemon.stop()
    assert await world.daemon.wait() == 0
    config = str(world.config)

    before = (notice.delivered_at - timedelta(minutes=5)).isoformat()
    result = notifier("ack", notice.notice_id, "--status", "removed", "--at", before, "-c", config)
    assert result.returncode == 1
    assert "before the notice's delivery" in result.stderr.decode()

    future = "2999-01-01T00:00:00+00:00"
    result = notifier("ack", notice.notice_id, "--status", "removed", "--at", future, "-c", config)
    assert result.returncode == 1
    assert "in the future" in result.stderr.decode()

    result = notifier(
        "ack",
        notice.notice_id,
        "--status",
        "removed",
        "--request-id",
        "r-2",
        "--note",
        "phone call, Ms. Kim",
        "-c",
        config,
    )
    assert result.returncode == 0, result.stderr.decode()
    again = notifier("ack", notice.notice_id, "--status", "received", "--request-id", "r-2", "-c", config)
    assert again.returncode == 0
    assert "nothing changed" in again.stdout.decode()

    document = status_json(world.config)
    assert document["requests"]["videohost"]["removed"] == 1
    assert document["requests"]["videohost"]["delivered"] == 1
    assert document["notices"]["videohost"]["acknowledged"] == 1
    # Restart so the fixture's stop finds a running daemon.
    world.daemon = Daemon(load_settings(world.config), clock=world.clock)
    await world.daemon.start()


@pytest.mark.postgres
@pytest.mark.rabbitmq
async def test_the_ack_queue_on_rabbitmq_applies_acks_and_dead_letters_to_the_broker_too(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    postgres_url: str,
    amqp_server: str,
    queue_name: str,
    amqp_cleanup: list[str],
) -> None:
    import aio_pika

    acks_queue = f"{queue_name}.acks"
    amqp_cleanup.extend([queue_name, acks_queue])
    api = await PlatformApi().start()
    w = World(
        tmp_path,
        api,
        monkeypatch,
        store_url=postgres_url,
        queue_url=amqp_server,
        requests_queue=queue_name,
        acks_queue=acks_queue,
    )
    await w.daemon.start()
    try:
        notice = await w.delivered_notice()
        assert w.daemon.queue is not None and w.daemon.store is not None
        store = w.daemon.store
        ack = json.dumps({"notice_id": notice.notice_id, "status": "removed"}).encode()
        await w.daemon.queue.publish(acks_queue, [ack, b"\xff not an ack"])

        async def settled() -> bool:
            resolved = (await w.notice(notice.notice_id)).state is NoticeState.RESOLVED
            return resolved and (await store.status_counts()).dead_letters_total == 1

        await wait_for(settled, within=30, what="the ack applied and the bad one dead-lettered")
    finally:
        w.daemon.stop()
        assert await w.daemon.wait() == 0
        await api.stop()
    connection = await aio_pika.connect(amqp_server)
    async with connection:
        channel = await connection.channel()
        dead = await channel.declare_queue(f"{acks_queue}.dead", passive=True)
        incoming = await dead.get(fail=False, no_ack=True)
        assert incoming is not None and incoming.headers.get("x-notifier-reason")
