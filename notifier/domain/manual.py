"""Who entered a manual record and when (SPEC §15): an acknowledgement, a portal submission, a
retry, a clarification's answer or a withdrawal typed in by staff keeps who entered it and when it
was entered apart from the time it claims (``--at``), so a record dated in the past is still told
from one made at that time.

Who: the console user for the console's actions; for the command line ``--by NAME`` when given,
else the operating-system user running it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

__all__ = ["MAX_BY", "Entry", "EntrySource", "ManualAction", "ManualRecord", "check_by"]

MAX_BY: Final = 128
_SPACE: Final = re.compile(r"\s+")


class EntrySource(StrEnum):
    CLI = "cli"
    CONSOLE = "console"


class ManualAction(StrEnum):
    """Manual records other than acknowledgements (those are kept with every other one, in the
    acknowledgement history, with the same ``by`` and ``entered_at``)."""

    SUBMITTED = "submitted"  # a portal notice submitted by staff: its delivery
    RETRY = "retry"
    CLARIFY = "clarify"
    WITHDRAW = "withdraw"


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """Who entered a record, from where, and when (from the clock, never from the operator)."""

    by: str
    entered_at: datetime
    source: EntrySource = EntrySource.CLI


@dataclass(frozen=True, slots=True, kw_only=True)
class ManualRecord:
    action: ManualAction
    notice_id: str | None
    request_id: str | None
    at: datetime  # the time it claims (``--at``), or when it was entered when it claims none
    entered_at: datetime
    by: str
    source: EntrySource


def check_by(name: str, *, option: str = "--by") -> str:
    """``name`` as it is kept: surrounding space dropped, inner runs of space made one. Raises
    ``ValueError`` naming what is wrong (empty, too long, a control character)."""
    cleaned = _SPACE.sub(" ", name).strip()
    if not cleaned:
        raise ValueError(f"{option} is empty: name who entered the record")
    if len(cleaned) > MAX_BY:
        raise ValueError(f"{option} is over {MAX_BY} characters")
    if any(unicodedata.category(char).startswith("C") for char in cleaned):
        raise ValueError(f"{option} contains a control or unassigned character")
    return cleaned
