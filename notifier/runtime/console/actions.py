"""The staff's actions in the console (SPEC §16): record an acknowledgement or a portal submission,
retry a failed notice, choose the interface's language. Each calls the use case ``notifier ack`` and
``notifier retry`` call (:mod:`notifier.services.operator`); nothing is decided here. The guard in
:mod:`.app` has already checked the session, the CSRF token and the role. The recorder is named
``console:<username>`` in the acknowledgement history and the log, and every action keeps the
logged-in user as who entered it, with the clock's time (SPEC §15); notes are never logged.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from notifier.domain.acks import AckStatus
from notifier.domain.manual import Entry, EntrySource
from notifier.errors import InvalidRequest
from notifier.runtime.console.app import PREFIX, USER, deps, render
from notifier.runtime.console.i18n import LANGUAGES
from notifier.services import console as views
from notifier.services.operator import record_ack, record_submitted, retry_notice
from notifier.services.users import set_language

STATUSES = ("submitted", "received", "removed", "rejected")


def _text(form: object, name: str) -> str | None:
    value = form.get(name) if hasattr(form, "get") else None
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip()


def _at(value: str | None, now: datetime) -> datetime:
    if value is None:
        return now
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"at: {value[:40]!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise InvalidRequest("at: give the time with its offset (…+09:00) or Z")
    return parsed.astimezone(UTC)


async def _failed(request: web.Request, notice_id: str, reason: str) -> web.Response:
    d = deps(request)
    page = await views.notice_page(d.store, notice_id, d.sla_bounds)
    if page is None:
        return render(request, "missing.html", status=404, notice_id=notice_id)
    return render(request, "notice.html", status=400, page=page, error=reason, now=d.clock.now())


async def acknowledge(request: web.Request) -> web.StreamResponse:
    d = deps(request)
    notice_id = request.match_info["notice_id"]
    form = await request.post()
    actor = f"console:{request[USER].username}"
    now = d.clock.now()
    entry = Entry(by=request[USER].username, entered_at=now, source=EntrySource.CONSOLE)
    status = _text(form, "status")
    ticket = _text(form, "ticket")
    try:
        if status not in STATUSES:
            raise InvalidRequest(f"status: one of {', '.join(STATUSES)}")
        at = _at(_text(form, "at"), now)
        if status == "submitted":
            await record_submitted(
                d.store, notice_id, at=at, now=now, ticket=ticket, actor=actor, entry=entry
            )
        else:
            request_ids = [
                line.strip()
                for value in form.getall("request_id", [])
                if isinstance(value, str)
                for line in value.splitlines()
                if line.strip()
            ]
            await record_ack(
                d.acks,
                d.store,
                notice_id,
                status=AckStatus(status),
                request_ids=request_ids,
                ticket=ticket,
                at=at,
                now=now,
                note=_text(form, "note"),
                source=actor,
                entry=entry,
            )
    except InvalidRequest as error:
        return await _failed(request, notice_id, error.reason)
    raise web.HTTPSeeOther(f"{PREFIX}/notices/{notice_id}")


async def retry(request: web.Request) -> web.StreamResponse:
    d = deps(request)
    notice_id = request.match_info["notice_id"]
    actor = f"console:{request[USER].username}"
    now = d.clock.now()
    entry = Entry(by=request[USER].username, entered_at=now, source=EntrySource.CONSOLE)
    try:
        await retry_notice(
            d.store, notice_id, now=now, deliver_within=d.deliver_within, actor=actor, entry=entry
        )
    except InvalidRequest as error:
        return await _failed(request, notice_id, error.reason)
    raise web.HTTPSeeOther(f"{PREFIX}/notices/{notice_id}")


async def language(request: web.Request) -> web.StreamResponse:
    d = deps(request)
    form = await request.post()
    chosen = _text(form, "language")
    if chosen in LANGUAGES:
        await set_language(d.store, request[USER].username, chosen, now=d.session_clock.now())
    back = _text(form, "back") or f"{PREFIX}/"
    raise web.HTTPSeeOther(back if back.startswith(f"{PREFIX}/") and "//" not in back else f"{PREFIX}/")


def register(app: web.Application) -> None:
    app.router.add_post("/notices/{notice_id}/ack", acknowledge)
    app.router.add_post("/notices/{notice_id}/retry", retry)
    app.router.add_post("/language", language)
