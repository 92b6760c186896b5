"""The compliance report as a rich table for a terminal.

By default the figures a reader scans first, readable at 100 columns: requests, notices delivered,
the shares acknowledged and removed within their bounds, removals verified, breaches and the 90th
percentiles of the times. ``wide`` adds the rest (open, undelivered, rejected, failed, dead letters,
every percentile, the buckets of 1 h / 24 h / 48 h / 7 d, false claims and re-appearances).

Names are never cut and no figure is broken inside a word: figure columns do not wrap, only their
headings do, at spaces.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

from rich import box
from rich.console import Console
from rich.table import Table

from notifier.domain.report import REMOVED_WITHIN
from notifier.services.report_words import (
    NONE,
    acked_in_bound,
    duration,
    group_name,
    period,
    share,
    spread,
)

# (heading, figure of a group); the heading wraps at its spaces, the figure never.
Column = tuple[str, Any]


def _p90(key: str) -> Any:
    return lambda g: NONE if g[key] is None else duration(g[key]["p90"])


def _narrow(by: str) -> list[Column]:
    columns: list[Column] = [
        ("requests", lambda g: str(g["requests"])),
        ("delivered", lambda g: f"{g['delivered']}/{g['notices']}"),
        ("acked in bound", lambda g: share(acked_in_bound(g))),
        ("removed in bound", lambda g: share(g["within_bound"])),
    ]
    if by == "platform":
        columns.append(("verified", lambda g: str(g.get("verified_removed", NONE))))
    columns += [
        ("breaches ack/ removal", lambda g: f"{g['ack_breaches']}/{g['removal_breaches']}"),
        ("to ack p90", _p90("time_to_ack_s")),
        ("to removal p90", _p90("time_to_removal_s")),
    ]
    return columns


def _wide(by: str) -> list[Column]:
    columns: list[Column] = [
        ("requests", lambda g: str(g["requests"])),
        ("delivered/ notices", lambda g: f"{g['delivered']}/{g['notices']}"),
        ("removed", lambda g: str(g["removed"])),
        ("rejected", lambda g: str(g["rejected"])),
        ("open/ undelivered", lambda g: f"{g['open']}/{g['undelivered']}"),
        ("failed", lambda g: str(g["failed"])),
        ("dead letters", lambda g: str(g["dead_letters"])),
        ("to ack p50/ p90/ max", lambda g: spread(g["time_to_ack_s"], "p50", "p90", "max")),
        ("to removal p50/ p90/ max", lambda g: spread(g["time_to_removal_s"], "p50", "p90", "max")),
        (
            "breaches ack/ removal/ undelivered",
            lambda g: f"{g['ack_breaches']}/{g['removal_breaches']}/{g['undelivered_breaches']}",
        ),
        (
            "oldest open/ undelivered",
            lambda g: f"{duration(g['oldest_open_s'])}/{duration(g['oldest_undelivered_s'])}",
        ),
        ("acked in bound", lambda g: share(acked_in_bound(g))),
        ("removed in bound", lambda g: share(g["within_bound"])),
        (
            "removed ≤1h/ 24h/ 48h/ 7d",
            lambda g: "/".join(str(g["removed_within"][name]) for name, _ in REMOVED_WITHIN),
        ),
        ("withdrawn", lambda g: str(g["withdrawn"])),
        ("paused", lambda g: duration(g["paused_s"]) if g["paused_s"] else "0"),
    ]
    if by == "platform":
        columns += [
            (
                "verified/ false claims/ reappeared",
                lambda g: (
                    f"{g.get('verified_removed', NONE)}/{g.get('false_claims', NONE)}"
                    f"/{g.get('reappeared', NONE)}"
                ),
            ),
            (
                "to verified p50/ p90/ max",
                lambda g: spread(g.get("time_to_verified_removal_s"), "p50", "p90", "max"),
            ),
        ]
    return columns


def _two_lines(figure: str) -> int:
    """The narrowest width that holds ``figure`` on two lines, broken at a space."""
    words = figure.split(" ")
    return min(
        max(len(" ".join(words[:cut])), len(" ".join(words[cut:]))) for cut in range(1, len(words) + 1)
    )


def _widths(
    names: list[str], cells: list[list[str]], headings: list[str], room: int | None, *, wrap_names: bool
) -> list[int]:
    """Each column's width: its widest figure (or the longest word of its heading, which wraps).
    Short of ``room``, the columns with the most to give narrow first: a profile's label (which
    wraps at its spaces), then the columns whose figures have spaces (``14 h 51 min``), to hold
    them on two lines, so that they wrap at a space and never inside a word."""
    full = [max([len(n) for n in names] + [8])]
    # A platform's id stays whole; a profile's label may wrap at its spaces.
    least = [max([len(w) for n in names for w in n.split()] + [8])] if wrap_names else list(full)
    for index, heading in enumerate(headings):
        figures = [row[index] for row in cells]
        words = [len(w) for w in heading.split()]
        full.append(max([len(f) for f in figures] + words))
        least.append(max([_two_lines(f) for f in figures] + words))
    if room is None:
        return full
    widths = list(full)
    # Each column costs its width, its left padding (none for the first) and the space after it
    # (a separator, or the table's right edge).
    excess = sum(widths) + 2 * len(widths) - room
    while excess > 0:
        slack = [(widths[i] - least[i], i) for i in range(len(widths)) if widths[i] > least[i]]
        if not slack:
            break
        _, widest = max(slack)
        widths[widest] -= 1
        excess -= 1
    return widths


def build_table(
    report: Mapping[str, Any], *, wide: bool = False, timezone: str = "UTC", room: int | None = None
) -> Table:
    """The table; ``room``: the columns it may take (none: as wide as its figures need)."""
    by = "profile" if "profiles" in report else "platform"
    groups = report["profiles"] if by == "profile" else report["platforms"]
    columns = _wide(by) if wide else _narrow(by)
    cells = [[figure(g) for _, figure in columns] for g in groups]
    names = [group_name(g, by) for g in groups]
    headings = [heading for heading, _ in columns]
    widths = _widths(names, cells, headings, room, wrap_names=by == "profile")
    table = Table(
        title=f"Compliance report, {period(report, ZoneInfo(timezone))}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 0, 0, 1),
        pad_edge=False,
    )
    # A platform's name is never cut; a profile's label may wrap at its spaces.
    table.add_column(by, no_wrap=by == "platform", width=widths[0])
    for heading, width in zip(headings, widths[1:], strict=True):
        table.add_column(heading, justify="right", width=width)
    for name, row in zip(names, cells, strict=True):
        table.add_row(name, *row)
    return table


def render_table(
    report: Mapping[str, Any], console: Console, *, wide: bool = False, timezone: str = "UTC"
) -> None:
    """Print the report's table on ``console`` (``wide``: every figure, however wide)."""
    room = None if wide else console.width
    console.print(build_table(report, wide=wide, timezone=timezone, room=room))


def table_text(report: Mapping[str, Any], *, wide: bool = False, timezone: str = "UTC") -> str:
    """The table as plain text, as it reads at 100 columns (``wide``: at whatever width it needs):
    the same bytes for the same report, whatever the terminal."""
    width = 100
    if wide:
        table = build_table(report, wide=True, timezone=timezone)
        width = Console(width=1000, file=io.StringIO()).measure(table).maximum
    console = Console(record=True, width=width, file=io.StringIO(), color_system=None, force_terminal=False)
    render_table(report, console, wide=wide, timezone=timezone)
    lines = [line.rstrip() for line in console.export_text().splitlines()]
    return "\n".join(lines).rstrip("\n") + "\n"
