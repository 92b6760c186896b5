"""The compliance report (SPEC §8): gather the rows, compute the figures, render them.

The rules are :mod:`notifier.domain.report`'s. A store that computes the figures itself
(:class:`FiguresStore`: PostgreSQL in grouped SQL, so a million requests are never fetched) is asked
for them; any other store hands over the rows of the window and the domain's tally computes them.
This module also chooses the platforms and their bounds from the settings, and writes the document
as JSON, CSV, a rich table or a self-contained HTML page.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from typing import Any, Protocol, runtime_checkable

from rich.console import Console
from rich.table import Table

from notifier.domain.models import format_timestamp
from notifier.domain.report import (
    NO_PROFILE,
    PERCENTILES,
    REMOVED_WITHIN,
    REPORT_KEYS,
    Bounds,
    PlatformFigures,
    ReportRow,
    platform_documents,
    tally,
)
from notifier.settings import Settings

FORMATS = ("table", "json", "csv", "html")
GROUPINGS = ("platform", "profile")
_DISTRIBUTIONS = ("time_to_delivery_s", "time_to_ack_s", "time_to_removal_s")


class ReportStore(Protocol):
    """What the report reads of a store: the rows of the window and the dead letters."""

    async def report_rows(
        self, *, since: datetime | None, until: datetime | None, platforms: Sequence[str] | None
    ) -> list[ReportRow]: ...

    async def dead_letter_counts(self, since: datetime | None, until: datetime | None) -> dict[str, int]: ...


@runtime_checkable
class FiguresStore(ReportStore, Protocol):
    """A report store that also computes the figures itself, as :func:`notifier.domain.report.tally`
    would from its rows (the contract tests hold it to that, on the same data)."""

    async def report_figures(
        self,
        *,
        bounds: Mapping[str, Bounds],
        now: datetime,
        since: datetime | None,
        until: datetime | None,
    ) -> dict[str, PlatformFigures]:
        """The figures of the platforms of ``bounds`` over the requests the window selects (as
        :func:`notifier.domain.report.in_window` does); a platform with none may be left out."""
        ...


def platform_bounds(settings: Settings, platforms: Sequence[str] | None = None) -> dict[str, Bounds]:
    """Each configured platform's bounds (its override, else the global one), in configuration
    order, narrowed to ``platforms`` when given (in that order)."""
    names = list(settings.platforms) if not platforms else list(dict.fromkeys(platforms))
    bounds: dict[str, Bounds] = {}
    for name in names:
        sla = settings.platforms[name].sla
        bounds[name] = Bounds(
            ack_within=sla.ack_within or settings.sla.ack_within,
            removal_within=sla.removal_within or settings.sla.removal_within,
        )
    return bounds


@dataclass(frozen=True, slots=True, kw_only=True)
class ProfileBounds:
    """The deadline profiles a report judges requests by (SPEC §14): each profile's bounds on each
    platform, and each profile's own bounds and label for its group of ``--by profile``."""

    on_platform: Mapping[tuple[str, str], Bounds] = field(default_factory=dict)
    groups: Mapping[str, Bounds] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)


def profile_bounds(settings: Settings) -> ProfileBounds:
    """The configured profiles as the report uses them; the group of requests without one
    (:data:`NO_PROFILE`) carries the ``[sla]`` defaults."""
    on_platform = {
        (platform, name): Bounds(ack_within=p.ack_within, removal_within=p.removal_within)
        for platform in settings.platforms
        for name, p in settings.platform_profiles(platform).items()
    }
    groups = {
        name: Bounds(ack_within=p.ack_within, removal_within=p.removal_within)
        for name, p in ((n, settings.profile(n)) for n in settings.deadlines)
    }
    groups[NO_PROFILE] = Bounds(
        ack_within=settings.sla.ack_within, removal_within=settings.sla.removal_within
    )
    labels = {name: p.label for name, p in settings.deadlines.items()} | {NO_PROFILE: "platform bounds"}
    return ProfileBounds(on_platform=on_platform, groups=groups, labels=labels)


async def build_report(
    store: ReportStore,
    bounds: Mapping[str, Bounds],
    *,
    now: datetime,
    since: datetime | None = None,
    until: datetime | None = None,
    profiles: ProfileBounds | None = None,
    by: str = "platform",
) -> dict[str, Any]:
    """``{"generated_at", "since", "until", "platforms": [...]}``; every platform of ``bounds``
    appears, zeros and nulls when it has nothing in the window. ``by="profile"``: ``"profiles"``
    instead, one group per deadline profile (and one for requests without one). Each request is
    judged by its own profile's bounds: a store computing figures itself knows only the platforms'
    bounds, so with profiles the rows are tallied here."""
    if by not in GROUPINGS:
        raise ValueError(f"unknown grouping {by!r} (use {', '.join(GROUPINGS)})")
    profiles = profiles or ProfileBounds()
    if isinstance(store, FiguresStore) and not profiles.on_platform and by == "platform":
        figures = await store.report_figures(bounds=bounds, now=now, since=since, until=until)
    else:
        rows = await store.report_rows(since=since, until=until, platforms=list(bounds))
        groups = profiles.groups if by == "profile" else None
        figures = tally(
            rows,
            bounds=bounds,
            now=now,
            since=since,
            until=until,
            profiles=profiles.on_platform,
            groups=groups,
        )
    letters = await store.dead_letter_counts(since, until)
    document: dict[str, Any] = {
        "generated_at": format_timestamp(now),
        "since": None if since is None else format_timestamp(since),
        "until": None if until is None else format_timestamp(until),
    }
    if by == "platform":
        document["platforms"] = platform_documents(figures, bounds=bounds, dead_letters=letters)
        return document
    document["profiles"] = [
        {"profile": group["platform"] or None, "label": profiles.labels.get(group["platform"], "")}
        | {key: value for key, value in group.items() if key != "platform"}
        for group in platform_documents(figures, bounds=profiles.groups)
    ]
    return document


def groups_of(report: Mapping[str, Any]) -> tuple[str, list[Mapping[str, Any]]]:
    """(the key that names each group, the groups) of a report by platform or by profile."""
    if "profiles" in report:
        return "profile", list(report["profiles"])
    return "platform", list(report["platforms"])


# -- rendering --------------------------------------------------------------------------------------


def render_json(report: Mapping[str, Any]) -> str:
    return json.dumps(report, ensure_ascii=False, indent=2) + "\n"


def _keys(by: str) -> list[str]:
    return ["profile", "label", *REPORT_KEYS[1:]] if by == "profile" else list(REPORT_KEYS)


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
        value = figures[key]
        if key in _DISTRIBUTIONS:
            for p in PERCENTILES:
                row[f"{key}_{p}"] = None if value is None else value[p]
        elif key == "removed_within":
            for name, _ in REMOVED_WITHIN:
                row[f"{key}_{name}"] = value[name]
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
    table.add_column(by)
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
        ("removed ≤1h/24h/48h/7d", 12),
    ):
        table.add_column(heading, justify="right", max_width=width)
    for f in groups:
        within = f["removed_within"]
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
        "</body></html>\n"
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
        console = Console(record=True, width=180, file=io.StringIO())
        render_table(report, console)
        return console.export_text()
    raise ValueError(f"unknown format {fmt!r} (use {', '.join(FORMATS)})")
