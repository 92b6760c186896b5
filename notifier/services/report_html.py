"""The compliance report as a page to publish: self-contained HTML (inline CSS and SVG, no script,
nothing fetched) for the authority's readers, in English and Korean, printable on A4.

What comes first is what a reader must not miss: the authority, the period in its time zone, and
the platforms with breaches or requests open past their bound, in red, at the top of the table.
Then one row per platform (or deadline profile) in plain words, times in days, hours and minutes;
the charts; the remaining figures.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

from notifier.services.report_chart import bucket_chart, removal_chart
from notifier.services.report_words import (
    HEADINGS,
    NONE,
    acked_in_bound,
    bound,
    breaches,
    delivered_requests,
    duration,
    group_name,
    moment,
    needs_attention,
    open_past_bound,
    period,
    share,
    silent,
)

_GLUE = re.compile(r"(\d) (?=[a-z%])")
_CSS = """
:root { color-scheme: light; }
body { font-family: system-ui, "Noto Sans", "Noto Sans KR", "NanumGothic", "Malgun Gothic",
       "Apple SD Gothic Neo", sans-serif; margin: 1.2rem 1.5rem; color: #1b1f24; font-size: 14px; }
header { border-bottom: 3px solid #1f3b64; padding-bottom: .4rem; margin-bottom: .8rem; }
.authority { font-size: 1.05rem; font-weight: 600; color: #1f3b64; margin: 0; }
h1 { font-size: 1.5rem; margin: .2rem 0; }
h2 { font-size: 1.1rem; margin: 1.2rem 0 .3rem; }
.ko { display: block; font-weight: 400; color: #57606a; font-size: .86em; }
h1 .ko, h2 .ko { display: inline; margin-left: .5em; }
.period { margin: .2rem 0; }
.note { color: #57606a; font-size: .85rem; margin: .3rem 0; }
.attention { border-left: 5px solid #b42318; background: #fef3f2; padding: .4rem .8rem; margin: .6rem 0; }
.attention h2 { margin: 0 0 .2rem; color: #b42318; font-size: 1rem; }
.attention ul { margin: 0; padding-left: 1.1rem; }
.clean { border-left: 5px solid #1a7f37; background: #f0fdf4; padding: .4rem .8rem; margin: .6rem 0; }
table { border-collapse: collapse; width: 100%; table-layout: fixed; font-size: .82rem; margin: .3rem 0; }
th, td { border: 1px solid #d0d7de; padding: .25rem .4rem; text-align: right; vertical-align: top;
         overflow-wrap: anywhere; }
th { background: #f3f4f6; font-weight: 600; vertical-align: bottom; }
th:first-child, td:first-child { text-align: left; }
td:first-child { font-weight: 600; }
tr.attention td { background: #fef3f2; }
tr.attention td:first-child { border-left: 5px solid #b42318; }
td.breach, span.breach { color: #b42318; font-weight: 700; }
td.ok { color: #1a7f37; }
.sub { display: block; color: #57606a; font-weight: 400; font-size: .9em; }
figure { margin: .4rem 0; }
figcaption { color: #57606a; font-size: .82rem; }
svg.chart { width: 100%; max-width: 760px; height: auto; display: block; }
svg text { font-size: 11px; fill: #1b1f24; }
svg text.name { font-weight: 600; font-size: 12px; }
svg text.muted, svg text.tick { fill: #57606a; }
svg text.tick { text-anchor: middle; }
svg text.breach { fill: #b42318; font-weight: 700; }
svg text.on-red { fill: #ffffff; font-weight: 700; }
svg text.count { text-anchor: middle; fill: #ffffff; font-size: 10px; }
svg text.on-b24h, svg text.on-b48h, svg text.on-rejected, svg text.on-other { fill: #1b1f24; }
.grid { stroke: #e5e7eb; stroke-width: 1; }
.bar.claimed { fill: #4292c6; } .bar.verified { fill: #2e8b57; }
.bar.unanswered { fill: #b42318; }
.whisker { stroke: #57606a; stroke-width: 1.5; fill: none; }
.median { stroke: #1b1f24; stroke-width: 2; }
.bound { stroke: #b42318; stroke-width: 2; stroke-dasharray: 4 3; }
.seg.b1h { fill: #00441b; } .seg.b24h { fill: #74c476; } .seg.b48h { fill: #c7e9c0; }
.seg.b7d { fill: #fdae6b; } .seg.blate { fill: #e6550d; } .seg.rejected { fill: #bdbdbd; }
.seg.open { fill: #b42318; } .seg.other { fill: #e5e7eb; }
.ledger { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .8rem;
          overflow-wrap: anywhere; }
@media screen and (max-width: 760px) {
  /* On a phone the tables keep readable columns and scroll sideways, never cutting words. */
  div.table { overflow-x: auto; }
  div.table table { min-width: 720px; }
  th, td { overflow-wrap: normal; }
}
@page { size: A4; margin: 12mm; }
@media print {
  body { margin: 0; font-size: 10pt; }
  table { font-size: 7pt; }
  th, td { padding: 2px 3px; }
  tr, figure, .attention { break-inside: avoid; }
  thead { display: table-header-group; }
  svg.chart { max-width: 100%; }
  .attention, tr.attention td, th { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""


def _nb(text: str) -> str:
    """Escaped, a number never parted from its unit (``90 %``, ``1 d 4 h`` breaks only as
    ``1 d`` / ``4 h``)."""
    return escape(_GLUE.sub("\\1\u00a0", text))


def _times(distribution: Mapping[str, int] | None, *points: str) -> str:
    if distribution is None:
        return NONE
    return " / ".join(_nb(duration(distribution[p])) for p in points)


def _heading(key: str) -> str:
    english, korean = HEADINGS[key]
    return f'<th scope="col">{_nb(english)}<span class="ko" lang="ko">{_nb(korean)}</span></th>'


def _sub(main: str, sub: str) -> str:
    return f'{_nb(main)}<span class="sub">{_nb(sub)}</span>'


def _breach_cell(g: Mapping[str, Any]) -> str:
    total = breaches(g)
    detail = f"ack {g['ack_breaches']} · removal {g['removal_breaches']}"
    if g["undelivered_breaches"]:
        detail += f" · filed late {g['undelivered_breaches']}"
    css = "breach" if total else "ok"
    return f'<td class="breaches {css}" data-breaches="{total}">{_sub(str(total), detail)}</td>'


def _open_cell(g: Mapping[str, Any]) -> str:
    oldest = g.get("oldest_open_s")
    late = open_past_bound(g)
    sub = f"oldest {duration(oldest)}" if oldest is not None else "none waiting"
    if g["undelivered"]:
        sub += f" · {g['undelivered']} not yet delivered"
    css = ' class="open breach"' if late else ' class="open"'
    return f"<td{css}>{_sub(str(g['open']), sub)}</td>"


def _removed_cell(g: Mapping[str, Any], verifies: bool) -> str:
    if not verifies:
        return f"<td>{_sub(str(g['removed']), 'of ' + str(g['requests']))}</td>"
    return f"<td>{_sub(str(g['verified_removed']), 'platform said ' + str(g['removed']))}</td>"


def _removal_cell(g: Mapping[str, Any]) -> str:
    times = g["time_to_removal_s"]
    if times is None:
        words = "no answer" if silent(g) else NONE
        return f'<td class="{"breach" if silent(g) else ""}">{words}</td>'
    late = times["p90"] > g["removal_within"]
    sub = f"median {duration(times['p50'])} · longest {duration(times['max'])}"
    return f'<td class="{"breach" if late else ""}">{_sub(duration(times["p90"]), sub)}</td>'


def _share_cell(value: float | None) -> str:
    css = "breach" if value is not None and value < 1 else ""
    return f'<td class="{css}">{_nb(share(value))}</td>' if css else f"<td>{_nb(share(value))}</td>"


def _main_table(groups: Sequence[Mapping[str, Any]], names: Sequence[str], by: str, verifies: bool) -> str:
    keys = [by, "requests", "breaches", "open", "acked_in_bound", "within_bound"]
    keys += ["verified_removed" if verifies else "removed", "time_to_removal", "bound"]
    widths = [12, 11, 11, 11, 11, 11, 11, 11, 11]
    cols = "".join(f'<col style="width:{w}%">' for w in widths)
    rows = []
    for g, name in zip(groups, names, strict=True):
        css = ' class="attention"' if needs_attention(g) else ""
        removal = _removal_cell(g)
        cells = [
            f"<td>{escape(name)}</td>",
            f"<td>{g['requests']}</td>",
            _breach_cell(g),
            _open_cell(g),
            _share_cell(acked_in_bound(g)),
            _share_cell(g["within_bound"]),
            _removed_cell(g, verifies),
            removal,
            f"<td>{_nb(bound(int(g['ack_within'])))} / {_nb(bound(int(g['removal_within'])))}</td>",
        ]
        rows.append(f'<tr data-group="{escape(name)}"{css}>{"".join(cells)}</tr>')
    head = "".join(_heading(k) for k in keys)
    return (
        f'<table class="figures main"><colgroup>{cols}</colgroup><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _detail_table(groups: Sequence[Mapping[str, Any]], names: Sequence[str], by: str, verifies: bool) -> str:
    keys = [by, "delivered", "acknowledged", "time_to_ack", "removed_within"]
    if verifies:
        keys += ["time_to_verified", "false_claims", "reappeared"]
    keys += ["withdrawn"]
    rows = []
    for g, name in zip(groups, names, strict=True):
        within = g["removed_within"]
        answered = f"{g['acknowledged']} of {delivered_requests(g)}"
        rejected = f"{g['rejected']} rejected"
        cells = [
            f"<td>{escape(name)}</td>",
            f"<td>{g['delivered']} of {g['notices']}</td>",
            f"<td>{_sub(answered, rejected) if g['rejected'] else answered}</td>",
            f"<td>{_times(g['time_to_ack_s'], 'p50', 'p90')}</td>",
            f"<td>{' / '.join(str(within[k]) for k in ('1h', '24h', '48h', '7d'))}</td>",
        ]
        if verifies:
            cells.append(f"<td>{_times(g['time_to_verified_removal_s'], 'p50', 'p90')}</td>")
            cells.append(f'<td class="{"breach" if g["false_claims"] else ""}">{g["false_claims"]}</td>')
            cells.append(f'<td class="{"breach" if g["reappeared"] else ""}">{g["reappeared"]}</td>')
        lost = g["failed"] + g["dead_letters"]
        withdrawn = _sub(str(g["withdrawn"]), f"{lost} not deliverable") if lost else g["withdrawn"]
        cells.append(f"<td>{withdrawn}</td>")
        rows.append(f'<tr data-group="{escape(name)}">{"".join(cells)}</tr>')
    widths = (
        [12, *([11] * (len(keys) - 1))] if verifies else [16, *([84 // (len(keys) - 1)] * (len(keys) - 1))]
    )
    cols = "".join(f'<col style="width:{w}%">' for w in widths)
    return (
        f'<table class="figures detail"><colgroup>{cols}</colgroup>'
        f"<thead><tr>{''.join(_heading(k) for k in keys)}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _attention(groups: Sequence[Mapping[str, Any]], names: Sequence[str]) -> str:
    items = []
    for g, name in zip(groups, names, strict=True):
        if not needs_attention(g):
            continue
        said = []
        if silent(g):
            said.append(
                f"{g['removal_breaches']} of {delivered_requests(g)} past the removal bound, no answer"
            )
        elif g["removal_breaches"]:
            said.append(f"{g['removal_breaches']} removed late or not at all")
        if g["ack_breaches"] and not silent(g):
            said.append(f"{g['ack_breaches']} acknowledged late or not at all")
        if g["undelivered_breaches"]:
            said.append(f"{g['undelivered_breaches']} filed late on the portal by us")
        if open_past_bound(g):
            said.append(f"oldest open request waiting {duration(g['oldest_open_s'])}")
        items.append(
            f'<li data-group="{escape(name)}"><span class="breach">{escape(name)}</span>: '
            f"{escape('; '.join(said))}</li>"
        )
    if not items:
        return '<p class="clean">No breach: every request answered and removed within its bound.</p>'
    return (
        '<section class="attention"><h2>Breaches and requests open past their bound'
        '<span class="ko" lang="ko">기한 위반 및 기한 경과 미처리</span></h2>'
        f"<ul>{''.join(items)}</ul></section>"
    )


def _ordered(groups: Sequence[Mapping[str, Any]], by: str) -> list[tuple[Mapping[str, Any], str]]:
    """Groups that need attention first (most breaches first), the others in the report's order."""
    named = [(g, group_name(g, by)) for g in groups]
    return sorted(named, key=lambda item: (not needs_attention(item[0]), -breaches(item[0])))


def render_html(report: Mapping[str, Any], *, authority: str | None = None, timezone: str = "UTC") -> str:
    """The report as a page to publish; ``authority`` and ``timezone`` are the authority's."""
    by = "profile" if "profiles" in report else "platform"
    ordered = _ordered(report["profiles"] if by == "profile" else report["platforms"], by)
    groups = [g for g, _ in ordered]
    names = [n for _, n in ordered]
    verifies = by == "platform" and any("verified_removed" in g for g in groups)
    zone = ZoneInfo(timezone)
    who = f'<p class="authority">{escape(authority)}</p>' if authority else ""
    grouped = "platform" if by == "platform" else "deadline profile"
    ledger = ""
    if report.get("ledger_head"):
        ledger = (
            '<p class="note">Evidence ledger head (SHA-256 chain) · 증거 원장 해시: '
            f'<span class="ledger">{escape(str(report["ledger_head"]))}</span></p>'
        )
    charts = ""
    checked = "; “verified”: when notifier itself first found every URL gone" if verifies else ""
    if groups:
        charts = (
            "<h2>Removal against the bound<span class='ko' lang='ko'>기한 대비 삭제 소요 시간</span></h2>"
            f"<figure>{removal_chart(groups, names)}<figcaption>Bars: the time within which 90 % of "
            "removals came, from delivery of the notice; black tick: the median; grey line: the "
            "longest (an arrow when it runs past the axis); dashed red line: the removal bound. "
            f"“Claimed”: when the platform said it removed the content{checked}.</figcaption></figure>"
            "<h2>How soon requests were removed<span class='ko' lang='ko'>삭제 소요 시간 분포</span></h2>"
            f"<figure>{bucket_chart(groups, names)}<figcaption>Each bar is one {grouped}'s requests: "
            "removed within 1 hour, 24 hours, 48 hours, 7 days, later; rejected; still open."
            "</figcaption></figure>"
        )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(authority or 'Takedown')} compliance report</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<header>{who}<h1>Takedown compliance report"
        "<span class='ko' lang='ko'>삭제 요청 이행 보고서</span></h1>"
        f'<p class="period">Notices delivered {escape(period(report, zone))} ({escape(timezone)})'
        '<span class="ko" lang="ko">통지 전달 기준 기간</span></p>'
        f'<p class="note">Generated {escape(moment(report["generated_at"], zone))}. One row per {grouped}. '
        "A breach is an answer or removal later than its bound, or none by then; an open request past "
        "its bound counts. Times run from delivery of the notice; median and 90 % are of the "
        "requests answered or removed.</p>"
        f"{ledger}</header>"
        f"{_attention(groups, names)}"
        f'<div class="table">{_main_table(groups, names, by, verifies)}</div>'
        f"{charts}"
        "<h2>More figures<span class='ko' lang='ko'>세부 수치</span></h2>"
        f'<div class="table">{_detail_table(groups, names, by, verifies)}</div>'
        f'<p class="note">{NONE}: no such request in the period.</p>'
        "</body></html>\n"
    )
