"""The console's pages (SPEC §16): overview, work queue, a notice, search, report, and the portal
notices' files. Reads only; what they show comes from :mod:`notifier.services.console` and
:mod:`notifier.services.report`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, datetime, timedelta
from datetime import time as day_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from notifier.domain.durations import parse_duration
from notifier.domain.notices import parse_notice_id
from notifier.runtime.console.app import DEPS, ConsoleDeps, deps, render
from notifier.runtime.console.security import REPORT_CSP
from notifier.runtime.console.snapshots import ReportKey, Reports, Snapshot
from notifier.services import console as views
from notifier.services.report import build_report, render_csv, render_html, render_json

# The files the manual channel writes into a portal notice's outbox folder, by name.
_FILES = (
    "notice.html",
    "notice.txt",
    "{id}.csv",
    "{id}.json",
    "README.txt",
    "reminder.txt",
    "escalation.txt",
)


_OVERVIEW: web.AppKey[Snapshot[list[views.PlatformRow]]] = web.AppKey("console_overview", Snapshot)
_REPORTS: web.AppKey[Reports] = web.AppKey("console_reports", Reports)


async def overview(request: web.Request) -> web.Response:
    d = deps(request)
    now, rows = await request.config_dict[_OVERVIEW].get()
    return render(
        request, "overview.html", rows=rows, now=now, due_hours=round(d.due_within.total_seconds() / 3600, 1)
    )


async def breached(request: web.Request) -> web.Response:
    d = deps(request)
    platform = request.query.get("platform", "")
    if platform not in d.sla_bounds:
        raise web.HTTPNotFound(text="no such platform\n")
    notices = await views.breached(d.store, d.sla_bounds[platform], platform, now=d.clock.now())
    return render(request, "breached.html", platform=platform, notices=notices)


async def work_queue(request: web.Request) -> web.Response:
    d = deps(request)
    queue = await views.work_queue(d.store)
    files = {n.notice_id: _existing_files(d.outbox, n.notice_id) for n in queue.awaiting_submission}
    return render(request, "queue.html", queue=queue, files=files)


def _existing_files(outbox: Path, notice_id: str) -> list[str]:
    """The outbox files of a portal notice that exist now."""
    folder = outbox / notice_id
    return [name for name in (f.format(id=notice_id) for f in _FILES) if (folder / name).is_file()]


async def notice(request: web.Request) -> web.Response:
    d = deps(request)
    notice_id = request.match_info["notice_id"]
    page = await views.notice_page(d.store, notice_id, d.sla_bounds)
    if page is None:
        return render(request, "missing.html", status=404, notice_id=notice_id)
    return render(request, "notice.html", page=page, error="", now=d.clock.now())


async def notice_file(request: web.Request) -> web.StreamResponse:
    d = deps(request)
    notice_id = request.match_info["notice_id"]
    name = request.match_info["name"]
    if parse_notice_id(notice_id) is None or name not in {f.format(id=notice_id) for f in _FILES}:
        raise web.HTTPNotFound()
    path = d.outbox / notice_id / name
    if not path.is_file():
        raise web.HTTPNotFound()
    # Always a download: a notice's HTML is never rendered within the console's origin.
    return web.FileResponse(
        path,
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Content-Type": "application/octet-stream",
        },
    )


async def search(request: web.Request) -> web.Response:
    term = request.query.get("q", "").strip()
    hits = await views.search(deps(request).store, term) if term else []
    return render(request, "search.html", term=term, hits=hits)


def _moment(value: str, *, end_of_day: bool, now: datetime, zone: ZoneInfo) -> datetime | None:
    value = value.strip()
    if not value:
        return None
    try:
        return now - parse_duration(value)
    except ValueError:
        pass
    try:
        day = date.fromisoformat(value)
    except ValueError:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise web.HTTPBadRequest(text=f"not a duration, date or time: {value[:40]!r}\n") from None
    start = datetime.combine(day, day_time(0), tzinfo=zone)
    return start + timedelta(days=1) if end_of_day else start


def _report_key(request: web.Request) -> ReportKey:
    """The report's filters, checked (a bad one answers 400 before anything is computed)."""
    d = deps(request)
    since = request.query.get("since", "30d").strip()
    until = request.query.get("until", "").strip()
    now = d.clock.now()
    _moment(since, end_of_day=False, now=now, zone=d.zone)
    _moment(until, end_of_day=True, now=now, zone=d.zone)
    chosen = sorted({p for p in request.query.getall("platform", []) if p in d.report_bounds})
    return since, until, () if set(chosen) == set(d.report_bounds) else tuple(chosen)


def _report_of(d: ConsoleDeps) -> Callable[[ReportKey], Awaitable[tuple[datetime, dict[str, Any]]]]:
    async def compute(key: ReportKey) -> tuple[datetime, dict[str, Any]]:
        since, until, chosen = key
        now = d.clock.now()
        bounds = {p: d.report_bounds[p] for p in chosen} if chosen else d.report_bounds
        document = await build_report(
            d.store,
            bounds,
            now=now,
            since=_moment(since, end_of_day=False, now=now, zone=d.zone),
            until=_moment(until, end_of_day=True, now=now, zone=d.zone),
        )
        return now, document

    return compute


async def _report(request: web.Request) -> dict[str, Any]:
    _, document = await request.config_dict[_REPORTS].get(_report_key(request))
    return document


async def report(request: web.Request) -> web.Response:
    """The filters and the downloads; the report itself is the framed ``report.html``, computed in
    the background (:mod:`.snapshots`): this page says how old it may be."""
    query = request.query_string
    key = _report_key(request)
    kept = request.config_dict[_REPORTS].snapshot(key)
    if kept.value is None:
        kept.refresh()  # under way while the browser loads the frame
    return render(
        request,
        "report.html",
        query=query,
        as_of=kept.value[0] if kept.value else None,
        every_min=max(1, round(deps(request).report_cache_s / 60)),
        since=request.query.get("since", "30d"),
        until=request.query.get("until", ""),
        chosen=request.query.getall("platform", []),
    )


async def report_file(request: web.Request) -> web.Response:
    document = await _report(request)
    kind = request.match_info["kind"]
    if kind == "html":
        d = deps(request)
        page = render_html(document, authority=d.authority or None, timezone=d.zone.key)
        response = web.Response(text=page, content_type="text/html", charset="utf-8")
        response.headers["Content-Security-Policy"] = REPORT_CSP
        return response
    body, content_type = (
        (render_csv(document), "text/csv") if kind == "csv" else (render_json(document), "application/json")
    )
    response = web.Response(text=body, content_type=content_type, charset="utf-8")
    response.headers["Content-Disposition"] = f'attachment; filename="notifier-report.{kind}"'
    return response


async def _background(app: web.Application) -> AsyncIterator[None]:
    d = app[DEPS]

    async def counts() -> tuple[datetime, list[views.PlatformRow]]:
        now = d.clock.now()
        rows = await views.overview(d.store, d.sla_bounds, now=now, due_within=d.due_within, zone=d.zone)
        return now, rows

    app[_OVERVIEW] = Snapshot(counts, every_s=d.overview_cache_s, name="overview")
    app[_REPORTS] = reports = Reports(_report_of(d), every_s=d.report_cache_s)
    reports.start()
    yield
    await reports.close()
    await app[_OVERVIEW].close()


def register(app: web.Application) -> None:
    app.cleanup_ctx.append(_background)
    app.router.add_get("/", overview)
    app.router.add_get("/breached", breached)
    app.router.add_get("/queue", work_queue)
    app.router.add_get("/notices/{notice_id}", notice)
    app.router.add_get("/notices/{notice_id}/files/{name}", notice_file)
    app.router.add_get("/search", search)
    app.router.add_get("/report", report)
    app.router.add_get(r"/report.{kind:html|csv|json}", report_file)
