"""``notifier report``: the compliance report (SPEC §3, §8), registered on the main typer app.

Kept out of :mod:`notifier.cli` so the report's flags and their parsing live in one place;
:func:`register` adds the command.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer
from rich.console import Console

from notifier.cli_args import ConfigOption
from notifier.clock import SystemClock
from notifier.domain.durations import parse_duration
from notifier.errors import ConfigError, NotifierError
from notifier.logging import configure_logging
from notifier.opening import open_store
from notifier.services.report import (
    ReportStore,
    build_report,
    platform_bounds,
    profile_bounds,
    render,
    render_table,
)
from notifier.settings import Settings, load_settings

out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class ReportGrouping(StrEnum):
    platform = "platform"
    profile = "profile"


class ReportFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"
    html = "html"


class _Exit(Exception):
    """A one-line complaint and the exit code that goes with it."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def parse_moment(value: str, *, now: datetime, zone: ZoneInfo, end_of_day: bool = False) -> datetime:
    """``30d`` (that long before ``now``), an ISO 8601 time, or a date.

    A time without an offset, and a date, are read in the authority's time zone. A bare date means
    the start of that day, or with ``end_of_day`` its end (``--until 2024-09-30`` includes the 30th).
    """
    try:
        return now - parse_duration(value)
    except ValueError:
        pass
    try:
        day = date.fromisoformat(value)
    except ValueError:
        day = None
    if day is not None:
        start = datetime.combine(day, time(), tzinfo=zone)
        return start + timedelta(days=1) if end_of_day else start
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{value!r} is neither a duration (30d, 36h) nor a date or time (ISO 8601)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


def _window(
    settings: Settings, since: str | None, until: str | None, now: datetime
) -> tuple[datetime | None, datetime | None]:
    zone = ZoneInfo(settings.authority.timezone)
    try:
        start = None if since is None else parse_moment(since, now=now, zone=zone)
    except ValueError as error:
        raise _Exit(f"notifier: --since: {error}", 2) from None
    try:
        end = None if until is None else parse_moment(until, now=now, zone=zone, end_of_day=True)
    except ValueError as error:
        raise _Exit(f"notifier: --until: {error}", 2) from None
    if start is not None and end is not None and start >= end:
        raise _Exit("notifier: --since must be before --until", 2)
    return start, end


def run_report(
    settings: Settings,
    *,
    since: str | None,
    until: str | None,
    platforms: list[str] | None,
    fmt: ReportFormat,
    output: Path | None,
    by: ReportGrouping = ReportGrouping.platform,
    wide: bool = False,
) -> None:
    now = SystemClock().now()
    start, end = _window(settings, since, until, now)
    unknown = [p for p in platforms or [] if p not in settings.platforms]
    if unknown:
        raise _Exit(f"notifier: --platform: unknown platform {', '.join(map(repr, unknown))}", 1)
    bounds = platform_bounds(settings, platforms)

    async def collect() -> dict[str, Any]:
        store: Any = await open_store(settings, existing=True)
        try:
            reporting: ReportStore = store
            return await build_report(
                reporting,
                bounds,
                now=now,
                since=start,
                until=end,
                profiles=profile_bounds(settings),
                by=by.value,
            )
        finally:
            await store.close()

    try:
        report = asyncio.run(collect())
    except ConfigError as error:
        raise _Exit(f"notifier: {error}", 2) from None
    except NotifierError as error:
        raise _Exit(f"notifier: {error}", 1) from None
    authority = settings.authority
    if output is None and fmt is ReportFormat.table and out.is_terminal:
        # A terminal's own width; piped or written to a file, the same text at 100 columns.
        render_table(report, out, wide=wide, timezone=authority.timezone)
        return
    text = render(report, fmt.value, wide=wide, authority=authority.name, timezone=authority.timezone)
    if output is None:
        out.file.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as error:
        raise _Exit(f"notifier: -o {output}: cannot be written ({error.strerror or error})", 1) from None


def register(app: typer.Typer) -> None:
    """Add ``notifier report`` to ``app``."""

    @app.command()
    def report(
        *,
        since: Annotated[
            str | None,
            typer.Option(help="Start: a duration back from now (30d, 36h) or a date/time (ISO 8601)."),
        ] = None,
        until: Annotated[
            str | None,
            typer.Option(help="End (exclusive): a date/time; a bare date includes that whole day."),
        ] = None,
        platform: Annotated[
            list[str] | None, typer.Option("--platform", help="Only this platform (repeatable).")
        ] = None,
        fmt: Annotated[ReportFormat, typer.Option("--format", help="Output format.")] = ReportFormat.table,
        by: Annotated[
            ReportGrouping, typer.Option("--by", help="One group per platform or per deadline profile.")
        ] = ReportGrouping.platform,
        output: Annotated[Path | None, typer.Option("-o", "--output", help="Write to FILE.")] = None,
        wide: Annotated[
            bool, typer.Option("--wide", help="The table with every figure (it needs ~300 columns).")
        ] = False,
        config: ConfigOption = None,
    ) -> None:
        """Compliance report per platform: counts, times to ack and removal, breaches.

        Open requests include those not delivered yet (pending, queued, an unfiled portal notice).
        The window selects requests by delivery time, never-delivered ones by intake time; times
        with no offset, and dates, are in the authority's time zone.
        """
        configure_logging(json=False, level="warning")
        try:
            settings = load_settings(config)
        except ConfigError as error:
            err.print(f"notifier: {error}", markup=False)
            raise typer.Exit(2) from None
        try:
            run_report(
                settings,
                since=since,
                until=until,
                platforms=platform,
                fmt=fmt,
                output=output,
                by=by,
                wide=wide,
            )
        except _Exit as failure:
            err.print(str(failure), markup=False)
            raise typer.Exit(failure.code) from None
