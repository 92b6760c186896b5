"""The ``notifier`` command line: parse, call the application, print. No logic lives here."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.table import Table

from notifier import __version__
from notifier.cli_args import ByOption, ConfigOption, config_first, entry_for, err, fail, out, settings_from
from notifier.cli_bundle import register as register_bundle
from notifier.cli_check import register as register_check
from notifier.cli_deadlines import register as register_deadlines
from notifier.cli_demo import register as register_demo
from notifier.cli_evidence import register as register_evidence
from notifier.cli_report import register as register_report
from notifier.cli_submit import submit_files
from notifier.cli_user import register as register_user
from notifier.cli_verify import register as register_verify
from notifier.clock import SystemClock
from notifier.domain.acks import AckStatus
from notifier.domain.models import format_timestamp
from notifier.errors import AlreadyRunning, ConfigError, InvalidRequest, NotifierError
from notifier.logging import configure_logging
from notifier.metrics import Metrics
from notifier.opening import ack_service, open_store, require_evidence_key
from notifier.services.acks import AckOutcome
from notifier.services.operator import record_ack, record_submitted, retry_notice
from notifier.services.status import lookup, overview

app = typer.Typer(
    name="notifier",
    help="Takedown notices to online platforms, measured against each platform's bound.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _run(coro: Any) -> Any:
    """Run a coroutine, turning notifier's own errors into one line on stderr and exit 1."""
    try:
        return asyncio.run(coro)
    except ConfigError as error:
        raise fail(f"notifier: {error}", 2) from None
    except NotifierError as error:
        raise fail(f"notifier: {error}", 1) from None


def _version(value: bool) -> None:
    if value:
        out.print(f"notifier {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """notifier: takes takedown requests in, sends notices out, and measures how fast platforms act."""


@app.command()
def run(
    config: ConfigOption = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """The daemon: intake, batching, dispatch, acknowledgements, the SLA monitor, the HTTP server.
    SIGTERM/SIGINT drain gracefully."""
    from notifier.app import run_daemon

    configure_logging(json=True, level=log_level)
    settings = settings_from(config)
    try:
        require_evidence_key(settings)
        code = asyncio.run(run_daemon(settings))
    except AlreadyRunning as error:
        raise fail(f"notifier: {error}", 1) from None
    except ConfigError as error:
        raise fail(f"notifier: {error}", 2) from None
    except NotifierError as error:
        raise fail(f"notifier: cannot start: {error}", 1) from None
    raise typer.Exit(code)


@app.command()
def submit(
    files: Annotated[
        list[str], typer.Argument(help="JSON object, JSON array or JSON Lines files; - for stdin.")
    ],
    config: ConfigOption = None,
) -> None:
    """Validate requests and publish the valid ones to the intake queue; list the invalid ones."""
    configure_logging(json=False, level="warning")
    settings = settings_from(config)
    invalid = _run(submit_files(settings, files, out=out, err=err))
    raise typer.Exit(1 if invalid else 0)


@app.command()
def status(
    ids: Annotated[list[str] | None, typer.Argument(help="Request ids or notice ids.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (see docs/formats.md).")] = False,
    config: ConfigOption = None,
) -> None:
    """State of requests and notices; without ids, counts per platform and state."""
    configure_logging(json=False, level="warning")
    settings = settings_from(config)

    async def collect() -> dict[str, Any]:
        store = await open_store(settings, existing=True)
        try:
            if ids:
                return await lookup(store, ids, now=SystemClock().now())
            return await overview(store, list(settings.platforms))
        finally:
            await store.close()

    document = _run(collect())
    if as_json:
        out.print_json(json.dumps(document))
    elif ids:
        _print_lookup(document)
    else:
        _print_overview(document)
    if ids and document["unknown"]:
        raise typer.Exit(1)


def _print_counts(title: str, counts: dict[str, dict[str, int]]) -> None:
    """States down, platforms across: the state list is fixed, platforms are usually few."""
    states = list(next(iter(counts.values())).keys()) if counts else []
    table = Table(title=title, title_justify="left")
    table.add_column("state", no_wrap=True)
    for platform in counts:
        table.add_column(platform, justify="right", no_wrap=True)
    for state in states:
        table.add_row(state, *(str(counts[p][state]) if counts[p][state] else "·" for p in counts))
    out.print(table)


def _print_overview(document: dict[str, Any]) -> None:
    _print_counts("Requests", document["requests"])
    _print_counts("Notices", document["notices"])
    conflicts = document["conflicts"]
    out.print(f"Conflicts: {len(conflicts)}")
    for conflict in conflicts[:20]:
        out.print(f"  {conflict['request_id']}  at {conflict['at']}  from {conflict['source']}", markup=False)
    out.print(f"Dead letters: {document['dead_letters_total']}")
    for letter in document["dead_letters"][:20]:
        out.print(f"  {letter['at']}  {letter['source']}  {letter['reason']}", markup=False)


def _print_lookup(document: dict[str, Any]) -> None:
    for request in document["requests"]:
        out.print(
            f"request {request['request_id']}  {request['platform']}  {request['state']}"
            f"  notice={request['notice_id'] or '-'}  ingested={request['ingested_at']}",
            markup=False,
        )
        for url in request["urls"]:
            out.print(f"    {url}", markup=False)
    for notice in document["notices"]:
        out.print(
            f"notice {notice['notice_id']}  {notice['platform']}  {notice['state']}  via {notice['channel']}"
            f"  requests={len(notice['request_ids'])}  ticket={notice['ticket'] or '-'}",
            markup=False,
        )
        for attempt in notice["attempts"]:
            out.print(
                f"    {attempt['at']}  {attempt['channel']}  {attempt['outcome']}  {attempt['code'] or ''}"
                f"  {attempt['detail']}  ({attempt['duration_ms']} ms)",
                markup=False,
            )
        for ack in notice["acknowledgements"]:
            entered = f"  entered {ack['entered_at']} by {ack['by']}" if ack["by"] else ""
            out.print(
                f"    {ack['at']}  ack {ack['status']} ({ack['outcome']})  {ack['source']}{entered}",
                markup=False,
            )
        for record in notice["manual_records"]:
            out.print(
                f"    {record['at']}  {record['action']}  {record['request_id'] or ''}"
                f"  entered {record['entered_at']} by {record['by']} ({record['source']})",
                markup=False,
            )
    for unknown in document["unknown"]:
        err.print(f"notifier: unknown id: {unknown}", markup=False)


@app.command()
def retry(
    notice_ids: Annotated[list[str], typer.Argument(help="Failed notices to send again (same notice id).")],
    by: ByOption = None,
    config: ConfigOption = None,
) -> None:
    """Send failed notices again, e.g. after fixing a platform's address."""
    configure_logging(json=False, level="warning")
    settings = settings_from(config)
    entry = entry_for(by)

    async def act() -> int:
        store = await open_store(settings, existing=True)
        problems = 0
        try:
            for notice_id in notice_ids:
                try:
                    notice = await retry_notice(
                        store,
                        notice_id,
                        now=entry.entered_at,
                        deliver_within=settings.sla.deliver_within,
                        entry=entry,
                    )
                except InvalidRequest as error:
                    err.print(f"notifier: {error.reason}", markup=False)
                    problems += 1
                    continue
                out.print(f"{notice.notice_id}: queued again on {notice.channel}", markup=False)
        finally:
            await store.close()
        return problems

    raise typer.Exit(1 if _run(act()) else 0)


class ManualStatus(StrEnum):
    submitted = "submitted"
    received = "received"
    removed = "removed"
    rejected = "rejected"
    clarification_requested = "clarification_requested"


@app.command()
def ack(
    notice_id: Annotated[str, typer.Argument(help="The notice the platform (or staff) acted on.")],
    status: Annotated[
        ManualStatus,
        typer.Option(
            "--status",
            help="submitted: staff submitted a portal notice (its delivery); received/removed/rejected: "
            "what the platform said.",
        ),
    ],
    request_ids: Annotated[
        list[str] | None, typer.Option("--request-id", help="Only these requests of the notice (repeatable).")
    ] = None,
    ticket: Annotated[
        str | None, typer.Option("--ticket", help="The platform's ticket or case number.")
    ] = None,
    at: Annotated[
        str | None, typer.Option("--at", help="When it happened (ISO 8601 with offset); default now.")
    ] = None,
    note: Annotated[str | None, typer.Option("--note", help="Kept with the record, never logged.")] = None,
    by: ByOption = None,
    config: ConfigOption = None,
) -> None:
    """Record by hand what happened to a notice: a portal submission, or a platform's answer.
    Who entered it (--by, else the operating-system user) and when are kept apart from --at."""
    configure_logging(json=False, level="warning")
    settings = settings_from(config)
    entry = entry_for(by)
    now = entry.entered_at
    when = _parse_at(at, now)

    async def act() -> int:
        store = await open_store(settings, existing=True)
        try:
            if status is ManualStatus.submitted:
                notice = await record_submitted(
                    store, notice_id, at=when, now=now, ticket=ticket, entry=entry
                )
                out.print(
                    f"{notice.notice_id}: submitted, delivered at {format_timestamp(when)}", markup=False
                )
                return 0
            acks = ack_service(settings, store, SystemClock(), Metrics())
            result = await record_ack(
                acks,
                store,
                notice_id,
                status=AckStatus(status.value),
                request_ids=request_ids or [],
                ticket=ticket,
                at=when,
                now=now,
                note=note,
                entry=entry,
            )
        except InvalidRequest as error:
            err.print(f"notifier: {error.reason}", markup=False)
            return 1
        finally:
            await store.close()
        if result.outcome is AckOutcome.APPLIED:
            out.print(f"{notice_id}: {status.value} recorded at {format_timestamp(when)}", markup=False)
            return 0
        if result.outcome is AckOutcome.UNCHANGED:
            out.print(f"{notice_id}: nothing changed ({result.detail})", markup=False)
            return 0
        err.print(f"notifier: {notice_id}: {result.detail}", markup=False)
        return 1

    raise typer.Exit(_run(act()))


def _parse_at(at: str | None, now: datetime) -> datetime:
    if at is None:
        return now
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        raise fail(f"notifier: --at {at!r} is not an ISO 8601 time", 2) from None
    if when.tzinfo is None:
        raise fail(f"notifier: --at {at!r} needs a time zone offset (e.g. +09:00 or Z)", 2)
    return when


register_report(app)
register_check(app)
register_demo(app)
register_user(app)
register_verify(app)
register_deadlines(app)
register_evidence(app)
register_bundle(app)


def main() -> None:
    """Entry point: usage errors are one line on stderr naming the command, exit 2 (SPEC §3)."""
    try:
        code = app(args=config_first(sys.argv[1:]), standalone_mode=False)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except typer.TyperException as error:
        if not error.format_message():
            # `notifier` alone, or a group without its command: the help was the answer.
            sys.exit(0)
        context = getattr(error, "ctx", None)
        where = getattr(context, "command_path", None) or "notifier"
        hint = f" (see {where} --help)" if error.exit_code == 2 else ""
        err.print(f"{where}: {error.format_message()}{hint}", markup=False)
        sys.exit(error.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
