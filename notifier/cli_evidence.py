"""``notifier evidence verify``: check the evidence record (SPEC §15), registered on the main app.

Prints the head hash (what operators publish), then either ``clean`` (exit 0) or every finding:
the first entry of the chain or payload that fails, and each notice or request whose stored
state or times differ from the record (exit 1).
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from notifier.cli_args import ConfigOption, fail, out, settings_from
from notifier.errors import ConfigError, NotifierError
from notifier.logging import configure_logging
from notifier.opening import open_store
from notifier.services.evidence import LedgerVerdict, verify_ledger
from notifier.settings import Settings

evidence_app = typer.Typer(
    help="The evidence record: verify the hash-chained ledger; export and check case bundles.",
    no_args_is_help=True,
)


async def _verify(settings: Settings) -> LedgerVerdict:
    store = await open_store(settings, existing=True)
    try:
        return await verify_ledger(store)
    finally:
        await store.close()


def _document(verdict: LedgerVerdict) -> dict[str, object]:
    return {
        "head": {"seq": verdict.head.seq, "hash": verdict.head.hash},
        "entries": verdict.entries,
        "pending": verdict.pending,
        "payloads_checked": verdict.payloads_checked,
        "payloads_unchecked": verdict.payloads_unchecked,
        "payloads_not_kept": verdict.payloads_not_kept,
        "chain": verdict.chain_failure,
        "payload": verdict.payload_failure,
        "states": [finding.describe() for finding in verdict.findings],
        "clean": verdict.clean,
    }


@evidence_app.command("verify")
def verify(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Walk the chain and the kept payloads, replay the record against the store; exit 1 on any finding."""
    configure_logging(json=False, level="warning")
    settings = settings_from(config)
    try:
        verdict = asyncio.run(_verify(settings))
    except ConfigError as error:
        raise fail(f"notifier: {error}", 2) from None
    except NotifierError as error:
        raise fail(f"notifier: {error}", 1) from None
    if as_json:
        out.print_json(json.dumps(_document(verdict)))
    else:
        _print(verdict)
    if not verdict.clean:
        raise typer.Exit(1)


def _print(verdict: LedgerVerdict) -> None:
    out.print(f"head: {verdict.head.hash} (entry {verdict.head.seq})", markup=False)
    unchecked = f", {verdict.payloads_unchecked} not checked (no key)" if verdict.payloads_unchecked else ""
    if verdict.payloads_not_kept:
        unchecked += (
            f", {verdict.payloads_not_kept} not kept (purged past retention, or recorded without a key)"
        )
    out.print(
        f"entries: {verdict.entries}; payloads checked: {verdict.payloads_checked}{unchecked}", markup=False
    )
    if verdict.pending:
        out.print(
            f"waiting for their place in the chain: {verdict.pending} entries written by a daemon "
            "in the last moments (replayed after the head; a running daemon chains them "
            "within a second)",
            markup=False,
        )
    if verdict.chain_failure:
        out.print(f"chain: {verdict.chain_failure}", markup=False)
    if verdict.payload_failure:
        out.print(f"payload: {verdict.payload_failure}", markup=False)
    for finding in verdict.findings:
        out.print(f"differs: {finding.describe()}", markup=False)
    out.print("clean" if verdict.clean else "NOT CLEAN", markup=False)


def register(app: typer.Typer) -> None:
    """Add ``notifier evidence …`` to ``app``."""
    app.add_typer(evidence_app, name="evidence")
