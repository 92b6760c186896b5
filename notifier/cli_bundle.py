"""``notifier evidence export`` / ``check`` (case bundles) and ``notifier purge`` (SPEC §15).

``export ID... -o FILE.zip`` writes a case bundle (:mod:`notifier.services.evidence_export`) and
records the export in the ledger without content; ``check FILE.zip`` checks a bundle with nothing
but its files (exit 0, or 1 naming each file or entry that fails); ``purge [--dry-run]`` purges
what is past ``evidence.retention``.
"""

from __future__ import annotations

import asyncio
import zipfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, cast

import typer

from notifier.cli_args import ConfigOption, fail, os_user, out, settings_from
from notifier.cli_evidence import evidence_app
from notifier.clock import SystemClock
from notifier.domain.evidence_bundle import MANIFEST, check_bundle
from notifier.errors import ConfigError, NotifierError
from notifier.logging import configure_logging
from notifier.opening import open_store, profile_bounds, require_evidence_key, sla_bounds
from notifier.ports.evidence import PurgeCounts, PurgeStore
from notifier.services.evidence_export import (
    Bundle,
    UnknownIds,
    export_bundle,
    purge_past_retention,
    record_export,
)
from notifier.settings import Settings

# The first page first.
_FIRST = ("README.txt", "VERIFY.md", MANIFEST)


async def _export(settings: Settings, ids: list[str], output: Path) -> Bundle:
    platform = sla_bounds(settings)
    profiles = profile_bounds(settings)

    def bounds(platform_id: str, deadline: str | None) -> tuple[timedelta, timedelta] | None:
        found = profiles.get((platform_id, deadline)) if deadline else platform.get(platform_id)
        return None if found is None else (found.ack_within, found.removal_within)

    store = await open_store(settings, existing=True)
    try:
        now = SystemClock().now()
        bundle = await export_bundle(store, ids, now=now, bounds=bounds)
        _write(bundle, output)
        await record_export(store, bundle, now=now, by=os_user())
        return bundle
    finally:
        await store.close()


def _write(bundle: Bundle, output: Path) -> None:
    partial = output.with_name(output.name + ".partial")
    names = [n for n in _FIRST if n in bundle.files] + sorted(set(bundle.files) - set(_FIRST))
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in names:
            archive.writestr(name, bundle.files[name])
    partial.replace(output)


@evidence_app.command("export")
def export(
    ids: Annotated[list[str], typer.Argument(help="Request ids or notice ids.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The bundle to write (a .zip).")],
    config: ConfigOption = None,
) -> None:
    """Write a case bundle: the messages sent and received, the history, the SLA figures and the
    ledger entries up to the head, with a manifest and VERIFY.md. It may identify a victim."""
    configure_logging(json=False, level="warning")
    settings = settings_from(config)
    try:
        require_evidence_key(settings)
        bundle = asyncio.run(_export(settings, ids, output))
    except ConfigError as error:
        raise fail(f"notifier: {error}", 2) from None
    except (UnknownIds, NotifierError, OSError) as error:
        raise fail(f"notifier: {error}", 1) from None
    out.print(
        f"{output}: {len(bundle.notice_ids)} notice(s), {len(bundle.request_ids)} request(s), "
        f"{bundle.messages} message(s), {bundle.entries} ledger entries ({bundle.involved} of this case)",
        markup=False,
    )
    if bundle.not_kept:
        out.print(f"{bundle.not_kept} message(s) no longer kept: their hashes only", markup=False)
    out.print(f"head: {bundle.head.hash} (entry {bundle.head.seq})", markup=False)
    out.print("the bundle may identify a victim: keep it as the case file", markup=False)


def _read(path: Path) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            if info.filename in files:
                raise ValueError(f"{info.filename}: in the bundle twice")
            files[info.filename] = archive.read(info)
    return files


@evidence_app.command("check")
def check(
    bundle: Annotated[Path, typer.Argument(help="The bundle (.zip) to check.")],
    head: Annotated[
        str | None, typer.Option("--head", help="The published head hash it must end at.")
    ] = None,
) -> None:
    """Check a bundle without the store: the files' hashes, the entries' hashes and links up to the
    head it names (and --head); exit 1 naming what fails."""
    try:
        files = _read(bundle)
    except (OSError, zipfile.BadZipFile, ValueError) as error:
        raise fail(f"notifier: {bundle}: not a readable bundle ({error})", 1) from None
    result = check_bundle(files, published_head=head)
    out.print(f"head: {result.head}", markup=False)
    out.print(f"files: {result.files}; entries: {result.entries}; messages: {result.messages}", markup=False)
    for failure in result.failures:
        out.print(f"FAILS: {failure}", markup=False)
    out.print("intact" if result.clean else "NOT INTACT", markup=False)
    if not result.clean:
        raise typer.Exit(1)


def _oldest(count: int, at: object) -> str:
    stamp = at.isoformat() if isinstance(at, datetime) else at
    return f"{count}" + (f" (oldest {stamp})" if count and at is not None else "")


def _print_purge(counts: PurgeCounts, *, dry_run: bool) -> None:
    verb = "would purge" if dry_run else "purged"
    out.print(f"payloads {verb}: {_oldest(counts.payloads, counts.payloads_oldest)}", markup=False)
    out.print(
        f"requests' explanations and withdrawal reasons {verb}: "
        f"{_oldest(counts.requests, counts.requests_oldest)}",
        markup=False,
    )
    out.print(f"acknowledgement notes {verb}: {_oldest(counts.notes, counts.notes_oldest)}", markup=False)


async def _purge(settings: Settings, dry_run: bool) -> PurgeCounts:
    store = await open_store(settings, existing=True)
    try:
        return await purge_past_retention(
            cast(PurgeStore, store),
            now=SystemClock().now(),
            retention=settings.evidence.retention,
            dry_run=dry_run,
            by=os_user(),
        )
    finally:
        await store.close()


def purge(
    config: ConfigOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would go; change nothing.")] = False,
) -> None:
    """Purge what is past evidence.retention: payloads, settled requests' explanations, notes
    (hashes, states and times stay)."""
    configure_logging(json=False, level="warning")
    settings = settings_from(config)
    try:
        counts = asyncio.run(_purge(settings, dry_run))
    except ConfigError as error:
        raise fail(f"notifier: {error}", 2) from None
    except NotifierError as error:
        raise fail(f"notifier: {error}", 1) from None
    _print_purge(counts, dry_run=dry_run)


def register(app: typer.Typer) -> None:
    """Add ``notifier purge`` to ``app`` (``export`` and ``check`` are on ``notifier evidence``)."""
    app.command("purge")(purge)
