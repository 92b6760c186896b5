"""What the command line takes before the command: ``-c/--config`` (SPEC §3)."""

from __future__ import annotations

import os


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
