"""Text shown to people, made safe and unambiguous: one clean line, paragraphs kept, and a deadline
written in UTC and in the authority's zone.

Whatever a request carries is shown exactly but never trusted: one-line fields lose control and
line-break characters, so a header, a subject or a table cell cannot be broken out of.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Final
from zoneinfo import ZoneInfo

# Characters that break a line or hide themselves: C0/C1 controls, format characters (bidi
# overrides, zero-width), line and paragraph separators, lone surrogates.
_UNSAFE_CATEGORIES: Final = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def one_line(text: str) -> str:
    """``text`` as one clean line: controls, line breaks and invisible characters become spaces,
    runs of whitespace one space, and the ends are trimmed. Safe in a header or a table cell."""
    if text.isprintable():
        # No control, format or separator character (each is unprintable): only the spacing to
        # tidy, in C, instead of a look at every character.
        return text if "  " not in text and text == text.strip() else " ".join(text.split())
    cleaned = "".join(" " if unicodedata.category(ch) in _UNSAFE_CATEGORIES else ch for ch in text)
    return " ".join(cleaned.split())


def paragraph(text: str) -> str:
    """Multi-line free text with its line structure kept (LF only) and every line cleaned as
    :func:`one_line` does; more than one blank line in a row becomes one."""
    lines = [one_line(line) for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    kept: list[str] = []
    for line in lines:
        if line or (kept and kept[-1]):
            kept.append(line)
    return "\n".join(kept).strip("\n")


def deadline_text(dt: datetime, tz: str | tzinfo) -> str:
    """An absolute time in UTC and in the authority's zone, e.g.
    ``2024-09-05 01:00 UTC = 2024-09-05 10:00 KST (Asia/Seoul)``."""
    if dt.tzinfo is None:
        raise ValueError("deadline_text needs a timezone-aware datetime")
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    utc = dt.astimezone(UTC)
    text = f"{utc:%Y-%m-%d %H:%M} UTC"
    key = str(getattr(zone, "key", zone))
    if key in {"UTC", "Etc/UTC", "Etc/Universal", "Universal", "Zulu", "Etc/Zulu"}:
        return text
    local = dt.astimezone(zone)
    offset = local.utcoffset() or timedelta(0)
    name = local.tzname() or ""
    if not name or name[0] in "+-":  # zones without an abbreviation: show the offset instead
        minutes = int(offset.total_seconds() // 60)
        sign = "+" if minutes >= 0 else "-"
        name = f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return f"{text} = {local:%Y-%m-%d %H:%M} {name} ({key})"


def within_text(bound: timedelta | None, language: str) -> str:
    """A bound as a notice states it: ``36 hours``, ``1 hour``, ``7 days``, ``90 minutes``
    (``36시간``, ``7일``, ``90분`` in Korean); empty when not known. Up to two days reads in hours."""
    if bound is None:
        return ""
    seconds = int(bound.total_seconds())
    if seconds % 86400 == 0 and seconds >= 3 * 86400:
        count, (one, many, korean) = seconds // 86400, ("day", "days", "일")
    elif seconds % 3600 == 0:
        count, (one, many, korean) = seconds // 3600, ("hour", "hours", "시간")
    elif seconds % 60 == 0:
        count, (one, many, korean) = seconds // 60, ("minute", "minutes", "분")
    else:
        count, (one, many, korean) = seconds, ("second", "seconds", "초")
    if language == "ko":
        return f"{count}{korean}"
    return f"{count} {one if count == 1 else many}"
