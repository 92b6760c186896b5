"""The console's aiohttp application: login, logout, the guard in front of every page, and how pages
are rendered (SPEC §16). The pages are in :mod:`.pages`, the staff's actions in :mod:`.actions`.

Mounted under ``/console/`` on the daemon's HTTP server, or served alone on ``[console] listen``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import jinja2
import structlog
from aiohttp import web

from notifier.clock import Clock, SystemClock
from notifier.domain.report import Bounds
from notifier.domain.sla import SlaBounds
from notifier.ports import Role, Store, User
from notifier.runtime.console.i18n import negotiate, translator
from notifier.runtime.console.security import (
    CSRF_FIELD,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    Handler,
    LoginLimiter,
    client_address,
    security_headers,
    tokens_match,
    wants_html,
)
from notifier.services.acks import AckService
from notifier.services.report import ReportStore
from notifier.services.users import (
    authenticate,
    close_session,
    current_session,
    login_failed,
    login_keys,
    login_locked,
    login_succeeded,
    open_session,
)

log = structlog.get_logger("notifier.console")

PREFIX = "/console"
_HERE = Path(__file__).parent
# Reachable without a session: the login form and the files every page loads.
_OPEN = ("/console/login", "/console/static/")
# State-changing requests a viewer may make: about their own session only.
_ANY_ROLE = ("/console/logout", "/console/language")
# Pages and forms for admins only: the staff's accounts.
_ADMIN_ONLY = ("/console/users",)


class ConsoleBackend(Store, ReportStore, Protocol):
    """The store as the console uses it: every side of it, and the report's reads."""


@dataclass
class ConsoleDeps:
    store: ConsoleBackend
    acks: AckService
    clock: Clock  # business time: deadlines, "today", acknowledgements
    sla_bounds: dict[str, SlaBounds]
    report_bounds: dict[str, Bounds]
    platform_names: dict[str, str]
    zone: ZoneInfo
    outbox: Path
    deliver_within: timedelta
    session_ttl: timedelta = timedelta(hours=8)
    secure_cookies: bool = True
    due_within: timedelta = timedelta(hours=6)
    refresh_s: int = 30
    authority: str = ""  # its name heads the published report
    # The overview's counts and the report are computed in the background at most this often and
    # shared by every viewer (:mod:`.snapshots`): a room of staff whose pages refresh themselves
    # costs the store one set of counts per interval, not one per page. 0: on every page.
    overview_cache_s: float = 10.0
    report_cache_s: float = 300.0
    limiter: LoginLimiter = field(default_factory=LoginLimiter)
    session_clock: Clock = field(default_factory=SystemClock)  # real time: sessions expire in it


DEPS: web.AppKey[ConsoleDeps] = web.AppKey("console_deps", ConsoleDeps)
_TEMPLATES: web.AppKey[jinja2.Environment] = web.AppKey("console_templates", jinja2.Environment)
USER: web.RequestKey[User] = web.RequestKey("console_user", User)
CSRF: web.RequestKey[str] = web.RequestKey("console_csrf", str)
TOKEN: web.RequestKey[str] = web.RequestKey("console_token", str)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    return env


def deps(request: web.Request) -> ConsoleDeps:
    return request.config_dict[DEPS]


def render(request: web.Request, template: str, *, status: int = 200, **context: Any) -> web.Response:
    d = deps(request)
    user = request.get(USER)
    lang = negotiate(user.language if user else None, request.headers.get("Accept-Language", ""))
    zone = d.zone

    def utc(value: datetime | None) -> str:
        return "–" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    def local(value: datetime | None) -> str:
        return "–" if value is None else value.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")

    page = (
        request.config_dict[_TEMPLATES]
        .get_template(template)
        .render(
            _=translator(lang),
            lang=lang,
            user=user,
            csrf=request.get(CSRF, ""),
            utc=utc,
            local=local,
            zone=zone.key,
            platform_names=d.platform_names,
            can_change=user is not None and user.role in (Role.OPERATOR, Role.ADMIN),
            is_admin=user is not None and user.role is Role.ADMIN,
            refresh_s=d.refresh_s,
            **context,
        )
    )
    return web.Response(text=page, status=status, content_type="text/html", charset="utf-8")


def _refuse_without_session(request: web.Request) -> web.StreamResponse:
    if wants_html(request):
        raise web.HTTPFound(f"{PREFIX}/login")
    raise web.HTTPUnauthorized(text="log in at /console/login\n")


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every console URL but the login form needs a live session; every state change a valid CSRF
    token, and (but logging out or choosing a language) an operator's or admin's role; the users'
    pages an admin's."""
    if request.path.startswith(_OPEN):
        return await handler(request)
    d = deps(request)
    token = request.cookies.get(SESSION_COOKIE, "")
    found = await current_session(d.store, token, now=d.session_clock.now()) if token else None
    if found is None:
        return _refuse_without_session(request)
    session, user = found
    request[USER] = user
    request[CSRF] = session.csrf_token
    request[TOKEN] = token
    if request.method not in ("GET", "HEAD"):
        form = await request.post()
        presented = form.get(CSRF_FIELD)
        if not tokens_match(presented if isinstance(presented, str) else None, session.csrf_token):
            log.warning("console.csrf_refused", username=user.username, path=request.path)
            raise web.HTTPForbidden(text="missing or wrong CSRF token\n")
        if user.role is Role.VIEWER and not request.path.startswith(_ANY_ROLE):
            log.warning("console.forbidden", username=user.username, path=request.path)
            raise web.HTTPForbidden(text="viewers may read, not change\n")
    if request.path.startswith(_ADMIN_ONLY) and user.role is not Role.ADMIN:
        log.warning("console.forbidden", username=user.username, path=request.path)
        raise web.HTTPForbidden(text="only admins manage users\n")
    return await handler(request)


def _cookie_args(d: ConsoleDeps, max_age: int) -> dict[str, Any]:
    return {
        "path": f"{PREFIX}/",
        "httponly": True,
        "samesite": "Strict",
        "secure": d.secure_cookies,
        "max_age": max_age,
    }


async def login_form(request: web.Request, *, error: str = "", status: int = 200) -> web.Response:
    token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
    response = render(request, "login.html", status=status, error=error, login_csrf=token)
    response.set_cookie(LOGIN_COOKIE, token, **_cookie_args(deps(request), 3600))
    return response


async def login_page(request: web.Request) -> web.Response:
    return await login_form(request)


async def login(request: web.Request) -> web.StreamResponse:
    d = deps(request)
    form = await request.post()
    presented = form.get(CSRF_FIELD)
    if not tokens_match(presented if isinstance(presented, str) else None, request.cookies.get(LOGIN_COOKIE)):
        raise web.HTTPForbidden(text="missing or wrong CSRF token\n")
    username = str(form.get("username", ""))[:64].strip().lower()
    password = str(form.get("password", ""))
    address = client_address(request)
    keys = login_keys(username, address)
    now = d.session_clock.now()
    if await login_locked(d.store, keys, now=now):
        log.warning("console.login_refused", username=username, address=address, reason="locked")
        return await login_form(request, error="Too many failed attempts; try again later.", status=429)
    user = await authenticate(d.store, username, password)
    if user is None:
        if await login_failed(d.store, keys, now=now, policy=d.limiter.policy):
            log.warning("console.login_locked", username=username, address=address)
            return await login_form(request, error="Too many failed attempts; try again later.", status=429)
        log.info("console.login_failed", username=username, address=address)
        return await login_form(request, error="Wrong user name or password.", status=401)
    await login_succeeded(d.store, keys)
    opened = await open_session(d.store, user, now=d.session_clock.now(), ttl=d.session_ttl)
    response = web.HTTPSeeOther(f"{PREFIX}/")
    response.set_cookie(SESSION_COOKIE, opened.token, **_cookie_args(d, int(d.session_ttl.total_seconds())))
    response.del_cookie(LOGIN_COOKIE, path=f"{PREFIX}/")
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    await close_session(deps(request).store, request[TOKEN])
    log.info("console.logout", username=request[USER].username)
    response = web.HTTPSeeOther(f"{PREFIX}/login")
    response.del_cookie(SESSION_COOKIE, path=f"{PREFIX}/")
    raise response


def build_console_app(console: ConsoleDeps) -> web.Application:
    """The console as an aiohttp application, to mount at ``/console/``."""
    from notifier.runtime.console import actions, admin, pages  # noqa: PLC0415 - they import this module

    app = web.Application(middlewares=[security_headers, guard])
    app[DEPS] = console
    app[_TEMPLATES] = _environment()
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_static("/static/", _HERE / "static", append_version=True)
    pages.register(app)
    actions.register(app)
    admin.register(app)
    return app


def mount_console(parent: web.Application, console: ConsoleDeps) -> None:
    parent.add_subapp(f"{PREFIX}/", build_console_app(console))
