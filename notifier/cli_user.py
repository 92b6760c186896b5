"""``notifier user add|passwd|disable|enable|role``: the operations console's staff accounts
(SPEC §16). Admins do the same on the console's *Users* page; both record each change, by ``cli``
or ``console:<admin>``.

Passwords are read from standard input (one line; asked for without echo on a terminal), never
from an option, so they stay out of the shell's history and the process list.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from notifier.cli_args import ConfigOption, err, out, settings_from
from notifier.clock import SystemClock
from notifier.errors import ConfigError, NotifierError
from notifier.logging import configure_logging
from notifier.opening import open_store
from notifier.ports import Role, Store
from notifier.services.users import add_user, change_password, disable_user, enable_user, set_role

users = typer.Typer(help="The operations console's users.", no_args_is_help=True)


class RoleOption(StrEnum):
    viewer = "viewer"
    operator = "operator"
    admin = "admin"


def _password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != first:
            err.print("notifier: the passwords differ", markup=False)
            raise typer.Exit(1)
        return first
    return sys.stdin.readline().rstrip("\r\n")


def _act(config: Path | None, action: Callable[[Store], Awaitable[Any]]) -> None:
    configure_logging(json=False, level="warning")
    settings = settings_from(config)

    async def run() -> None:
        store = await open_store(settings)
        try:
            await action(store)
        finally:
            await store.close()

    try:
        asyncio.run(run())
    except ConfigError as error:
        err.print(f"notifier: {error}", markup=False)
        raise typer.Exit(2) from None
    except NotifierError as error:
        err.print(f"notifier: {error}", markup=False)
        raise typer.Exit(1) from None


@users.command("add")
def add(
    name: Annotated[str, typer.Argument(help="The user name (lower case).")],
    role: Annotated[RoleOption, typer.Option("--role", help="viewer reads; operator records; admin too.")],
    config: ConfigOption = None,
) -> None:
    """Add a console user; the password is read from standard input."""
    password = _password()
    _act(
        config, lambda store: add_user(store, name, password, role=Role(role.value), now=SystemClock().now())
    )
    out.print(f"{name}: added as {role.value}", markup=False)


@users.command("passwd")
def passwd(
    name: Annotated[str, typer.Argument(help="The user name.")],
    config: ConfigOption = None,
) -> None:
    """Set a user's password (read from standard input); their open sessions end."""
    password = _password()
    _act(config, lambda store: change_password(store, name, password, now=SystemClock().now()))
    out.print(f"{name}: password changed", markup=False)


@users.command("disable")
def disable(
    name: Annotated[str, typer.Argument(help="The user name.")],
    config: ConfigOption = None,
) -> None:
    """Disable a user: no more logins, and their open sessions end."""
    _act(config, lambda store: disable_user(store, name, now=SystemClock().now()))
    out.print(f"{name}: disabled", markup=False)


@users.command("enable")
def enable(
    name: Annotated[str, typer.Argument(help="The user name.")],
    config: ConfigOption = None,
) -> None:
    """Enable a disabled user again."""
    _act(config, lambda store: enable_user(store, name, now=SystemClock().now()))
    out.print(f"{name}: enabled", markup=False)


@users.command("role")
def role(
    name: Annotated[str, typer.Argument(help="The user name.")],
    new_role: Annotated[
        RoleOption, typer.Option("--role", help="viewer reads; operator records; admin too.")
    ],
    config: ConfigOption = None,
) -> None:
    """Change a user's role; their open sessions end."""
    _act(config, lambda store: set_role(store, name, Role(new_role.value), now=SystemClock().now()))
    out.print(f"{name}: now {new_role.value}", markup=False)


def register(app: typer.Typer) -> None:
    """Add ``notifier user`` to ``app``."""
    app.add_typer(users, name="user")
