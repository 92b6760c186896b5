"""Who did what (SPEC §15), from the command line and the console: ``notifier ack``/``retry`` keep
``--by`` or the operating-system user, the console the logged-in user, each with when it was entered
apart from the time it claims; ``notifier status --json`` shows them; the report counts the manual
acknowledgements apart."""

from __future__ import annotations

import getpass
import json
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from notifier.clock import SimulatedClock
from notifier.domain.acks import Ack, AckStatus
from notifier.domain.models import TakedownRequest
from notifier.domain.report import Bounds
from notifier.metrics import Metrics
from notifier.ports import Incoming
from notifier.services.acks import AckService
from notifier.services.report import build_report
from notifier.services.status import lookup
from notifier.store import SqlStore
from tests.acceptance.harness import notifier, write_config
from tests.console_seed import BOUND, HOUR, NOW, PASSWORD, console_app, console_deps, seed
from tests.stores import sqlite_store

pytestmark = pytest.mark.timeout(120)

Client = TestClient[web.Request, web.Application]
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
async def seeded(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A seeded store on disk and a configuration naming it; the store closed for the commands."""
    (tmp_path / "var").mkdir()
    store = await sqlite_store(tmp_path / "var")
    ids = await seed(store, tmp_path / "outbox")
    pending = TakedownRequest(
        request_id="kcsc-2024-000501", platform="telegram", urls=("https://t.me/c/501",), category="csam"
    )
    await store.ingest([Incoming(request=pending, source="test")], [], now=NOW)
    await store.close()
    config = write_config(
        tmp_path,
        store_url=f"sqlite:///{tmp_path / 'var' / 'store.db'}",
        queue_url=f"sqlite:///{tmp_path / 'var' / 'queue.db'}",
        http_listen="",
    )
    return config, ids


def status(config: Path, *ids: str) -> dict[str, Any]:
    result = notifier("status", "--json", *ids, "-c", str(config))
    assert result.returncode == 0, result.stderr.decode()
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_the_command_line_keeps_by_or_the_os_user_and_when_it_was_entered(
    seeded: tuple[Path, dict[str, str]],
) -> None:
    config, ids = seeded
    c = str(config)
    claimed = (NOW - 30 * HOUR).isoformat()
    named = notifier(
        "ack", ids["breached"], "--status", "received", "--at", claimed, "--by", " Kim  Min-ji ", "-c", c
    )
    assert named.returncode == 0, named.stderr.decode()
    unnamed = notifier("ack", ids["fresh"], "--status", "removed", "-c", c)
    assert unnamed.returncode == 0, unnamed.stderr.decode()
    retried = notifier("retry", ids["failed"], "--by", "ops-night", "-c", c)
    assert retried.returncode == 0, retried.stderr.decode()
    submitted = notifier(
        "ack", ids["portal"], "--status", "submitted", "--at", (NOW - 4 * HOUR).isoformat(), "-c", c
    )
    assert submitted.returncode == 0, submitted.stderr.decode()
    empty = notifier("ack", ids["fresh"], "--status", "removed", "--by", "   ", "-c", c)
    assert (empty.returncode, empty.stderr.decode().strip()) == (
        2,
        "notifier: --by is empty: name who entered the record",
    )

    reason = config.parent / "reason.txt"
    reason.write_text("Decided in error: the page is the victim's own.\n", encoding="utf-8")
    withdrawn = notifier("withdraw", "kcsc-2024-000501", "--reason-file", str(reason), "--by", "lee", "-c", c)
    assert withdrawn.returncode == 0, withdrawn.stderr.decode()

    document = status(config, ids["breached"], ids["fresh"], ids["failed"], ids["portal"], "kcsc-2024-000501")
    notices = {n["notice_id"]: n for n in document["notices"]}
    [ack] = notices[ids["breached"]]["acknowledgements"]
    assert (ack["by"], ack["source"], ack["status"], ack["manual"]) == (
        "Kim Min-ji",
        "manual",
        "received",
        True,
    )
    assert moment(ack["at"]) == NOW - 30 * HOUR  # the time it claims
    assert moment(ack["entered_at"]) > NOW  # when it was typed in: the machine's clock, today
    assert "note" not in ack
    [own] = notices[ids["fresh"]]["acknowledgements"]
    assert own["by"] == getpass.getuser()
    assert own["at"] == own["entered_at"]  # no --at: it claims the time it was entered
    [retry] = notices[ids["failed"]]["manual_records"]
    assert (retry["action"], retry["by"], retry["source"]) == ("retry", "ops-night", "cli")
    assert retry["at"] == retry["entered_at"]
    [submission] = notices[ids["portal"]]["manual_records"]
    assert (submission["action"], submission["by"]) == ("submitted", getpass.getuser())
    assert moment(submission["at"]) == NOW - 4 * HOUR
    assert moment(submission["entered_at"]) > NOW
    assert notices[ids["breached"]]["manual_records"] == []
    [request] = document["requests"]
    [withdrawal] = request["manual_records"]
    assert (withdrawal["action"], withdrawal["by"], withdrawal["notice_id"]) == ("withdraw", "lee", None)
    assert withdrawal["request_id"] == "kcsc-2024-000501"
    assert "victim" not in json.dumps(document)  # the reason is sent and kept, never shown here
    text = notifier("status", ids["breached"], ids["failed"], "-c", c).stdout.decode()
    assert "ack received (applied)  manual  entered " in text
    assert "by Kim Min-ji" in text
    assert "retry    entered " in text and "by ops-night (cli)" in text


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    opened = await sqlite_store(tmp_path)
    try:
        yield opened
    finally:
        await opened.close()


async def logged_in(client: Client, username: str) -> str:
    page = await client.get("/console/login")
    token = CSRF.search(await page.text())
    assert token is not None
    response = await client.post(
        "/console/login",
        data={"username": username, "password": PASSWORD, "csrf_token": token.group(1)},
        allow_redirects=False,
    )
    assert response.status == 303
    overview = CSRF.search(await (await client.get("/console/")).text())
    assert overview is not None
    return overview.group(1)


async def test_the_console_keeps_the_logged_in_user_and_the_clocks_time(
    store: SqlStore, tmp_path: Path
) -> None:
    ids = await seed(store, tmp_path / "outbox")
    clock = SimulatedClock(NOW)
    deps = console_deps(store, tmp_path / "outbox", clock)
    async with TestClient(TestServer(console_app(deps))) as client:
        token = await logged_in(client, "olivia")
        claimed = NOW - 20 * HOUR
        ack = await client.post(
            f"/console/notices/{ids['breached']}/ack",
            data={"status": "removed", "at": claimed.isoformat(), "csrf_token": token},
            allow_redirects=False,
        )
        assert ack.status == 303, await ack.text()
        await clock.advance(timedelta(minutes=2))
        retry = await client.post(
            f"/console/notices/{ids['failed']}/retry", data={"csrf_token": token}, allow_redirects=False
        )
        assert retry.status == 303
        page = await (await client.get(f"/console/notices/{ids['failed']}")).text()
        assert '<tr class="event retry">' in page
        assert "Entered 2024-09-10 03:02:00 UTC · olivia" in page

    document = await lookup(store, [ids["breached"], ids["failed"]], now=clock.now())
    notices = {n["notice_id"]: n for n in document["notices"]}
    [entered] = notices[ids["breached"]]["acknowledgements"]
    assert (entered["by"], entered["source"], entered["manual"]) == ("olivia", "console:olivia", True)
    assert (moment(entered["at"]), moment(entered["entered_at"])) == (claimed, NOW)
    [retried] = notices[ids["failed"]]["manual_records"]
    assert (retried["action"], retried["by"], retried["source"]) == ("retry", "olivia", "console")
    assert moment(retried["entered_at"]) == NOW + timedelta(minutes=2)


async def test_the_report_counts_manual_acknowledgements_apart_from_the_platforms_own(
    store: SqlStore, tmp_path: Path
) -> None:
    ids = await seed(store, tmp_path / "outbox")
    acks = AckService(
        store=store, clock=SimulatedClock(NOW), metrics=Metrics(), fallbacks={}, deliver_within=6 * HOUR
    )
    await acks.acknowledge(
        Ack(
            notice_id=ids["fresh"],
            status=AckStatus.RECEIVED,
            received_at=NOW - HOUR,
            source="callback:videohost",
        )
    )
    await acks.acknowledge(
        Ack(
            notice_id=ids["breached"],
            status=AckStatus.REMOVED,
            received_at=NOW - HOUR,
            source="manual",
            by="Kim Min-ji",
            entered_at=NOW,
        )
    )
    bounds = {
        p: Bounds(ack_within=BOUND, removal_within=BOUND) for p in ("telegram", "videohost", "clipshare")
    }

    document = await build_report(store, bounds, now=NOW)

    figures = {p["platform"]: p for p in document["platforms"]}
    assert (figures["telegram"]["platform_acks"], figures["telegram"]["manual_acks"]) == (0, 1)
    assert (figures["videohost"]["platform_acks"], figures["videohost"]["manual_acks"]) == (1, 0)
    assert (figures["clipshare"]["platform_acks"], figures["clipshare"]["manual_acks"]) == (0, 0)
    # The old keys are unchanged: one request acknowledged on each of the two platforms.
    assert (figures["telegram"]["acknowledged"], figures["videohost"]["acknowledged"]) == (2, 1)
