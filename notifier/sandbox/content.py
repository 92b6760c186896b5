"""The sandbox platforms' content: every reported post served at its request URL, on loopback.

Each platform's posts are published here under their URLs; the server answers by the request's
``Host`` header and path, so a prober that resolves the platforms' host names to this server
(:class:`SandboxNames`, no DNS asked) fetches them as a visitor would. When a platform's staff
remove a post, it is taken down here, and its URL answers the way that platform answers for
removed content (a 404, a 410, or a 200 page saying the post is unavailable).

Platforms are not always truthful, and :class:`Takedowns` says how: posts a platform says it
removed while leaving them up (a false claim), a share of a silent platform's posts taken down
without a word, and posts that come back some time after their removal. Everything done here is
kept in the staff's :class:`~notifier.sandbox.behaviour.Record` (``taken_down``, ``left_up``,
``restored``), so tests can compare notifier's verification with what the platforms really did.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from notifier.clock import Clock
from notifier.sandbox.behaviour import HOUR, Action, Record
from notifier.sandbox.timeline import Timeline

__all__ = ["ContentServer", "SandboxNames", "Takedowns"]

# How each kind of platform shows a removed post: a status, or a 200 page saying so.
UNAVAILABLE_PAGE = "<html><body><h1>This post is unavailable</h1></body></html>"
QUIET_REMOVAL_HOURS = (2.0, 20.0)  # before the first check, at the reminder point

_Step = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Takedowns:
    """How the platforms really treat their content."""

    removed_status: Mapping[str, int] = field(default_factory=dict)  # platform -> status (404 default)
    false_claims: frozenset[str] = frozenset()  # request ids said removed but left up
    quiet_share: Mapping[str, float] = field(default_factory=dict)  # platform -> share removed silently
    comes_back: Mapping[str, timedelta] = field(default_factory=dict)  # request id -> up again after


@dataclass(slots=True)
class _Post:
    platform: str
    request_id: str
    live: bool = True


def _key(host: str, path: str) -> str:
    return f"{host.lower().partition(':')[0]}{path}"


def _url_key(url: str) -> str:
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return _key(parts.hostname or "", path)


class ContentServer:
    """The platforms' posts over HTTP on loopback; the staff take them down (or do not)."""

    def __init__(
        self,
        *,
        timeline: Timeline,
        clock: Clock,
        record: Record,
        seed: int,
        takedowns: Takedowns | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._timeline = timeline
        self._clock = clock
        self._record = record
        self._seed = seed
        self._takedowns = takedowns or Takedowns()
        self.host = host
        self.port = port
        self._posts: dict[str, _Post] = {}  # host+path -> post
        self._urls: dict[str, list[str]] = {}  # request id -> its keys
        self._quiet_chosen: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
        self._runner: web.AppRunner | None = None
        self.hosts: set[str] = set()

    # -- what is published --------------------------------------------------------------------

    def publish(self, url: str, *, platform: str, request_id: str) -> None:
        key = _url_key(url)
        self._posts[key] = _Post(platform, request_id)
        self._urls.setdefault(request_id, []).append(key)
        self.hosts.add(urlsplit(url).hostname or "")

    def live(self, request_id: str) -> bool:
        """Whether any of the request's posts is up."""
        return any(self._posts[key].live for key in self._urls.get(request_id, ()))

    def _set(self, request_ids: Iterable[str], live: bool) -> tuple[str, ...]:
        changed: list[str] = []
        for request_id in request_ids:
            for key in self._urls.get(request_id, ()):
                self._posts[key].live = live
            if request_id in self._urls:
                changed.append(request_id)
        return tuple(changed)

    # -- what the staff do --------------------------------------------------------------------

    def take_down(self, platform: str, notice_id: str, request_ids: Iterable[str]) -> None:
        """Staff remove the notice's posts (before they say so), except those they leave up."""
        now = self._clock.now()
        ids = tuple(request_ids)
        kept = tuple(r for r in ids if r in self._takedowns.false_claims)
        taken = self._set((r for r in ids if r not in kept), live=False)
        if taken:
            self._record.add(Action(now, platform, notice_id, "taken_down", taken))
        if kept:
            self._record.add(Action(now, platform, notice_id, "left_up", kept))
        for request_id in taken:
            after = self._takedowns.comes_back.get(request_id)
            if after is not None:
                self._timeline.at(
                    now + after,
                    f"{request_id} back up",
                    self._restore(platform, notice_id, request_id),
                )

    def received(
        self,
        platform: str,
        notice_id: str,
        request_ids: Iterable[str],
        *,
        posts: Iterable[tuple[str, str]] = (),
    ) -> None:
        """A notice reached the platform: the posts it reports (request id, URL) are published
        if they were not yet (the standalone sandbox learns them so), and a silent platform
        quietly removes a share of its posts."""
        for request_id, url in posts:
            if _url_key(url) not in self._posts:
                self.publish(url, platform=platform, request_id=request_id)
        if platform not in self._takedowns.quiet_share:
            return
        for request_id in request_ids:
            if not self._quietly_removes(platform, request_id):
                continue
            rng = random.Random(f"{self._seed}/quiet/{request_id}")  # noqa: S311  (simulation)
            delay = timedelta(seconds=round(rng.uniform(*QUIET_REMOVAL_HOURS) * HOUR))
            self._timeline.at(
                self._clock.now() + delay,
                f"{request_id} quietly removed",
                self._quiet_removal(platform, notice_id, request_id),
            )

    def _quietly_removes(self, platform: str, request_id: str) -> bool:
        """Whether the platform removes this post without a word: exactly its share of the posts
        published when its first notice came (chosen from the seed); a post published later (the
        standalone sandbox learns them from notices) by a draw of its own."""
        share = self._takedowns.quiet_share.get(platform, 0.0)
        if platform not in self._quiet_chosen:
            ids = sorted({post.request_id for post in self._posts.values() if post.platform == platform})
            rng = random.Random(f"{self._seed}/quiet/{platform}")  # noqa: S311  (simulation)
            self._quiet_chosen[platform] = (
                frozenset(ids),
                frozenset(rng.sample(ids, round(len(ids) * share))),
            )
        known, removed = self._quiet_chosen[platform]
        if request_id in known:
            return request_id in removed
        return random.Random(f"{self._seed}/quiet/{request_id}").random() < share  # noqa: S311

    def _quiet_removal(self, platform: str, notice_id: str, request_id: str) -> _Step:
        async def step() -> None:
            self.take_down(platform, notice_id, (request_id,))

        return step

    def _restore(self, platform: str, notice_id: str, request_id: str) -> _Step:
        async def step() -> None:
            restored = self._set((request_id,), live=True)
            if restored:
                self._record.add(Action(self._clock.now(), platform, notice_id, "restored", restored))

        return step

    # -- the server -----------------------------------------------------------------------------

    async def _serve(self, request: web.Request) -> web.Response:
        post = self._posts.get(_key(request.host, request.path_qs))
        if post is None:
            return web.Response(status=404, text="Not found")
        if post.live:
            return web.Response(
                text=f"<html><body><h1>Post</h1><p>{post.request_id}</p></body></html>",
                content_type="text/html",
            )
        status = self._takedowns.removed_status.get(post.platform, 404)
        if status == 200:
            return web.Response(text=UNAVAILABLE_PAGE, content_type="text/html")
        return web.Response(status=status, text="This content is not available")

    async def start(self) -> ContentServer:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._serve)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def resolver(self) -> SandboxNames:
        """Names of the platforms' hosts, all answering this server."""
        return SandboxNames(self.hosts, self.host, self.port)


class SandboxNames(AbstractResolver):
    """A resolver for the sandbox: each platform host name is the content server's address and
    port; any other name is unknown (no DNS is asked)."""

    def __init__(self, hosts: Collection[str], address: str, port: int) -> None:
        self._hosts = hosts  # the server's own set: hosts published later are known too
        self._address = address
        self._port = port

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self._hosts:
            raise OSError(f"{host} is not a sandbox platform")
        return [
            ResolveResult(
                hostname=host,
                host=self._address,
                port=self._port,
                family=socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        return None
