"""Durations as operators write them: ``90s``, ``15m``, ``36h``, ``7d``, or a number of seconds."""

from __future__ import annotations

import math
import re
from datetime import timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# Far beyond any bound an operator means, and well inside what timedelta and datetimes can hold.
_MAX_SECONDS = 3650 * 86400
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")


def parse_duration(value: str | float | timedelta) -> timedelta:
    """Parse a duration; raise ``ValueError`` naming the accepted forms."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration (use 90s, 15m, 36h, 7d or seconds)")
    elif isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _PATTERN.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a duration (use 90s, 15m, 36h, 7d or seconds)")
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if not math.isfinite(seconds):
        raise ValueError(f"{value!r} is not a duration (use 90s, 15m, 36h, 7d or seconds)")
    if seconds < 0:
        raise ValueError(f"{value!r} is negative; a duration is zero or more")
    if seconds > _MAX_SECONDS:
        raise ValueError(f"{value!r} is too long for a duration (the limit is {_MAX_SECONDS // 86400} days)")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """The shortest exact form among ``d``, ``h``, ``m``, ``s``."""
    seconds = delta.total_seconds()
    for unit in ("d", "h", "m"):
        size = _UNITS[unit]
        if seconds and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds!r}s"
