"""The console's guards: sessions in cookies, CSRF tokens, roles, login throttling and the headers
every answer carries (SPEC §16).

* The session cookie (``notifier_console``) is HttpOnly, SameSite=Strict, Secure off loopback, and
  expires with the session; the token in it is random and only its SHA-256 is stored.
* Every form carries the session's CSRF token (the login form a token of its own, doubled in a
  cookie); a state-changing request without the right one answers 403 and changes nothing.
* Without a session, a page answers a redirect to the login page, a request that is not for HTML
  answers 401.
* Wrong passwords are counted per user and per address over a minute: past ``max_failures`` the
  user (or the address) is locked out for ``lockout``. Logged with the name and the address, never
  the password.
"""

from __future__ import annotations

import hmac
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from aiohttp import web

SESSION_COOKIE = "notifier_console"
LOGIN_COOKIE = "notifier_console_login"
CSRF_FIELD = "csrf_token"
WINDOW_S = 60.0
# Addresses and names tracked at once; past this the oldest entries are forgotten.
_MAX_KEYS = 100_000

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "frame-src 'self'; form-action 'self'; frame-ancestors 'self'; base-uri 'none'"
)
# The compliance report is a self-contained page with its own inline style (no script at all).
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class LoginLimiter:
    """Wrong passwords per key (``user:NAME``, ``addr:IP``) in a sliding minute, and lockouts."""

    max_failures: int = 5
    lockout_s: float = 900.0
    now: Callable[[], float] = time.monotonic
    _failures: dict[str, deque[float]] = field(default_factory=dict)
    _locked_until: dict[str, float] = field(default_factory=dict)

    def locked(self, keys: Iterable[str]) -> bool:
        now = self.now()
        for key in keys:
            until = self._locked_until.get(key)
            if until is not None:
                if until > now:
                    return True
                del self._locked_until[key]
        return False

    def fail(self, keys: Iterable[str]) -> bool:
        """Count a wrong password against every key; True when that locked one of them."""
        now = self.now()
        locked = False
        for key in keys:
            window = self._failures.setdefault(key, deque())
            while window and window[0] <= now - WINDOW_S:
                window.popleft()
            window.append(now)
            if len(window) > self.max_failures:
                self._locked_until[key] = now + self.lockout_s
                window.clear()
                locked = True
        if len(self._failures) > _MAX_KEYS:
            for key in list(self._failures)[: len(self._failures) // 2]:
                del self._failures[key]
        return locked

    def succeed(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._failures.pop(key, None)


def tokens_match(presented: str | None, expected: str | None) -> bool:
    if not presented or not expected:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


def wants_html(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return "text/html" in accept or "*/*" in accept or not accept


def client_address(request: web.Request) -> str:
    return request.remote or "unknown"


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as error:
        response = error
        _harden(response, request)
        raise
    _harden(response, request)
    return response


def _harden(response: web.StreamResponse, request: web.Request) -> None:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"
    headers.setdefault("X-Frame-Options", "SAMEORIGIN")
    if "/static/" not in request.path:
        headers["Cache-Control"] = "no-store"
