"""The console's guards: sessions in cookies, CSRF tokens, roles, login throttling and the headers
every answer carries (SPEC §16).

* The session cookie (``notifier_console``) is HttpOnly, SameSite=Strict, Secure off loopback, and
  expires with the session; the token in it is random and only its SHA-256 is stored.
* Every form carries the session's CSRF token (the login form a token of its own, doubled in a
  cookie); a state-changing request without the right one answers 403 and changes nothing.
* Without a session, a page answers a redirect to the login page, a request that is not for HTML
  answers 401.
* Wrong passwords are counted per user and per address over a minute, in the store (every daemon
  process counts the same attempts): past ``max_failures`` the user (or the address) is locked out
  for ``lockout``. Logged with the name and the address, never the password.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from aiohttp import web

from notifier.services.users import LoginPolicy

SESSION_COOKIE = "notifier_console"
LOGIN_COOKIE = "notifier_console_login"
CSRF_FIELD = "csrf_token"
WINDOW = timedelta(minutes=1)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "frame-src 'self'; form-action 'self'; frame-ancestors 'self'; base-uri 'none'"
)
# The compliance report is a self-contained page with its own inline style (no script at all).
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class LoginLimiter:
    """The login throttle's settings; the counting is :mod:`notifier.services.users`' over the store."""

    max_failures: int = 5
    lockout_s: float = 900.0

    @property
    def policy(self) -> LoginPolicy:
        return LoginPolicy(
            max_failures=self.max_failures, lockout=timedelta(seconds=self.lockout_s), window=WINDOW
        )


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
