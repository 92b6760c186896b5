"""The prober (SPEC §13): fetch a URL the way a visitor would and report what was observed.

It keeps nothing of the content: the body is hashed (SHA-256) as it streams and read no further
than ``max_bytes``; the bytes read live in memory only for the platform's markers to be searched,
then are dropped. Safe by construction: the host of every hop (the first URL and each redirect,
followed here, bounded) is resolved and refused when any address is private, loopback,
link-local, multicast, reserved or unspecified (unless ``allow_private``); the connection itself
uses a resolver that refuses the same, so a name cannot change its answer between the check and
the connect. A refused URL is ``inconclusive`` with ``refused_private_address`` and no request is
sent. Polite: a User-Agent naming the authority, a per-host concurrency cap and a per-host
per-minute budget, timeouts, an optional egress proxy.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urljoin

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from notifier.domain.verification import (
    InconclusiveReason,
    Observation,
    UrlCheck,
    VerifyRules,
    decide,
)
from notifier.settings import VerifySettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 16 * 1024


def public_address(address: IPAddress) -> bool:
    """Whether ``address`` is one the prober may connect to without ``allow_private``."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return public_address(address.ipv4_mapped)
    return not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


class RefusedAddress(OSError):
    """A host resolved to an address the prober does not connect to."""


class _GuardedResolver(AbstractResolver):
    """The connector's resolver: the wrapped one's answers, refused when any is not allowed."""

    def __init__(self, inner: AbstractResolver, allowed: Callable[[IPAddress], bool]) -> None:
        self._inner = inner
        self._allowed = allowed

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        for answer in answers:
            if not self._allowed(ipaddress.ip_address(answer["host"])):
                raise RefusedAddress(f"{host} resolves to a refused address")
        return answers

    async def close(self) -> None:
        await self._inner.close()


class _HostBudget:
    """Per host: at most ``concurrency`` fetches at once, ``per_minute`` starts a minute (a token
    bucket filled over the minute, full at the start)."""

    def __init__(self, concurrency: int, per_minute: int) -> None:
        self.slots = asyncio.Semaphore(concurrency)
        self._per_minute = per_minute
        self._tokens = float(per_minute)
        self._at = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(
                    float(self._per_minute), self._tokens + (now - self._at) * self._per_minute / 60
                )
                self._at = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) * 60 / self._per_minute)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProberOptions:
    user_agent: str
    max_bytes: int = 256 * 1024
    timeout: float = 20.0
    per_host_concurrency: int = 4
    per_host_per_minute: int = 600
    max_redirects: int = 5
    allow_private: bool = False
    proxy: str = ""


def _failure_of(error: BaseException) -> InconclusiveReason:
    """The reason a fetch that raised concluded nothing."""
    if isinstance(error, RefusedAddress):
        return InconclusiveReason.REFUSED_PRIVATE_ADDRESS
    if isinstance(error, aiohttp.ClientConnectorDNSError):
        refused = isinstance(error.os_error, RefusedAddress)
        return InconclusiveReason.REFUSED_PRIVATE_ADDRESS if refused else InconclusiveReason.DNS
    if isinstance(error, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError | ssl.SSLError):
        return InconclusiveReason.TLS
    if isinstance(error, aiohttp.ClientConnectionError | OSError):
        return InconclusiveReason.CONNECT
    return InconclusiveReason.PROTOCOL


def prober_options(settings: VerifySettings, authority_name: str) -> ProberOptions:
    """The prober's options from ``[verify]``; the User-Agent names the authority by default."""
    agent = settings.user_agent or f"notifier/1 (removal checks by {authority_name})"
    return ProberOptions(
        user_agent=agent,
        max_bytes=settings.max_bytes,
        timeout=settings.timeout.total_seconds(),
        per_host_concurrency=settings.per_host_concurrency,
        per_host_per_minute=settings.per_host_per_minute,
        max_redirects=settings.max_redirects,
        allow_private=settings.allow_private,
        proxy=settings.proxy,
    )


class Prober:
    """Checks URLs; one instance shares its connections and per-host budgets across checks."""

    def __init__(
        self,
        options: ProberOptions,
        *,
        resolver: AbstractResolver | None = None,
        address_allowed: Callable[[IPAddress], bool] | None = None,
    ) -> None:
        self._options = options
        self._allowed: Callable[[IPAddress], bool] = (
            (lambda _address: True)
            if options.allow_private
            else (address_allowed if address_allowed is not None else public_address)
        )
        self._resolver = resolver if resolver is not None else aiohttp.ThreadedResolver()
        self._session: aiohttp.ClientSession | None = None
        self._budgets: dict[str, _HostBudget] = {}

    async def __aenter__(self) -> Prober:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                resolver=_GuardedResolver(self._resolver, self._allowed),
                limit=0,
                ttl_dns_cache=None,
                use_dns_cache=False,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": self._options.user_agent},
                auto_decompress=True,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def check(self, url: str, rules: VerifyRules, *, at: datetime) -> UrlCheck:
        """One check of ``url`` at business time ``at``: what was observed and what it means."""
        digest = hashlib.sha256()
        seen, bytes_read, content_type = await self._observe(url, digest)
        decision = decide(rules, seen)
        return UrlCheck(
            at=at,
            url=url,
            outcome=decision.outcome,
            reason=decision.reason,
            http_status=seen.http_status,
            final_url=seen.final_url,
            content_type=content_type,
            bytes_read=bytes_read,
            sha256=digest.hexdigest() if seen.http_status is not None else "",
            rule=decision.rule,
        )

    async def _observe(self, url: str, digest: Any) -> tuple[Observation, int, str]:
        """Follow ``url`` hop by hop. ``timeout`` bounds each hop's resolution and fetch, never the
        wait for the host's budget: a check queued behind others of its host is not cut short."""
        current = url
        for _hop in range(self._options.max_redirects + 1):
            target = URL(current)
            if target.scheme not in ("http", "https") or not target.host:
                return Observation(final_url=current, failure=InconclusiveReason.REFUSED_SCHEME), 0, ""
            budget = self._budgets.setdefault(
                target.host,
                _HostBudget(self._options.per_host_concurrency, self._options.per_host_per_minute),
            )
            async with budget.slots:
                try:
                    async with asyncio.timeout(self._options.timeout):
                        failure = await self._refusal(target)
                        if failure is not None:
                            return Observation(final_url=current, failure=failure), 0, ""
                    await budget.take()
                    async with asyncio.timeout(self._options.timeout):
                        outcome = await self._fetch(target, digest)
                except TimeoutError:
                    return Observation(final_url=current, failure=InconclusiveReason.TIMEOUT), 0, ""
                except (aiohttp.ClientError, OSError) as error:
                    return Observation(final_url=current, failure=_failure_of(error)), 0, ""
            if isinstance(outcome, str):
                current = outcome
                continue
            return outcome
        return Observation(final_url=current, failure=InconclusiveReason.TOO_MANY_REDIRECTS), 0, ""

    async def _refusal(self, target: URL) -> InconclusiveReason | None:
        """Why this hop's host may not be fetched, checked on what it resolves to."""
        host = target.host or ""
        try:
            addresses = [ipaddress.ip_address(host.strip("[]"))]
        except ValueError:
            try:
                answers = await self._resolver.resolve(host, target.port or 0, socket.AF_UNSPEC)
            except OSError:
                return InconclusiveReason.DNS
            addresses = [ipaddress.ip_address(answer["host"]) for answer in answers]
        if not addresses:
            return InconclusiveReason.DNS
        if not all(self._allowed(address) for address in addresses):
            return InconclusiveReason.REFUSED_PRIVATE_ADDRESS
        return None

    async def _fetch(self, target: URL, digest: Any) -> tuple[Observation, int, str] | str:
        """One request: the next URL of a redirect, or what the final answer showed."""
        async with self._client().get(
            target,
            allow_redirects=False,
            proxy=self._options.proxy or None,
        ) as response:
            location = response.headers.get("Location")
            if response.status in _REDIRECTS and location:
                return urljoin(str(target), location)
            body = bytearray()
            async for chunk in response.content.iter_chunked(_CHUNK):
                room = self._options.max_bytes - len(body)
                piece = chunk[:room]
                digest.update(piece)
                body.extend(piece)
                if len(body) >= self._options.max_bytes:
                    break
            content_type = response.headers.get("Content-Type", "")[:200]
            seen = Observation(http_status=response.status, final_url=str(target), body=bytes(body))
            return seen, len(body), content_type
