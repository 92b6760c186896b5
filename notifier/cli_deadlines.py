"""``notifier clarify`` and ``notifier withdraw`` (SPEC §14): the authority's answer to a
clarification a platform asked for, and the withdrawal of requests decided in error."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from notifier.cli_args import ByOption, ConfigOption, entry_for
from notifier.clock import SystemClock
from notifier.domain.manual import Entry
from notifier.domain.models import format_timestamp
from notifier.errors import ConfigError, NotifierError
from notifier.failures import DeliveryError
from notifier.logging import configure_logging
from notifier.opening import authority, open_store
from notifier.ports import Store
from notifier.services.clarify import Clarified, send_clarification
from notifier.services.routes import Route
from notifier.services.withdraw import Withdrawn, withdraw_requests
from notifier.settings import Settings, load_settings

out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)

# The longest answer taken: a note is a few paragraphs, never a file dump.
MAX_NOTE_BYTES = 64 * 1024


def _note(path: Path, option: str = "--note-file") -> str:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise NotifierError(f"{option} {path}: cannot be read ({error.strerror or error})") from None
    if len(data) > MAX_NOTE_BYTES:
        raise NotifierError(f"{option} {path}: over {MAX_NOTE_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise NotifierError(f"{option} {path}: not UTF-8 text") from None


@contextlib.asynccontextmanager
async def _wired(settings: Settings) -> AsyncIterator[tuple[Store, dict[str, Route], datetime]]:
    """The existing store (never created here) and the platforms' routes, closed afterwards."""
    from notifier.wiring import Channels

    store = await open_store(settings, existing=True)
    channels = Channels(settings, SystemClock())
    try:
        yield store, channels.routes(), SystemClock().now()
    finally:
        await channels.close()
        await store.close()


async def clarify(settings: Settings, notice_id: str, note: str, entry: Entry | None = None) -> Clarified:
    async with _wired(settings) as (store, routes, now):
        return await send_clarification(
            store,
            routes,
            notice_id=notice_id,
            note=note,
            now=now,
            authority=authority(settings),
            labels=settings.category_labels,
            entry=entry,
        )


async def withdraw(
    settings: Settings, request_ids: list[str], reason: str, entry: Entry | None = None
) -> Withdrawn:
    async with _wired(settings) as (store, routes, now):
        return await withdraw_requests(
            store,
            routes,
            request_ids=request_ids,
            reason=reason,
            now=now,
            authority=authority(settings),
            labels=settings.category_labels,
            entry=entry,
        )


def _print_withdrawn(done: Withdrawn, request_ids: list[str]) -> bool:
    """Say what was withdrawn and what not; whether everything asked was done."""
    known = {step.request_id for step in done.steps}
    complete = True
    for step in done.steps:
        if step.kind is None:
            complete = False
            err.print(f"{step.request_id}: not withdrawn: {step.refusal}", markup=False)
        else:
            out.print(f"{step.request_id}: withdrawn ({step.kind.value})", markup=False)
    for request_id in request_ids:
        if request_id not in known:
            complete = False
            err.print(f"{request_id}: unknown request", markup=False)
    for notice_id in done.notified:
        out.print(f"{notice_id}: withdrawal notice sent", markup=False)
    for notice_id, detail in done.not_sent.items():
        complete = False
        err.print(f"{notice_id}: withdrawal notice not sent ({detail})", markup=False)
    return complete


def register(app: typer.Typer) -> None:
    """Add ``notifier clarify`` and ``notifier withdraw`` to ``app``."""

    @app.command("withdraw")
    def withdraw_command(
        request_ids: Annotated[list[str], typer.Argument(help="The requests to withdraw.")],
        reason_file: Annotated[
            Path, typer.Option("--reason-file", help="Why (UTF-8 text, sent to the platform; never logged).")
        ],
        by: ByOption = None,
        config: ConfigOption = None,
    ) -> None:
        """Withdraw requests decided in error: one not sent yet leaves its batch and is never sent;
        one already sent is withdrawn and its platform gets one withdrawal notice per notice.
        Exit 1 when any could not be withdrawn or a withdrawal notice could not be sent."""
        configure_logging(json=False, level="warning")
        try:
            settings = load_settings(config)
        except ConfigError as error:
            err.print(f"notifier: {error}", markup=False)
            raise typer.Exit(2) from None
        try:
            reason = _note(reason_file, "--reason-file")
            done = asyncio.run(withdraw(settings, request_ids, reason, entry_for(by)))
        except NotifierError as error:
            err.print(f"notifier: {error}", markup=False)
            raise typer.Exit(1) from None
        if not _print_withdrawn(done, request_ids):
            raise typer.Exit(1)

    @app.command("clarify")
    def clarify_command(
        notice_id: Annotated[str, typer.Argument(help="The notice the platform asked about.")],
        note_file: Annotated[
            Path, typer.Option("--note-file", help="The answer to send (UTF-8 text; never logged).")
        ],
        by: ByOption = None,
        config: ConfigOption = None,
    ) -> None:
        """Answer a platform's request for clarification: the removal clock of the notice runs
        again for its full bound from now, and the answer goes out in the notice's thread (or as
        <notice_id>.clarification over the API, or a file beside a portal notice)."""
        configure_logging(json=False, level="warning")
        try:
            settings = load_settings(config)
        except ConfigError as error:
            err.print(f"notifier: {error}", markup=False)
            raise typer.Exit(2) from None
        try:
            done = asyncio.run(clarify(settings, notice_id, _note(note_file), entry_for(by)))
        except DeliveryError as error:
            err.print(
                f"notifier: {notice_id}: the answer is recorded but was not sent ({error.detail}); "
                "run the same command again to send it",
                markup=False,
            )
            raise typer.Exit(1) from None
        except NotifierError as error:
            err.print(f"notifier: {error}", markup=False)
            raise typer.Exit(1) from None
        again = "" if done.first else " (answered before: sent again)"
        out.print(
            f"{notice_id}: clarification sent{again}; remove by {format_timestamp(done.remove_by)}",
            markup=False,
        )
