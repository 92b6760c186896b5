"""Checks per second (SPEC §11, §13): the real prober against a local aiohttp server, 1,000 URLs
across 50 host names, under the per-host limits.

Every host name resolves (through a resolver given to the prober, so no DNS is asked) to the one
local server, which answers half of the posts 404 and half 200 with a 2 KiB page; the prober keeps
to ``per_host_concurrency`` and ``per_host_per_minute`` per name, as in production, so the
figure is what one daemon checks with its defaults. A warm-up round opens the connections; the
timed rounds each check every URL once (the per-minute budget of 600 a host covers the 20 URLs a
host has in a round). The decision, the SHA-256 of the bytes read and the per-host accounting are
all in what is timed.

With ``--due N`` it then measures the daemon's side: N requests whose check is due now (a claim
of removal each, written straight into a SQLite store in a temporary folder), worked through by the
real :class:`notifier.services.verification.VerificationService` with the same prober and server,
and prints the checks per second and the process's peak RSS.

Usage: .venv/bin/python bench/verify.py [--urls 1000] [--hosts 50] [--rounds 3] [--due 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from notifier.channels.prober import Prober, ProberOptions
from notifier.clock import SimulatedClock
from notifier.domain.models import RequestState, TakedownRequest
from notifier.domain.verification import CheckOutcome, VerifyRules, VerifySchedule
from notifier.logging import configure_logging
from notifier.metrics import Metrics
from notifier.services.verification import VerificationService
from notifier.store import create_store
from notifier.store.tables import requests

HOURS_24 = timedelta(hours=24)
PAGE = b"<html><body>" + b"x" * 2048 + b"</body></html>"


class LocalNames(AbstractResolver):
    """Every name is the local server."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host="127.0.0.1", port=port, family=socket.AF_INET, proto=0, flags=0)
        ]

    async def close(self) -> None:
        return None


async def serve() -> tuple[web.AppRunner, int]:
    async def post(request: web.Request) -> web.StreamResponse:
        if int(request.match_info["n"]) % 2:
            return web.Response(status=404)
        return web.Response(body=PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_get("/p/{n}", post)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port: int = runner.addresses[0][1]
    return runner, port


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _due_row(n: int, port: int, hosts: int, now: datetime) -> dict[str, object]:
    """A request the platform said was removed at ``now``: its check is due."""
    url = f"http://host{n % hosts:02d}.bench.example:{port}/p/{n}"
    request = TakedownRequest(request_id=f"r{n:07d}", platform="bench", urls=(url,), category="c")
    return {
        "request_id": request.request_id,
        "platform": "bench",
        "state": RequestState.REMOVED.value,
        "priority": request.priority.value,
        "content_hash": request.content_hash(),
        "body": request.canonical_json(),
        "source": "bench",
        "ingested_at": now,
        "delivered_at": now,
        "resolved_at": now,
        "verify_due_at": now,
    }


async def due(port: int, hosts: int, count: int) -> None:
    """``count`` requests due for a check, worked through by the service; checks/s and peak RSS."""
    clock = SimulatedClock(datetime(2026, 1, 5, tzinfo=UTC))
    now = clock.now()
    with tempfile.TemporaryDirectory(prefix="notifier-bench-verify-") as folder:
        store = await create_store(f"sqlite:///{Path(folder) / 'store.db'}")
        async with store.engine.begin() as conn:
            # A chunk at a time, so that loading the backlog does not set the peak RSS itself.
            for start in range(0, count, 5000):
                rows = [_due_row(n, port, hosts, now) for n in range(start, min(count, start + 5000))]
                await conn.execute(requests.insert(), rows)
        print(f"{count:,} checks due; peak RSS before: {_peak_rss_mib():.0f} MiB")
        options = ProberOptions(user_agent="notifier-bench", allow_private=True)  # the default limits
        async with Prober(options, resolver=LocalNames()) as prober:
            service = VerificationService(
                store=store,
                checker=prober,
                rules={"bench": VerifyRules()},
                schedules={"bench": VerifySchedule(remind_after=HOURS_24, removal_within=HOURS_24)},
                clock=clock,
                metrics=Metrics(),
            )
            started = time.perf_counter()
            await service.round()
            elapsed = time.perf_counter() - started
        await store.close()
    print(
        f"service: {count:,} due checks in {elapsed:.1f} s = {count / elapsed:,.0f} checks/s "
        f"(stored, timers moved on); peak RSS {_peak_rss_mib():.0f} MiB"
    )


async def main(urls: int, hosts: int, rounds: int, due_checks: int) -> None:
    runner, port = await serve()
    targets = [f"http://host{n % hosts:02d}.bench.example:{port}/p/{n}" for n in range(urls)]
    options = ProberOptions(user_agent="notifier-bench", allow_private=True)
    rules = VerifyRules()
    at = datetime.now(UTC)
    async with Prober(options, resolver=LocalNames()) as prober:
        await asyncio.gather(*(prober.check(url, rules, at=at) for url in targets[:hosts]))  # warm-up
        best = 0.0
        for round_no in range(1, rounds + 1):
            started = time.perf_counter()
            checks = await asyncio.gather(*(prober.check(url, rules, at=at) for url in targets))
            elapsed = time.perf_counter() - started
            removed = sum(c.outcome is CheckOutcome.REMOVED for c in checks)
            live = sum(c.outcome is CheckOutcome.LIVE for c in checks)
            rate = len(checks) / elapsed
            best = max(best, rate)
            print(
                f"round {round_no}: {len(checks)} checks in {elapsed:.2f} s = {rate:,.0f} checks/s "
                f"(removed {removed}, live {live}, other {len(checks) - removed - live})"
            )
    if due_checks:
        await due(port, hosts, due_checks)
    await runner.cleanup()
    print(
        f"best: {best:,.0f} checks/s over {urls} URLs on {hosts} hosts "
        f"(per host: {options.per_host_concurrency} at once, {options.per_host_per_minute}/min); "
        f"SPEC §11 asks >= 200/s"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=int, default=1000)
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--due", type=int, default=0, help="then N due checks through the service")
    args = parser.parse_args()
    print(f"$ {' '.join([sys.executable, *sys.argv])}")
    with open(os.devnull, "w") as devnull:
        configure_logging(json=True, level="info", stream=devnull)  # as the daemon logs, to /dev/null
        asyncio.run(main(args.urls, args.hosts, args.rounds, args.due))
