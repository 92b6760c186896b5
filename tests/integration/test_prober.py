"""The prober against a real aiohttp server whose URLs change state during the test (SPEC §13)."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestServer

from notifier.channels.prober import IPAddress, Prober, ProberOptions, public_address
from notifier.domain.verification import CheckOutcome, VerifyRules
from tests.waiting import wait_for

AT = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
RULES = VerifyRules.build(removed_markers=[r"(?i)this post is unavailable"], removed_redirect=[r"/removed$"])


class NamedResolver(AbstractResolver):
    """Names of the test's own "internet": each answers the address given, none reaches DNS."""

    def __init__(self, names: dict[str, list[str]]) -> None:
        self.names = names
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        if host not in self.names:
            raise OSError(f"no such name {host}")
        answers = self.names[host]
        address = answers.pop(0) if len(answers) > 1 else answers[0]
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        return None


@dataclass
class Site:
    """The server's state: which posts are up, and every path it was asked for."""

    port: int = 0
    up: set[str] = field(default_factory=set)
    requests: list[str] = field(default_factory=list)
    stall: asyncio.Event = field(default_factory=asyncio.Event)
    big_token: bytes = b""

    def url(self, host: str, path: str) -> str:
        return f"http://{host}:{self.port}{path}"


def _app(site: Site) -> web.Application:
    async def post(request: web.Request) -> web.StreamResponse:
        site.requests.append(request.path)
        name = request.match_info["name"]
        if name in site.up:
            return web.Response(text=f"<html>post {name}: still here</html>", content_type="text/html")
        return web.Response(status=404, text="not found")

    async def soft(request: web.Request) -> web.StreamResponse:
        site.requests.append(request.path)
        name = request.match_info["name"]
        if name in site.up:
            return web.Response(text=f"<p>post {name}</p>", content_type="text/html")
        return web.Response(text="<h1>Sorry, this post is unavailable.</h1>", content_type="text/html")

    async def hop(request: web.Request) -> web.StreamResponse:
        site.requests.append(request.path)
        step = int(request.match_info["step"])
        target = f"/hop/{step + 1}" if step < 2 else "/removed"
        raise web.HTTPFound(target)

    async def removed(request: web.Request) -> web.StreamResponse:
        site.requests.append(request.path)
        return web.Response(text="content removed", content_type="text/html")

    async def slow(request: web.Request) -> web.StreamResponse:
        site.requests.append(request.path)
        await site.stall.wait()
        return web.Response(text="late")

    async def big(request: web.Request) -> web.StreamResponse:
        site.requests.append(request.path)
        response = web.StreamResponse()
        response.content_type = "application/octet-stream"
        await response.prepare(request)
        chunk = site.big_token * (64 * 1024 // len(site.big_token))
        try:
            for _ in range(10 * 1024 * 1024 // len(chunk)):
                await response.write(chunk)
        except ConnectionResetError:
            return response
        return response

    async def to_private(request: web.Request) -> web.StreamResponse:
        site.requests.append(request.path)
        raise web.HTTPFound(request.query["to"])

    app = web.Application()
    app.router.add_get("/p/{name}", post)
    app.router.add_get("/s/{name}", soft)
    app.router.add_get("/hop/{step}", hop)
    app.router.add_get("/removed", removed)
    app.router.add_get("/slow", slow)
    app.router.add_get("/big", big)
    app.router.add_get("/out", to_private)
    return app


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    state = Site(big_token=os.urandom(16).hex().encode())
    async with TestServer(_app(state), host="127.0.0.1", port=0) as server:
        state.port = server.port or 0
        try:
            yield state
        finally:
            state.stall.set()


def _options(**overrides: object) -> ProberOptions:
    values: dict[str, object] = {"user_agent": "notifier-test (Test Authority)", "timeout": 5.0}
    values.update(overrides)
    return ProberOptions(**values)  # type: ignore[arg-type]


def _loopback_counts_as_public(address: IPAddress) -> bool:
    """The test's "internet" is the loopback server; every other address is judged as in production."""
    return address == ipaddress.ip_address("127.0.0.1") or public_address(address)


@pytest.fixture
async def prober() -> AsyncIterator[Prober]:
    async with Prober(
        _options(allow_private=True), resolver=NamedResolver({"platform.example": ["127.0.0.1"]})
    ) as opened:
        yield opened


async def test_a_post_is_live_until_taken_down_then_removed_by_its_404(site: Site, prober: Prober) -> None:
    site.up.add("a1")
    url = site.url("platform.example", "/p/a1")

    live = await prober.check(url, RULES, at=AT)
    site.up.discard("a1")
    gone = await prober.check(url, RULES, at=AT)

    assert (live.outcome, live.http_status, live.rule) == (CheckOutcome.LIVE, 200, "status:200")
    assert live.sha256 == hashlib.sha256(b"<html>post a1: still here</html>").hexdigest()
    assert (gone.outcome, gone.http_status, gone.rule) == (CheckOutcome.REMOVED, 404, "status:404")


async def test_a_200_carrying_the_platforms_removed_marker_is_removed(site: Site, prober: Prober) -> None:
    site.up.add("s1")
    url = site.url("platform.example", "/s/s1")

    live = await prober.check(url, RULES, at=AT)
    site.up.discard("s1")
    gone = await prober.check(url, RULES, at=AT)

    assert live.outcome is CheckOutcome.LIVE
    assert (gone.outcome, gone.http_status) == (CheckOutcome.REMOVED, 200)
    assert gone.rule == "marker:(?i)this post is unavailable"


async def test_a_redirect_chain_ending_on_the_removal_page_is_removed(site: Site, prober: Prober) -> None:
    check = await prober.check(site.url("platform.example", "/hop/0"), RULES, at=AT)

    assert check.outcome is CheckOutcome.REMOVED
    assert check.final_url == site.url("platform.example", "/removed")
    assert check.rule == "redirect:/removed$"
    assert site.requests == ["/hop/0", "/hop/1", "/hop/2", "/removed"]


async def test_too_long_a_redirect_chain_is_inconclusive(site: Site) -> None:
    async with Prober(
        _options(allow_private=True, max_redirects=2),
        resolver=NamedResolver({"platform.example": ["127.0.0.1"]}),
    ) as prober:
        check = await prober.check(site.url("platform.example", "/hop/0"), RULES, at=AT)

    assert (check.outcome, check.reason) == (CheckOutcome.INCONCLUSIVE, "too_many_redirects")


async def test_a_server_that_does_not_answer_in_time_is_inconclusive_timeout(site: Site) -> None:
    async with Prober(
        _options(allow_private=True, timeout=0.3),
        resolver=NamedResolver({"platform.example": ["127.0.0.1"]}),
    ) as prober:
        check = await prober.check(site.url("platform.example", "/slow"), RULES, at=AT)

    assert (check.outcome, check.reason, check.http_status) == (CheckOutcome.INCONCLUSIVE, "timeout", None)


async def test_a_10_mb_body_is_read_to_the_cap_hashed_and_never_written(
    site: Site, prober: Prober, tmp_path: Path
) -> None:
    check = await prober.check(site.url("platform.example", "/big"), RULES, at=AT)

    assert check.outcome is CheckOutcome.LIVE
    assert check.bytes_read == 256 * 1024
    chunk = site.big_token * (64 * 1024 // len(site.big_token))
    assert check.sha256 == hashlib.sha256((chunk * 4)[: 256 * 1024]).hexdigest()
    assert site.big_token not in repr(check.as_dict()).encode()
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert site.big_token not in path.read_bytes(), path


async def test_a_name_resolving_to_loopback_is_refused_without_a_request(site: Site) -> None:
    resolver = NamedResolver({"innocent.example": ["127.0.0.1"]})
    async with Prober(_options(), resolver=resolver) as prober:
        check = await prober.check(site.url("innocent.example", "/p/x"), RULES, at=AT)

    assert (check.outcome, check.reason) == (CheckOutcome.INCONCLUSIVE, "refused_private_address")
    assert site.requests == []
    assert resolver.asked == ["innocent.example"]


@pytest.mark.parametrize(
    ("target_host", "address"),
    [("metadata.example", "169.254.169.254"), ("intranet.example", "10.1.2.3"), ("10.9.9.9", None)],
)
async def test_a_redirect_from_a_public_url_to_a_private_address_is_refused_at_the_redirect(
    site: Site, target_host: str, address: str | None
) -> None:
    names = {"platform.example": ["127.0.0.1"]}
    if address is not None:
        names[target_host] = [address]
    async with Prober(
        _options(), resolver=NamedResolver(names), address_allowed=_loopback_counts_as_public
    ) as prober:
        private = f"http://{target_host}:{site.port}/p/secret"
        check = await prober.check(site.url("platform.example", f"/out?to={private}"), RULES, at=AT)

    assert (check.outcome, check.reason) == (CheckOutcome.INCONCLUSIVE, "refused_private_address")
    assert check.final_url == private
    assert site.requests == ["/out"]


async def test_a_name_that_changes_its_answer_before_the_connect_is_refused_at_the_connect(
    site: Site,
) -> None:
    resolver = NamedResolver({"rebind.example": ["127.0.0.1", "10.0.0.7"]})
    async with Prober(_options(), resolver=resolver, address_allowed=_loopback_counts_as_public) as prober:
        check = await prober.check(site.url("rebind.example", "/p/x"), RULES, at=AT)

    assert (check.outcome, check.reason) == (CheckOutcome.INCONCLUSIVE, "refused_private_address")
    assert site.requests == []


async def test_a_forbidden_status_is_inconclusive_and_names_it() -> None:
    async def forbidden(_request: web.Request) -> web.StreamResponse:
        return web.Response(status=403)

    app = web.Application()
    app.router.add_get("/x", forbidden)
    async with (
        TestServer(app, host="127.0.0.1", port=0) as server,
        Prober(_options(allow_private=True)) as prober,
    ):
        check = await prober.check(f"http://127.0.0.1:{server.port}/x", RULES, at=AT)

    assert (check.outcome, check.reason, check.http_status) == (CheckOutcome.INCONCLUSIVE, "status_403", 403)


async def test_the_user_agent_names_the_authority(site: Site) -> None:
    seen: list[str] = []

    async def echo(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("User-Agent", ""))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", echo)
    async with (
        TestServer(app, host="127.0.0.1", port=0) as server,
        Prober(_options(allow_private=True)) as prober,
    ):
        await prober.check(f"http://127.0.0.1:{server.port}/", RULES, at=AT)

    assert seen == ["notifier-test (Test Authority)"]


async def test_no_more_than_the_per_host_concurrency_reaches_one_host_at_once() -> None:
    in_flight = {"now": 0, "most": 0}
    release = asyncio.Event()

    async def held(_request: web.Request) -> web.StreamResponse:
        in_flight["now"] += 1
        in_flight["most"] = max(in_flight["most"], in_flight["now"])
        await release.wait()
        in_flight["now"] -= 1
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/{n}", held)
    async with (
        TestServer(app, host="127.0.0.1", port=0) as server,
        Prober(
            _options(allow_private=True, per_host_concurrency=2),
            resolver=NamedResolver({"one.example": ["127.0.0.1"]}),
        ) as prober,
    ):
        urls = [f"http://one.example:{server.port}/{n}" for n in range(8)]
        checking = asyncio.gather(*(prober.check(url, RULES, at=AT) for url in urls))
        await wait_for(_at_least(in_flight, 2), within=5, what="two checks in flight")
        release.set()
        checks = await checking

    assert in_flight["most"] == 2
    assert [c.outcome for c in checks] == [CheckOutcome.LIVE] * 8


def _at_least(counter: dict[str, int], count: int) -> Callable[[], Awaitable[bool]]:
    async def reached() -> bool:
        return counter["now"] >= count

    return reached


async def test_with_an_egress_proxy_the_check_goes_through_it_and_the_target_rules_still_apply() -> None:
    seen: list[str] = []

    async def proxy(request: web.Request) -> web.StreamResponse:
        seen.append(f"{request.method} {request.host}{request.path}")
        return web.Response(text="through the proxy")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy)
    names = NamedResolver({"platform.example": ["93.184.216.34"], "inside.example": ["10.0.0.8"]})
    async with TestServer(app, host="127.0.0.1", port=0) as server:
        options = _options(proxy=f"http://127.0.0.1:{server.port}")
        async with Prober(options, resolver=names) as prober:
            live = await prober.check("http://platform.example/p/1", RULES, at=AT)
            refused = await prober.check("http://inside.example/p/2", RULES, at=AT)

    assert (live.outcome, live.http_status) == (CheckOutcome.LIVE, 200)
    assert (refused.outcome, refused.reason) == (CheckOutcome.INCONCLUSIVE, "refused_private_address")
    assert seen == ["GET platform.example/p/1"]


async def test_the_timeout_bounds_each_fetch_not_the_wait_behind_the_hosts_other_checks() -> None:
    async def slowish(_request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.5)  # a slow server: well within the timeout, one at a time
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/{n}", slowish)
    async with (
        TestServer(app, host="127.0.0.1", port=0) as server,
        Prober(_options(allow_private=True, timeout=2.0, per_host_concurrency=1)) as prober,
    ):
        urls = [f"http://127.0.0.1:{server.port}/{n}" for n in range(6)]  # 3 s in all, one host
        checks = await asyncio.gather(*(prober.check(url, RULES, at=AT) for url in urls))

    assert [(c.outcome, c.reason) for c in checks] == [(CheckOutcome.LIVE, "")] * 6
