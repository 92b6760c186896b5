"""A platform API: receives notices as SPEC §6.2 sends them and answers with a ticket.

It checks what a careful platform checks (bearer token, Standard Webhooks signature) and can be
scripted to answer with errors first (503 five times, 429 with Retry-After, 400 …).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReceivedNotice:
    payload: dict[str, Any]
    headers: dict[str, str]
    ticket: str | None


class PlatformApi:
    """``await PlatformApi(token=..., signing_secret=...).start()`` on 127.0.0.1."""

    def __init__(
        self,
        *,
        token: str | None = None,
        signing_secret: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        ticket_prefix: str = "VH",
    ) -> None:
        self.token = token
        self.signing_secret = signing_secret
        self.host = host
        self.port = port
        self.script: list[Answer] = []  # answers for the next requests, consumed in order
        self.received: list[ReceivedNotice] = []  # notices accepted (2xx)
        self.requests = 0  # every POST, answered or not
        self.request_times: list[float] = []  # loop time of each POST, to check Retry-After pacing
        self.rejected: list[str] = []  # why requests were refused (auth, signature)
        self.listeners: list[Callable[[ReceivedNotice], Any]] = []  # told of each accepted notice
        self._tickets = itertools.count(1)
        self._prefix = ticket_prefix
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1/notices"

    async def start(self) -> PlatformApi:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post("/v1/notices", self._notice)
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

    async def _notice(self, request: web.Request) -> web.Response:
        self.requests += 1
        self.request_times.append(asyncio.get_running_loop().time())
        body = await request.read()
        if self.token is not None and request.headers.get("Authorization") != f"Bearer {self.token}":
            self.rejected.append("bad or missing bearer token")
            return web.json_response({"error": "unauthorized"}, status=401)
        if self.signing_secret is not None:
            try:
                Webhook(self.signing_secret).verify(body, dict(request.headers))
            except WebhookVerificationError as error:
                self.rejected.append(f"signature: {error}")
                return web.json_response({"error": "bad signature"}, status=401)
        if self.script:
            answer = self.script.pop(0)
            if not 200 <= answer.status < 300:
                self._changed.set()
                return web.json_response(
                    answer.body or {"error": "scripted"}, status=answer.status, headers=answer.headers
                )
        payload = json.loads(body)
        ticket = f"{self._prefix}-{next(self._tickets)}"
        notice = ReceivedNotice(payload=payload, headers=dict(request.headers), ticket=ticket)
        self.received.append(notice)
        for listener in list(self.listeners):
            listener(notice)
        self._changed.set()
        return web.json_response({"ticket": ticket, "status": "received"}, status=200)

    async def wait_for(self, count: int, *, within: float = 30.0) -> list[ReceivedNotice]:
        async with asyncio.timeout(within):
            while len(self.received) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.received[:count]
