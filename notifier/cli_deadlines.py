"""``notifier clarify``: the authority's answer to a clarification a platform asked for (SPEC §14)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from notifier.app import Channels, authority, open_store
from notifier.clock import SystemClock
from notifier.domain.models import format_timestamp
from notifier.errors import ConfigError, NotifierError
from notifier.failures import DeliveryError
from notifier.logging import configure_logging
from notifier.services.clarify import Clarified, send_clarification
from notifier.settings import Settings, load_settings

out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)

# The longest answer taken: a note is a few paragraphs, never a file dump.
MAX_NOTE_BYTES = 64 * 1024


def _note(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise NotifierError(f"--note-file {path}: cannot be read ({error.strerror or error})") from None
    if len(data) > MAX_NOTE_BYTES:
        raise NotifierError(f"--note-file {path}: over {MAX_NOTE_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise NotifierError(f"--note-file {path}: not UTF-8 text") from None


async def clarify(settings: Settings, notice_id: str, note: str) -> Clarified:
    clock = SystemClock()
    store = await open_store(settings)
    channels = Channels(settings, clock)
    try:
        return await send_clarification(
            store,
            channels.routes(),
            notice_id=notice_id,
            note=note,
            now=clock.now(),
            authority=authority(settings),
            labels=settings.category_labels,
        )
    finally:
        await channels.close()
        await store.close()


def register(app: typer.Typer) -> None:
    """Add ``notifier clarify`` to ``app``."""

    @app.command("clarify")
    def clarify_command(
        notice_id: Annotated[str, typer.Argument(help="The notice the platform asked about.")],
        note_file: Annotated[
            Path, typer.Option("--note-file", help="The answer to send (UTF-8 text; never logged).")
        ],
        config: Annotated[
            Path | None,
            typer.Option(
                "-c",
                "--config",
                envvar="NOTIFIER_CONFIG",
                help="Configuration file \\[default: config/notifier.toml].",
                show_default=False,
            ),
        ] = None,
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
            done = asyncio.run(clarify(settings, notice_id, _note(note_file)))
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
