"""The HTML report's charts as inline SVG (no script, nothing fetched), drawn to be read in print.

* :func:`removal_chart`: per platform (or profile), the removal the platform claimed and, where
  notifier checks URLs, the removal it verified, against the removal bound: a bar to the 90th
  percentile, a tick at the median, a whisker to the longest, and the bound as a dashed red line. A
  group with no removal and breaches is drawn as what it is, a red "16 of 16 breached, no answer".
* :func:`bucket_chart`: per group, one bar of its requests split into removed within 1 h, 24 h,
  48 h, 7 d, later, rejected and still open: the buckets regulators publish.

Each group is one ``<g class="group" data-group="…">`` so a reader's browser tools, and the tests,
find its part of the chart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from notifier.domain.report import REMOVED_WITHIN
from notifier.services.report_words import DAY, HOUR, bound, duration, silent

WIDTH = 760
LABEL = 150  # the names, left of the bars
TEXT = 200  # the figures, right of the bars
BARS = WIDTH - LABEL - TEXT
ROW, GAP, TOP = 18, 16, 34
NAME_CHARS = 20  # what the name column holds, in the bold 12 px of the names

_STEPS = (HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY, 14 * DAY, 30 * DAY)


def _axis_end(groups: Sequence[Mapping[str, Any]]) -> int:
    """The longest bound or 90th percentile, with room to spare: a few very long removals are
    cut at the axis' end (their whisker ends in an arrow) rather than squeezing every bar."""
    values = [int(g["removal_within"]) for g in groups]
    for g in groups:
        for key in ("time_to_removal_s", "time_to_verified_removal_s"):
            if g.get(key) is not None:
                values.append(int(g[key]["p90"]))
    return max([HOUR, *values]) * 6 // 5


def _step(end: int) -> int:
    return next((s for s in _STEPS if end / s <= 8), _STEPS[-1])


def _text(x: float, y: float, words: str, css: str = "") -> str:
    cls = f' class="{css}"' if css else ""
    return f'<text{cls} x="{x:.1f}" y="{y:.1f}">{escape(words)}</text>'


def _name(name: str, y: float) -> str:
    """A group's name left of its bars, shortened with an ellipsis where it would run into them
    (the table beside the chart has it whole; the tooltip too)."""
    shown = name if len(name) <= NAME_CHARS else name[: NAME_CHARS - 1] + "…"
    return f'<text class="name" x="0" y="{y:.1f}"><title>{escape(name)}</title>{escape(shown)}</text>'


def _range_bar(
    name: str, kind: str, distribution: Mapping[str, int], *, y: float, scale: float, end: int
) -> list[str]:
    """Bar to p90, tick at p50, whisker to max (an arrow when it runs past the axis)."""
    p50, p90, longest = (int(distribution[p]) for p in ("p50", "p90", "max"))
    x0 = LABEL
    width = max(1.5, min(p90, end) * scale)
    whisker = min(longest, end) * scale
    middle = y + ROW / 2
    said = "claimed removal" if kind == "claimed" else "verified removal"
    median = x0 + min(p50, end) * scale
    parts = [
        f'<line class="whisker {kind}" x1="{x0:.1f}" y1="{middle:.1f}" x2="{x0 + whisker:.1f}" '
        f'y2="{middle:.1f}"/>',
        f'<rect class="bar {kind}" data-p90="{p90}" x="{x0}" y="{y + 2:.1f}" width="{width:.1f}" '
        f'height="{ROW - 4}"><title>{escape(name)}, {said}: 90 % within {duration(p90)}</title></rect>',
        f'<line class="median" x1="{median:.1f}" y1="{y:.1f}" x2="{median:.1f}" y2="{y + ROW:.1f}">'
        f"<title>median {duration(p50)}</title></line>",
    ]
    if longest > end:
        tip = x0 + BARS
        parts.append(
            f'<path class="whisker {kind}" d="M{tip - 6:.1f},{middle - 4:.1f} L{tip:.1f},{middle:.1f} '
            f'L{tip - 6:.1f},{middle + 4:.1f}"/>'
        )
    return parts


def _claimed(g: Mapping[str, Any], name: str, y: float, scale: float, end: int) -> list[str]:
    distribution = g["time_to_removal_s"]
    text_x = LABEL + BARS + 8
    if distribution is not None:
        figures = f"claimed: {g['removed']} · 90 % in {duration(distribution['p90'])}"
        return [
            *_range_bar(name, "claimed", distribution, y=y, scale=scale, end=end),
            _text(text_x, y + 13, figures),
        ]
    if g["removal_breaches"]:
        delivered = g["requests"] - g["undelivered"] - g["failed"]
        answer = "no answer" if silent(g) else "none removed"
        words = f"{g['removal_breaches']} of {delivered} breached, {answer}"
        return [
            f'<rect class="bar unanswered" data-breached="{g["removal_breaches"]}" x="{LABEL}" '
            f'y="{y + 2:.1f}" width="{BARS}" height="{ROW - 4}"><title>{escape(name)}: {escape(words)}'
            "</title></rect>",
            _text(LABEL + 6, y + 13, words, "on-red"),
            _text(text_x, y + 13, "claimed: none", "breach"),
        ]
    return [_text(LABEL + 6, y + 13, "none removed yet, none past its bound", "muted")]


def _verified(g: Mapping[str, Any], name: str, y: float, scale: float, end: int) -> list[str]:
    distribution = g["time_to_verified_removal_s"]
    text_x = LABEL + BARS + 8
    if distribution is not None:
        figures = f"verified: {g['verified_removed']} · 90 % in {duration(distribution['p90'])}"
        return [
            *_range_bar(name, "verified", distribution, y=y, scale=scale, end=end),
            _text(text_x, y + 13, figures),
        ]
    return [_text(LABEL + 6, y + 13, "no removal verified", "muted")]


def _ticks(end: int, scale: float, bottom: float) -> list[str]:
    step = _step(end)
    parts = []
    for at in range(0, end + 1, step):
        x = LABEL + at * scale
        parts.append(f'<line class="grid" x1="{x:.1f}" y1="{TOP - 6}" x2="{x:.1f}" y2="{bottom:.1f}"/>')
        parts.append(_text(x, bottom + 12, bound(at) if at else "0", "tick"))
    return parts


def removal_chart(groups: Sequence[Mapping[str, Any]], names: Sequence[str]) -> str:
    """Claimed (and verified) removal against the bound, one group of rows per platform."""
    end = _axis_end(groups)
    scale = BARS / end
    verifies = any("time_to_verified_removal_s" in g for g in groups)
    rows = 2 if verifies else 1
    block = rows * ROW + GAP
    height = TOP + len(groups) * block + 20
    parts = [
        f'<svg class="chart removal" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
        'role="img" aria-labelledby="removal-title">',
        '<title id="removal-title">Time to removal per platform against its removal bound</title>',
        _legend_removal(verifies),
    ]
    parts.extend(_ticks(end, scale, TOP + len(groups) * block - GAP + 4))
    for index, (g, name) in enumerate(zip(groups, names, strict=True)):
        top = TOP + index * block
        parts.append(f'<g class="group" data-group="{escape(name)}">')
        parts.append(_name(name, top + 13))
        parts.extend(_claimed(g, name, top, scale, end))
        if verifies:
            parts.append(_text(0, top + ROW + 13, "verified by us", "muted"))
            parts.extend(_verified(g, name, top + ROW, scale, end))
        x = LABEL + min(int(g["removal_within"]), end) * scale
        parts.append(
            f'<line class="bound" x1="{x:.1f}" y1="{top - 3}" x2="{x:.1f}" y2="{top + rows * ROW + 3}">'
            f"<title>removal bound {bound(int(g['removal_within']))}</title></line>"
        )
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def _legend_removal(verifies: bool) -> str:
    items = [("claimed", "claimed removal (90 %)")]
    if verifies:
        items.append(("verified", "verified removal (90 %)"))
    parts = ['<g class="legend">']
    x = 0
    for css, words in items:
        parts.append(f'<rect class="bar {css}" x="{x}" y="4" width="14" height="10"/>')
        parts.append(_text(x + 18, 13, words))
        x += 30 + 7 * len(words)
    parts.append(f'<line class="median" x1="{x + 6}" y1="2" x2="{x + 6}" y2="16"/>')
    parts.append(_text(x + 12, 13, "median"))
    x += 70
    parts.append(f'<line class="bound" x1="{x + 6}" y1="0" x2="{x + 6}" y2="18"/>')
    parts.append(_text(x + 12, 13, "removal bound"))
    parts.append("</g>")
    return "".join(parts)


def buckets(g: Mapping[str, Any]) -> list[tuple[str, str, int]]:
    """(css class, words, count) of a group's requests, in order: removed within 1 h, 1 to 24 h,
    24 to 48 h, 48 h to 7 d, later; rejected; still open; the rest (not deliverable)."""
    within = g["removed_within"]
    counts, previous = [], 0
    words = ("within 1 h", "1 h – 24 h", "24 h – 48 h", "48 h – 7 d")
    for (name, _), said in zip(REMOVED_WITHIN, words, strict=True):
        counts.append((f"b{name}", said, int(within[name]) - previous))
        previous = int(within[name])
    counts.append(("blate", "after 7 d", int(g["removed"]) - previous))
    counts.append(("rejected", "rejected", int(g["rejected"])))
    counts.append(("open", "still open", int(g["open"])))
    rest = int(g["requests"]) - int(g["removed"]) - int(g["rejected"]) - int(g["open"])
    counts.append(("other", "not deliverable", max(0, rest)))
    return counts


def bucket_chart(groups: Sequence[Mapping[str, Any]], names: Sequence[str]) -> str:
    """One bar per group: its requests by how soon they were removed (a stacked bar)."""
    block = ROW + 10
    legend = buckets(groups[0]) if groups else []
    height = TOP + len(groups) * block + 4
    parts = [
        f'<svg class="chart buckets" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
        'role="img" aria-labelledby="buckets-title">',
        '<title id="buckets-title">Requests per platform by time to removal</title><g class="legend">',
    ]
    x = 0.0
    for css, words, _ in legend:
        parts.append(f'<rect class="seg {css}" x="{x}" y="4" width="12" height="10"/>')
        parts.append(_text(x + 15, 13, words))
        x += 22 + int(6.2 * len(words))
    parts.append("</g>")
    width = BARS + TEXT - 100
    for index, (g, name) in enumerate(zip(groups, names, strict=True)):
        top = TOP + index * block
        total = max(1, int(g["requests"]))
        parts.append(f'<g class="group" data-group="{escape(name)}">')
        parts.append(_name(name, top + 13))
        left = float(LABEL)
        for css, words, count in buckets(g):
            if count <= 0:
                continue
            w = width * count / total
            parts.append(
                f'<rect class="seg {css}" data-bucket="{css}" data-count="{count}" x="{left:.1f}" '
                f'y="{top:.1f}" width="{w:.1f}" height="{ROW}">'
                f"<title>{escape(name)}: {count} {escape(words)}</title></rect>"
            )
            if w >= 9 * len(str(count)) + 4:
                parts.append(_text(left + w / 2, top + 13, str(count), f"count on-{css}"))
            left += w
        parts.append(_text(LABEL + width + 8, top + 13, f"{g['requests']} requests"))
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)
