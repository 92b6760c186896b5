"""The console's collaborators, from the settings (called by :mod:`notifier.app`)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from aiohttp import web

from notifier.clock import Clock
from notifier.domain.sla import SlaBounds
from notifier.runtime.console.app import ConsoleBackend, ConsoleDeps, mount_console
from notifier.runtime.console.security import LoginLimiter
from notifier.services.acks import AckService
from notifier.services.report import platform_bounds
from notifier.settings import Settings, is_loopback


def secure_cookies(settings: Settings) -> bool:
    """Secure cookies unless the console is reached on a loopback address (or configured)."""
    mode = settings.console.secure_cookies
    if mode != "auto":
        return mode == "always"
    host = settings.console.host if settings.console.listen else settings.http.host
    return not is_loopback(host)


def console_deps(
    settings: Settings, store: ConsoleBackend, acks: AckService, clock: Clock, bounds: dict[str, SlaBounds]
) -> ConsoleDeps:
    console = settings.console
    return ConsoleDeps(
        store=store,
        acks=acks,
        clock=clock,
        sla_bounds=bounds,
        report_bounds=platform_bounds(settings),
        platform_names={p: platform.name for p, platform in settings.platforms.items()},
        zone=ZoneInfo(settings.authority.timezone),
        authority=settings.authority.name,
        outbox=settings.manual.outbox,
        deliver_within=settings.sla.deliver_within,
        session_ttl=console.session_ttl,
        secure_cookies=secure_cookies(settings),
        due_within=console.due_within,
        refresh_s=int(console.refresh.total_seconds()),
        overview_cache_s=console.overview_every.total_seconds(),
        report_cache_s=console.report_every.total_seconds(),
        limiter=LoginLimiter(max_failures=console.max_failures, lockout_s=console.lockout.total_seconds()),
    )


def console_app(deps: ConsoleDeps) -> web.Application:
    """An application serving the console alone, for ``[console] listen``."""
    app = web.Application()
    mount_console(app, deps)
    return app
