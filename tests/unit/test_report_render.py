"""The compliance report's document and its renderings: JSON keys as SPEC §8 fixes them, one CSV
row per platform, a self-contained HTML page with one chart group per platform."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

from notifier.domain.models import RequestState
from notifier.domain.report import REPORT_KEYS, Bounds, ReportRow
from notifier.domain.report_acks import ACK_SOURCE_KEYS
from notifier.domain.verification import VERIFY_REPORT_KEYS
from notifier.services.report import build_report, csv_header, render, render_csv, render_html, render_json

NOW = datetime(2024, 9, 10, 12, 0, tzinfo=UTC)
SINCE = NOW - timedelta(days=30)
H36 = timedelta(hours=36)
BOUNDS = {
    "telegram": Bounds(ack_within=H36, removal_within=H36),
    "clip<share>": Bounds(ack_within=timedelta(hours=12), removal_within=timedelta(hours=24)),
    "quiet": Bounds(ack_within=H36, removal_within=H36),
}
SPEC_KEYS = [
    "platform",
    "requests",
    "notices",
    "delivered",
    "acknowledged",
    "removed",
    "rejected",
    "open",
    "undelivered",
    "failed",
    "dead_letters",
    "ack_within",
    "removal_within",
    "time_to_delivery_s",
    "time_to_ack_s",
    "time_to_removal_s",
    "ack_breaches",
    "removal_breaches",
    "undelivered_breaches",
    "oldest_open_s",
    "oldest_undelivered_s",
    "within_bound",
    "removed_within",
    "paused_s",
    "withdrawn",
]


class _Rows:
    """A report store of fixed rows (the store's own rules are in the contract tests)."""

    def __init__(self, rows: list[ReportRow]) -> None:
        self.rows = rows

    async def report_rows(self, **_: Any) -> list[ReportRow]:
        return self.rows

    async def dead_letter_counts(self, since: datetime | None, until: datetime | None) -> dict[str, int]:
        return {"telegram": 1, "": 4}


def _row(platform: str, state: RequestState, hours: float, notice: str) -> ReportRow:
    delivered = NOW - timedelta(days=2)
    return ReportRow(
        platform=platform,
        state=state,
        ingested_at=delivered - timedelta(minutes=5),
        delivered_at=delivered,
        acknowledged_at=delivered + timedelta(hours=hours / 2),
        resolved_at=delivered + timedelta(hours=hours) if state is RequestState.REMOVED else None,
        notice_id=notice,
    )


async def _document() -> dict[str, Any]:
    rows = [
        _row("telegram", RequestState.REMOVED, 2, "TD-t-1"),
        _row("telegram", RequestState.REMOVED, 40, "TD-t-1"),
        _row("clip<share>", RequestState.REMOVED, 10, "TD-c-1"),
        _row("clip<share>", RequestState.ACKNOWLEDGED, 1, "TD-c-2"),
    ]
    return await build_report(_Rows(rows), BOUNDS, now=NOW, since=SINCE)


async def test_json_document_has_the_specified_keys_and_rfc3339_times() -> None:
    document = json.loads(render_json(await _document()))
    assert list(document) == ["generated_at", "since", "until", "platforms"]
    assert document["generated_at"] == "2024-09-10T12:00:00Z"
    assert document["since"] == "2024-08-11T12:00:00Z"
    assert document["until"] is None
    assert [p["platform"] for p in document["platforms"]] == list(BOUNDS)
    for figures in document["platforms"]:
        # §8's, then §13's, then who answered (§15)
        assert list(figures) == SPEC_KEYS + list(VERIFY_REPORT_KEYS) + list(ACK_SOURCE_KEYS)
        assert (figures["platform_acks"], figures["manual_acks"]) == (0, 0)  # a store that cannot tell
    telegram = document["platforms"][0]
    assert telegram["time_to_removal_s"] == {"p50": 7200, "p90": 144000, "max": 144000}
    assert (telegram["removal_breaches"], telegram["dead_letters"]) == (1, 1)
    assert document["platforms"][2]["time_to_removal_s"] is None


def test_domain_key_order_is_the_specification_order() -> None:
    assert list(REPORT_KEYS) == SPEC_KEYS


async def test_csv_has_one_row_per_platform_with_flattened_percentiles() -> None:
    text = render_csv(await _document())
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["platform"] for r in rows] == list(BOUNDS)
    header = text.splitlines()[0].split(",")
    assert header == csv_header()
    assert "time_to_removal_s_p90" in header
    assert "time_to_removal_s" not in header
    # §8's keys with 3 distributions flattened and four removal buckets, then §13's with 1
    # distribution, then §15's two counts of acknowledgements.
    assert len(header) == len(SPEC_KEYS) - 4 + 3 * 3 + 4 + len(VERIFY_REPORT_KEYS) - 1 + 3 + len(
        ACK_SOURCE_KEYS
    )
    assert header[-2:] == ["platform_acks", "manual_acks"]
    telegram, _, quiet = rows
    assert (telegram["time_to_removal_s_p50"], telegram["time_to_removal_s_max"]) == ("7200", "144000")
    assert (quiet["requests"], quiet["time_to_ack_s_p50"], quiet["oldest_open_s"]) == ("0", "", "")


class _Page(HTMLParser):
    """The tags of a page, and its text as a reader sees it (no style sheet, no attributes)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.words: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if not self._in_style:
            self.words.append(data)

    @property
    def text(self) -> str:
        return " ".join(self.words)


def _parsed(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    return parser


async def test_html_is_a_self_contained_page_with_one_chart_group_per_platform() -> None:
    page = render_html(await _document())
    parser = _parsed(page)
    assert "http://" not in page
    assert "https://" not in page
    for tag, attrs in parser.tags:
        assert tag not in {"script", "link", "img", "iframe"}
        assert not any(name in {"src", "href"} for name in attrs)
    for chart in ("removal", "buckets"):
        start = page.index(f'<svg class="chart {chart}"')
        groups = _parsed(page[start : page.index("</svg>", start)]).tags
        named = [str(a["data-group"]) for tag, a in groups if tag == "g" and a.get("class") == "group"]
        assert sorted(named) == sorted(BOUNDS)  # the parser unescapes "<" and ">"
    bounds = [a for tag, a in parser.tags if tag == "line" and a.get("class") == "bound"]
    assert len(bounds) == len(BOUNDS) + 1  # one per platform, and the legend's
    assert "<share>" not in page  # platform names are escaped
    assert "removal bound 24 h" in page


async def test_table_lists_every_platform() -> None:
    text = render(await _document(), "table")
    for name in BOUNDS:
        assert name in text


async def test_the_table_shows_unfiled_portal_requests_as_open_undelivered_and_breached() -> None:
    rendered = NOW - timedelta(hours=3)
    rows = [
        ReportRow(
            platform="quiet",
            state=RequestState.BATCHED,
            ingested_at=rendered,
            delivered_at=None,
            acknowledged_at=None,
            resolved_at=None,
            notice_id="TD-q-1",
            undelivered_breach=True,
        )
        for _ in range(1000)
    ]
    report = await build_report(_Rows(rows), BOUNDS, now=NOW, since=SINCE)
    text = render(report, "table", wide=True)
    [line] = [line for line in text.splitlines() if "quiet" in line]
    cells = re.split(r"\s{2,}", line.strip())
    assert "1000/1000" in cells  # open/undelivered
    assert "0/0/1000" in cells  # breaches ack/removal/undelivered
    assert "–/3 h" in cells  # oldest open/undelivered
    [quiet] = list(csv.DictReader(io.StringIO(render(report, "csv"))))[2:]
    assert (quiet["open"], quiet["undelivered"], quiet["undelivered_breaches"]) == ("1000", "1000", "1000")
    assert quiet["oldest_undelivered_s"] == str(3 * 3600)


async def test_the_html_page_carries_the_ledger_head_of_its_json() -> None:
    document = await _document() | {"ledger_head": "ab" * 32}

    page = render_html(document)

    assert f'<span class="ledger">{"ab" * 32}</span>' in page
    assert json.loads(render_json(document))["ledger_head"] == "ab" * 32
    assert "Evidence record head" not in render_html(await _document())
