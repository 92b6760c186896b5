"""What every command shares: its ``-c/--config`` option (taken before the command too, SPEC §3),
its consoles, and one line on stderr for an error."""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from notifier.clock import Clock, SystemClock
from notifier.domain.manual import Entry, EntrySource, check_by
from notifier.errors import ConfigError
from notifier.settings import Settings, load_settings

# Piped or redirected output (reports kept in files, scripts) gets room for its tables.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "-c",
        "--config",
        envvar="NOTIFIER_CONFIG",
        help="Configuration file \\[default: config/notifier.toml].",
        show_default=False,
    ),
]


ByOption = Annotated[
    str | None,
    typer.Option(
        "--by",
        help="Who enters this record, kept with it \\[default: the operating-system user].",
        show_default=False,
    ),
]


def entry_for(by: str | None, clock: Clock | None = None) -> Entry:
    """Who enters a manual record from the command line, and when: ``--by`` when given, else the
    operating-system user running the command; or exit 2 naming what is wrong."""
    try:
        name = check_by(by if by is not None else getpass.getuser())
    except ValueError as error:
        raise fail(f"notifier: {error}", 2) from None
    except (OSError, KeyError):  # no login name and no password entry for this uid (containers)
        raise fail("notifier: cannot tell which user runs this command: give --by NAME", 2) from None
    return Entry(by=name, entered_at=(clock or SystemClock()).now(), source=EntrySource.CLI)


def fail(message: str, code: int) -> typer.Exit:
    """One line on stderr, then exit with ``code``."""
    err.print(message, markup=False)
    return typer.Exit(code)


def settings_from(config: Path | None) -> Settings:
    """The configuration, or exit 2 with one line naming the file or key at fault."""
    try:
        return load_settings(config)
    except ConfigError as error:
        raise fail(f"notifier: {error}", 2) from None


def config_first(argv: list[str]) -> list[str]:
    """``notifier -c FILE status``: a configuration given before the command is taken as
    ``$NOTIFIER_CONFIG`` (which every command reads, and a ``-c`` after the command overrides)."""
    rest = list(argv)
    while rest:
        first = rest[0]
        if first in ("-c", "--config") and len(rest) > 1:
            os.environ["NOTIFIER_CONFIG"], rest = rest[1], rest[2:]
        elif first.startswith("--config="):
            os.environ["NOTIFIER_CONFIG"], rest = first.partition("=")[2], rest[1:]
        elif first.startswith("-c") and len(first) > 2:
            os.environ["NOTIFIER_CONFIG"], rest = first[2:], rest[1:]
        else:
            break
    return rest


def os_user() -> str:
    """Who runs the command, for the evidence record of a staff action: the operating-system user."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return f"uid:{os.getuid()}"
