"""``notifier verify`` and ``status --json`` (SPEC §13) as an operator runs them, against a real
site and a SQLite store."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestServer

from notifier.clock import SimulatedClock
from notifier.store import create_store
from tests.acceptance.harness import notifier, write_config
from tests.unit.test_verification_service import Platform, delivered_notice


async def test_verify_checks_a_notice_now_and_status_shows_what_the_checks_found(tmp_path: Path) -> None:
    site = Platform()

    async def post(request: web.Request) -> web.StreamResponse:
        if request.match_info["name"] in site.up:
            return web.Response(text="a post")
        return web.Response(status=410)

    app = web.Application()
    app.router.add_get("/p/{name}", post)
    config = write_config(
        tmp_path,
        store_url=f"sqlite:///{tmp_path / 'store.db'}",
        queue_url=f"sqlite:///{tmp_path / 'queue.db'}",
        extra="[verify]\nallow_private = true\n",
    )
    async with TestServer(app, host="127.0.0.1", port=0) as server:
        site.port = server.port or 0
        store = await create_store(f"sqlite:///{tmp_path / 'store.db'}")
        notice_id = await delivered_notice(store, SimulatedClock(), site, ["gone", "kept"])
        await store.close()
        site.up.discard("gone")

        checked = await asyncio.to_thread(notifier, "verify", notice_id, "--json", "-c", str(config))
        status = await asyncio.to_thread(notifier, "status", "--json", "r-gone", "r-kept", "-c", str(config))

    assert checked.returncode == 0, checked.stderr.decode()
    outcomes = {r["request_id"]: [c["outcome"] for c in r["checks"]] for r in json.loads(checked.stdout)}
    assert outcomes == {"r-gone": ["removed"], "r-kept": ["live"]}
    assert status.returncode == 0, status.stderr.decode()
    views = {r["request_id"]: r for r in json.loads(status.stdout)["requests"]}
    assert views["r-gone"]["verified_removed_at"] is not None
    assert views["r-kept"]["verified_removed_at"] is None
    assert views["r-gone"]["checks"][0]["http_status"] == 410
    assert views["r-kept"]["checks"][0]["rule"] == "status:200"
    assert {key for key in views["r-kept"]} >= {
        "reappeared_at",
        "false_claims",
        "linked_requests",
        "renotices",
    }
    assert views["r-kept"]["renotices"] == []
