"""Who answered (SPEC §8, §15): the report counts the acknowledgements entered by hand apart from
the platform's own, so a figure like "148 acknowledged" shows how much of it staff typed in.

``platform_acks`` counts the acknowledgements that changed something (their outcome ``applied``)
from the platform itself (its callbacks, the acknowledgement queue, its email replies);
``manual_acks`` those entered by hand (``notifier ack``, the console), whatever time they claim.
Both are about the notices of the requests the report's window selects (withdrawn requests left
out, as everywhere in the report); an acknowledgement counts once however many requests it
covers. A portal submission is a delivery, not an acknowledgement, and counts in neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ACK_SOURCE_KEYS", "AckSources", "ack_source_figures", "is_manual_source"]

# The keys added to each platform of the report, after §8's and §13's.
ACK_SOURCE_KEYS = ("platform_acks", "manual_acks")

# Sources of acknowledgements entered by hand before ``by`` was kept: ``notifier ack`` wrote
# ``manual``, the console ``console:<username>``.
MANUAL_SOURCE = "manual"
CONSOLE_SOURCE_PREFIX = "console:"


def is_manual_source(source: str, by: str | None) -> bool:
    """Whether an acknowledgement was entered by hand: it names who entered it, or (older rows)
    its source is the command line's or the console's."""
    return by is not None or source == MANUAL_SOURCE or source.startswith(CONSOLE_SOURCE_PREFIX)


@dataclass(frozen=True, slots=True, kw_only=True)
class AckSources:
    platform: int = 0
    manual: int = 0


def ack_source_figures(counts: Mapping[str, AckSources], platform: str) -> dict[str, Any]:
    """The keys of :data:`ACK_SOURCE_KEYS` for ``platform`` (zeros when it has none)."""
    found = counts.get(platform, AckSources())
    return {"platform_acks": found.platform, "manual_acks": found.manual}
