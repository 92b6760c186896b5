"""``notifier verify [ID...]``: check requests' URLs now (SPEC §13), registered on the main app.

With ids (requests, or notices for all their requests), those are checked at once, whatever their
timers say; without, every request whose check is due. What the checks change (verified removal,
false claims, re-appearances, follow-ups) is the same as in the daemon.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from notifier.channels.prober import Prober, prober_options
from notifier.cli_args import ConfigOption
from notifier.clock import SystemClock
from notifier.errors import ConfigError, NotifierError
from notifier.logging import configure_logging
from notifier.metrics import Metrics
from notifier.opening import authority, open_store
from notifier.services.verification import (
    RoundResult,
    VerificationService,
    verify_rules,
    verify_schedules,
)
from notifier.services.verify_followups import ChannelFollowups
from notifier.settings import Settings, load_settings

out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)


async def verify_ids(settings: Settings, ids: list[str]) -> list[RoundResult]:
    """Check ``ids`` now (or, without ids, whatever is due); the checks made."""
    from notifier.wiring import Channels

    clock = SystemClock()
    store = await open_store(settings, existing=True)
    channels = Channels(settings, clock)
    prober = Prober(prober_options(settings.verify, settings.authority.name))
    try:
        service = VerificationService(
            store=store,
            checker=prober,
            rules=verify_rules(settings),
            schedules=verify_schedules(settings),
            clock=clock,
            metrics=Metrics(),
            renotice=settings.verify.renotice,
            send_followup=ChannelFollowups(
                store=store,
                routes=channels.routes(),
                authority=authority(settings),
                category_labels=settings.category_labels,
            ),
        )
        if ids:
            return await service.verify_now(ids)
        return await service.due_now()
    finally:
        await prober.close()
        await channels.close()
        await store.close()


def _print(results: list[RoundResult]) -> None:
    table = Table(title="checks", title_justify="left")
    for column in ("request", "url", "outcome", "why", "status", "bytes"):
        table.add_column(column, overflow="fold")
    for result in results:
        for check in result.checks:
            table.add_row(
                result.request_id,
                check.url,
                check.outcome.value,
                check.reason or check.rule,
                "" if check.http_status is None else str(check.http_status),
                str(check.bytes_read),
            )
    out.print(table)


def register(app: typer.Typer) -> None:
    """Add ``notifier verify`` to ``app``."""

    @app.command()
    def verify(
        ids: Annotated[list[str] | None, typer.Argument(help="Request ids or notice ids.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")] = False,
        config: ConfigOption = None,
    ) -> None:
        """Check that content is gone: the given requests or notices now, else everything due."""
        configure_logging(json=False, level="warning")
        try:
            settings = load_settings(config)
            results = asyncio.run(verify_ids(settings, list(ids or [])))
        except ConfigError as error:
            err.print(f"notifier: {error}", markup=False)
            raise typer.Exit(2) from None
        except NotifierError as error:
            err.print(f"notifier: {error}", markup=False)
            raise typer.Exit(1) from None
        if as_json:
            document = [
                {"request_id": result.request_id, "checks": [check.as_dict() for check in result.checks]}
                for result in results
            ]
            out.print_json(json.dumps(document))
        else:
            _print(results)
        if ids and not results:
            err.print("notifier: no request found for these ids", markup=False)
            raise typer.Exit(1)
