"""The compliance report written out (SPEC §8): JSON, one CSV row per group, a rich table for people,
and a self-contained HTML page with a chart of time-to-removal against each bound."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from rich.console import Console
from rich.table import Table

from notifier.domain.report import PERCENTILES, REMOVED_WITHIN, REPORT_KEYS
from notifier.domain.verification import VERIFY_REPORT_KEYS

FORMATS = ("table", "json", "csv", "html")
_DISTRIBUTIONS = ("time_to_delivery_s", "time_to_ack_s", "time_to_removal_s", "time_to_verified_removal_s")


def groups_of(report: Mapping[str, Any]) -> tuple[str, list[Mapping[str, Any]]]:
    """(the key that names each group, the groups) of a report by platform or by profile."""
    if "profiles" in report:
        return "profile", list(report["profiles"])
    return "platform", list(report["platforms"])


def render_json(report: Mapping[str, Any]) -> str:
    return json.dumps(report, ensure_ascii=False, indent=2) + "\n"


def _keys(by: str) -> list[str]:
    """The keys of a group, in order: checks are per platform, so a group by profile has none."""
    if by == "profile":
        return ["profile", "label", *REPORT_KEYS[1:]]
    return [*REPORT_KEYS, *VERIFY_REPORT_KEYS]


def csv_header(by: str = "platform") -> list[str]:
    """§8's keys with each distribution flattened: ``time_to_ack_s_p50``, ``…_p90``, ``…_max``,
    and ``removed_within`` as ``removed_within_1h`` … ``removed_within_7d``."""
    header: list[str] = []
    for key in _keys(by):
        if key in _DISTRIBUTIONS:
            header.extend(f"{key}_{p}" for p in PERCENTILES)
        elif key == "removed_within":
            header.extend(f"{key}_{name}" for name, _ in REMOVED_WITHIN)
        else:
            header.append(key)
    return header


def _flat(figures: Mapping[str, Any], by: str = "platform") -> dict[str, Any]:
    row: dict[str, Any] = {}
    for key in _keys(by):
        value = figures.get(key)
        if key in _DISTRIBUTIONS:
            for p in PERCENTILES:
                row[f"{key}_{p}"] = None if value is None else value[p]
        elif key == "removed_within":
            for name, _ in REMOVED_WITHIN:
                row[f"{key}_{name}"] = None if value is None else value[name]
        else:
            row[key] = value
    return row


def render_csv(report: Mapping[str, Any]) -> str:
    """One row per platform (or profile); an empty cell where the JSON has ``null``."""
    by, groups = groups_of(report)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=csv_header(by), lineterminator="\n")
    writer.writeheader()
    for figures in groups:
        writer.writerow({k: "" if v is None else v for k, v in _flat(figures, by).items()})
    return buffer.getvalue()


def _human(value: int | None) -> str:
    if value is None:
        return "-"
    if value >= 86400:
        return f"{value / 86400:.1f} d"
    if value >= 3600:
        return f"{value / 3600:.1f} h"
    if value >= 60:
        return f"{value // 60} min"
    return f"{value} s"


def _spread(distribution: Mapping[str, int] | None) -> str:
    if distribution is None:
        return "-"
    return " / ".join(_human(distribution[p]) for p in PERCENTILES)


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def render_table(report: Mapping[str, Any], console: Console) -> None:
    """For people: one line per platform (or profile), times in hours or days, percentiles as
    p50 / p90 / max; what is still undelivered beside what is open, so an unfiled portal notice
    shows; the share removed within its bound and the removals within 1 h / 24 h / 48 h / 7 d."""
    by, groups = groups_of(report)
    window = f"{report['since'] or 'the beginning'} → {report['until'] or report['generated_at']}"
    table = Table(title=f"Compliance report, {window}", title_justify="left")
    table.add_column(by, no_wrap=True)  # a name is never cut; the figures wrap instead
    # The undelivered beside the open, the breaches and the oldest: headings wrapped over lines
    # (``max_width``) so that three more figures make the table no wider.
    for heading, width in (
        ("requests", None),
        ("delivered/notices", None),
        ("removed", None),
        ("rejected", None),
        ("open / undelivered", 11),
        ("failed", None),
        ("dead letters", None),
        ("to ack p50/p90/max", None),
        ("to removal p50/p90/max", None),
        ("breaches ack / removal / undelivered", 14),
        ("oldest open / undelivered", 13),
        ("within bound", 7),
        ("removed ≤1h/24h/48h/7d", 14),
        # Checks are per platform: a report by profile has none.
        *(
            (("verified / false claims / reappeared", 12), ("to verified p50/p90/max", None))
            if by == "platform"
            else ()
        ),
    ):
        table.add_column(heading, justify="right", max_width=width)
    for f in groups:
        within = f["removed_within"]
        checked = (
            (
                f"{f['verified_removed']}/{f['false_claims']}/{f['reappeared']}",
                _spread(f["time_to_verified_removal_s"]),
            )
            if by == "platform"
            else ()
        )
        table.add_row(
            f["label"] if by == "profile" else f["platform"],
            str(f["requests"]),
            f"{f['delivered']}/{f['notices']}",
            str(f["removed"]),
            str(f["rejected"]),
            f"{f['open']}/{f['undelivered']}",
            str(f["failed"]),
            str(f["dead_letters"]),
            _spread(f["time_to_ack_s"]),
            _spread(f["time_to_removal_s"]),
            f"{f['ack_breaches']}/{f['removal_breaches']}/{f['undelivered_breaches']}",
            f"{_human(f['oldest_open_s'])}/{_human(f['oldest_undelivered_s'])}",
            _share(f["within_bound"]),
            "/".join(str(within[name]) for name, _ in REMOVED_WITHIN),
            *checked,
        )
    console.print(table)


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #1b1f24; }
.figures { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.85rem; }
th, td { border: 1px solid #c9d1d9; padding: .3rem .6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.breach { color: #b42318; font-weight: 600; }
svg text { font-size: 12px; fill: #1b1f24; }
.p50 { fill: #9ecae1; } .p90 { fill: #4292c6; } .max { fill: #08519c; }
.bound { stroke: #b42318; stroke-width: 2; stroke-dasharray: 4 3; }
"""

_BAR_HEIGHT, _ROW_GAP, _LABEL_WIDTH, _CHART_WIDTH = 12, 14, 140, 520


def _svg_chart(platforms: Sequence[Mapping[str, Any]]) -> str:
    """Time to removal (p50, p90, max, in hours) per platform as bars, with the bound as a line.

    One ``<g class="platform" data-platform="…">`` per platform, so a test (or a reader's browser
    tools) can find each platform's part of the chart.
    """
    hours = 3600
    longest = max(
        [f["removal_within"] for f in platforms]
        + [f["time_to_removal_s"]["max"] for f in platforms if f["time_to_removal_s"] is not None]
        + [1]
    )
    scale = _CHART_WIDTH / longest
    row_height = 3 * _BAR_HEIGHT + _ROW_GAP
    height = len(platforms) * row_height + 40
    width = _LABEL_WIDTH + _CHART_WIDTH + 80
    parts = [
        f'<svg width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="Time to removal per platform">',
        "<title>Time to removal per platform (hours) against its bound</title>",
    ]
    for index, f in enumerate(platforms):
        top = 10 + index * row_height
        name = escape(f["platform"])
        parts.append(f'<g class="platform" data-platform="{name}" transform="translate(0,{top})">')
        parts.append(f'<text x="0" y="{_BAR_HEIGHT * 2}">{name}</text>')
        distribution = f["time_to_removal_s"]
        for slot, p in enumerate(PERCENTILES):
            y = slot * _BAR_HEIGHT
            if distribution is None:
                if slot == 1:
                    parts.append(f'<text x="{_LABEL_WIDTH}" y="{y + _BAR_HEIGHT - 2}">no removals</text>')
                continue
            value = distribution[p]
            bar = max(1.0, value * scale)
            parts.append(
                f'<rect class="{p}" x="{_LABEL_WIDTH}" y="{y}" width="{bar:.1f}" height="{_BAR_HEIGHT - 2}">'
                f"<title>{name} {p}: {value / hours:.1f} h</title></rect>"
            )
            label_x = _LABEL_WIDTH + bar + 4
            parts.append(
                f'<text x="{label_x:.1f}" y="{y + _BAR_HEIGHT - 2}">{p} {value / hours:.1f} h</text>'
            )
        x = _LABEL_WIDTH + f["removal_within"] * scale
        parts.append(
            f'<line class="bound" x1="{x:.1f}" y1="-2" x2="{x:.1f}" y2="{3 * _BAR_HEIGHT}">'
            f"<title>bound {f['removal_within'] / hours:g} h</title></line>"
        )
        parts.append(
            f'<text class="bound-label" x="{x + 3:.1f}" y="{3 * _BAR_HEIGHT + 10}">'
            f"bound {f['removal_within'] / hours:g} h</text>"
        )
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def _cell(value: Any) -> str:
    return "–" if value is None else escape(str(value))


def render_html(report: Mapping[str, Any]) -> str:
    """A self-contained page: inline CSS and SVG, nothing fetched from the network."""
    by, groups = groups_of(report)
    # By profile, the chart names each group by its profile's label.
    platforms = groups if by == "platform" else [{**g, "platform": g["label"]} for g in groups]
    header = csv_header(by)
    head = "".join(f"<th>{escape(column)}</th>" for column in header)
    body = []
    for figures in groups:
        flat = _flat(figures, by)
        cells = []
        for column in header:
            breach = column.endswith("_breaches") and flat[column]
            css = ' class="breach"' if breach else ""
            cells.append(f"<td{css}>{_cell(flat[column])}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    window = f"{report['since'] or 'the beginning'} to {report['until'] or report['generated_at']}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        "<title>notifier compliance report</title>"
        f"<style>{_CSS}</style></head><body>"
        "<h1>Compliance report</h1>"
        f"<p>Requests delivered from {escape(window)}; generated {escape(report['generated_at'])}. "
        "Times in seconds; percentiles are nearest-rank. "
        "An open request past its bound counts as a breach.</p>"
        "<h2>Time to removal against the bound</h2>"
        f"<figure>{_svg_chart(platforms)}<figcaption>Bars: p50, p90 and max hours from delivery to "
        "removal; dashed line: the platform's removal bound.</figcaption></figure>"
        "<h2>Figures per platform</h2>"
        f'<div class="figures"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
        f"{_ledger_line(report)}"
        "</body></html>\n"
    )


def _ledger_line(report: Mapping[str, Any]) -> str:
    """The evidence record's head when the report was made: what pins the figures to the record."""
    head = report.get("ledger_head")
    if not head:
        return ""
    return (
        f'<p class="ledger">Evidence record head at generation: <code>{escape(str(head))}</code> '
        "(check it with <code>notifier evidence verify</code>).</p>"
    )


def render(report: Mapping[str, Any], fmt: str) -> str:
    """The report as text in ``fmt``; ``table`` as rich draws it, without colour (for a file)."""
    if fmt == "json":
        return render_json(report)
    if fmt == "csv":
        return render_csv(report)
    if fmt == "html":
        return render_html(report)
    if fmt == "table":
        # A file has no terminal to fit: one line per group, however many figures.
        console = Console(record=True, width=260, file=io.StringIO())
        render_table(report, console)
        return console.export_text()
    raise ValueError(f"unknown format {fmt!r} (use {', '.join(FORMATS)})")
