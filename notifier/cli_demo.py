"""``notifier demo`` (SPEC §9), registered on the main typer app: the flags and the printing."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from notifier.demo import scenario
from notifier.errors import ConfigError, NotifierError
from notifier.logging import configure_logging
from notifier.settings import DEFAULT_CONFIG

out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        config: Annotated[
            Path,
            typer.Option(
                "-c",
                "--config",
                envvar="NOTIFIER_CONFIG",
                help="Configuration to run (the embedded default).",
            ),
        ] = DEFAULT_CONFIG,
        speed: Annotated[
            float, typer.Option(help="At most this many seconds of business time per real second.")
        ] = scenario.DEFAULT_SPEED,
        requests: Annotated[
            int, typer.Option(help="Takedown requests in the month (about two thirds to the email platform).")
        ] = scenario.DEFAULT_REQUESTS,
        seed: Annotated[
            int, typer.Option(help="Seed of the month's requests and the platforms' delays.")
        ] = 7,
        folder: Annotated[
            Path,
            typer.Option("--out", help="Folder for the store, the logs and the reports (emptied first)."),
        ] = Path("var/demo"),
    ) -> None:
        """A month of the regulator's work against sandbox platforms, in a minute or two: the real
        daemon on a simulated clock, then the compliance report."""
        from notifier.demo.run import print_summary, run_demo

        configure_logging(json=False, level="warning")
        if requests < 4:
            err.print("notifier: --requests must be at least 4 (one per platform)", markup=False)
            raise typer.Exit(2)
        err.print(
            f"notifier demo: {requests} requests over one month to 4 sandbox platforms "
            f"(seed {seed}); the daemon logs to {folder.resolve() / 'notifier.log.jsonl'}",
            markup=False,
        )
        try:
            result = asyncio.run(
                run_demo(
                    config, folder=folder.resolve(), requests=requests, seed=seed, speed=speed, console=err
                )
            )
        except ConfigError as error:
            err.print(f"notifier: {error}", markup=False)
            raise typer.Exit(2) from None
        except NotifierError as error:  # DemoError among them
            err.print(f"notifier demo: {error}", markup=False)
            raise typer.Exit(1) from None
        print_summary(result, out)
        raise typer.Exit(1 if result.sandbox_failures else 0)
