"""The report in words for people: durations in days, hours and minutes; a terminal table readable
at 100 columns with every name whole and no figure broken inside a word; the published page with
the authority, the period in its zone, plain headings in English and Korean, breaches first, a
silent platform drawn as what it is, the buckets, the print style sheet and the ledger's head."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rich.console import Console

from notifier.domain.models import RequestState
from notifier.domain.report import Bounds, ReportRow
from notifier.domain.verification import VERIFY_REPORT_KEYS
from notifier.services.report import build_report, csv_header, render, render_html, render_table
from notifier.services.report_words import bound, duration, share

NOW = datetime(2024, 9, 30, 15, 0, tzinfo=UTC)  # 1 October 2024, midnight in Seoul
SINCE = NOW - timedelta(days=30)
H = timedelta(hours=1)
AUTHORITY = "Korea Communications Standards Commission"
BOUNDS = {
    "telegram": Bounds(ack_within=36 * H, removal_within=36 * H),
    "videohost": Bounds(ack_within=12 * H, removal_within=24 * H),
    "streamly-silent-platform": Bounds(ack_within=36 * H, removal_within=36 * H),
    "fresh": Bounds(ack_within=36 * H, removal_within=36 * H),
}


class _Rows:
    def __init__(self, rows: list[ReportRow]) -> None:
        self.rows = rows

    async def report_rows(self, **_: Any) -> list[ReportRow]:
        return self.rows

    async def dead_letter_counts(self, since: datetime | None, until: datetime | None) -> dict[str, int]:
        return {}


def _row(platform: str, delivered_ago: timedelta, removed_after: timedelta | None = None) -> ReportRow:
    delivered = NOW - delivered_ago
    return ReportRow(
        platform=platform,
        state=RequestState.DELIVERED if removed_after is None else RequestState.REMOVED,
        ingested_at=delivered - timedelta(minutes=10),
        delivered_at=delivered,
        acknowledged_at=None if removed_after is None else delivered + H,
        resolved_at=None if removed_after is None else delivered + removed_after,
        notice_id=f"TD-{platform}",
    )


async def _document() -> dict[str, Any]:
    rows = [_row("telegram", timedelta(days=9), timedelta(hours=h, minutes=5)) for h in (2, 20, 35)]
    rows += [_row("videohost", timedelta(days=5), timedelta(hours=h)) for h in (3, 30)]
    rows += [_row("streamly-silent-platform", timedelta(days=4, hours=h)) for h in range(16)]
    rows += [_row("fresh", H)]
    return await build_report(_Rows(rows), BOUNDS, now=NOW, since=SINCE)


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (None, "–"),
        (45, "45 s"),
        (600, "10 min"),
        (3600, "1 h"),
        (7500, "2 h 05 min"),
        (129_600, "1 d 12 h"),
        (172_800 - 1, "1 d 23 h"),  # truncated: just inside two days never reads "2 d"
        (172_800, "2 d"),
    ],
)
def test_durations_read_as_days_hours_and_minutes(seconds: int | None, words: str) -> None:
    assert duration(seconds) == words


def test_bounds_and_shares_read_exactly() -> None:
    assert [bound(s) for s in (3600, 86_400, 129_600, 172_800, 604_800, 5400)] == [
        "1 h",
        "24 h",
        "36 h",
        "2 d",
        "7 d",
        "90 min",
    ]
    assert [share(v) for v in (None, 1.0, 0.5, 0.995, 0.0)] == ["–", "100 %", "50 %", "99.5 %", "0 %"]


def _vocabulary(report: dict[str, Any]) -> set[str]:
    """Every word the table may print whole: headings, names, figures."""
    text = render(report, "table", wide=True)
    return set(text.split())


async def test_the_table_fits_100_columns_with_every_name_whole_and_no_word_broken() -> None:
    report = await _document()
    console = Console(record=True, width=100, file=io.StringIO(), color_system=None)
    render_table(report, console, timezone="Asia/Seoul")
    text = console.export_text()
    lines = text.splitlines()
    assert all(len(line) <= 100 for line in lines), max(map(len, lines))
    for name in BOUNDS:
        assert any(re.search(rf"(^|\s){re.escape(name)}\s", line) for line in lines), name
    # Every word printed is a whole word of a heading, a name or a figure (none cut or folded).
    allowed = _vocabulary(report) | set(render(report, "table").split())
    body = text.split("\n", 1)[1]
    for word in body.split():
        assert word in allowed or set(word) <= set("━─┃│"), word
    rows = {line.split()[0]: line for line in lines if line.split() and line.split()[0] in BOUNDS}
    # requests, delivered, answered within bound, removed within bound, verified, breaches, p90s
    assert rows["telegram"].split()[1:6] == ["3", "1/1", "100", "%", "100"]
    assert "1 d 11 h" in rows["telegram"]  # p90 of removal: 35 h 5 min
    silent = rows["streamly-silent-platform"].split()
    assert silent[1:5] == ["16", "1/1", "0", "%"] and "16/16" in silent
    assert "1 d 6 h" in rows["videohost"]


async def test_at_100_columns_a_long_profile_label_wraps_and_every_figure_stays_on_one_line() -> None:
    """A profile's label (a regulation's title) gives way first: it wraps at its spaces, and the
    durations (``1 d 11 h``, ``20 h 05 min``) each stay whole on one line, the last column too."""
    platforms = (await _document())["platforms"]
    label = "Regulation (EU) 2021/784, Art. 3(3): one hour removal order"
    report: dict[str, Any] = {
        "generated_at": "2024-09-30T15:00:00Z",
        "since": None,
        "until": None,
        "profiles": [
            dict(platforms[0], profile="tco", label=label),
            dict(platforms[1], profile=None, label="platform bounds"),
        ],
    }
    console = Console(record=True, width=100, file=io.StringIO(), color_system=None)
    render_table(report, console)
    lines = console.export_text().splitlines()
    assert all(len(line) <= 100 for line in lines), max(map(len, lines))
    for group in report["profiles"]:
        for key in ("time_to_ack_s", "time_to_removal_s"):
            figure = duration(group[key]["p90"])
            assert " " in figure and any(figure in line for line in lines), figure
    assert not any(label in line for line in lines)  # wrapped...
    assert any(line.lstrip().startswith("Regulation (EU)") for line in lines)  # ...at its spaces


async def test_the_table_in_a_file_is_the_same_text_every_time_and_wide_has_every_figure() -> None:
    report = await _document()
    assert render(report, "table") == render(report, "table")
    assert all(len(line) <= 100 for line in render(report, "table").splitlines())
    wide = render(report, "table", wide=True)
    assert wide == render(report, "table", wide=True)
    [telegram] = [line for line in wide.splitlines() if line.lstrip().startswith("telegram")]
    assert "0/2/3/3" in telegram  # removed within 1 h / 24 h / 48 h / 7 d
    assert "20 h 05 min / 1 d 11 h / 1 d 11 h" in telegram  # p50 / p90 / max


async def test_the_page_names_the_authority_and_the_period_in_its_zone_with_plain_headings() -> None:
    page = render_html(await _document(), authority=AUTHORITY, timezone="Asia/Seoul")
    text = re.sub(r"<style>.*?</style>|<[^>]+>", " ", page, flags=re.DOTALL).replace("\u00a0", " ")
    assert AUTHORITY in text
    assert "1 Sep 2024 00:00 – 1 Oct 2024 00:00 KST" in text
    for english, korean in (
        ("Removed within bound", "기한 내 삭제"),
        ("Breaches", "기한 위반"),
        ("Platform", "플랫폼"),
    ):
        assert english in text and korean in text
    # No key of the JSON and no time in seconds reaches the reader.
    assert [key for key in csv_header() if "_" in key and key in text] == []
    assert "126300" not in text  # telegram's p90 of removal, 35 h 5 min, in seconds
    assert "1 d 11 h" in text
    assert "@page { size: A4" in page
    assert "ledger" not in text.lower()


async def test_breaches_come_first_and_a_silent_platform_is_drawn_as_breached_without_an_answer() -> None:
    page = render_html(await _document(), timezone="UTC")
    rows = re.findall(r'<tr data-group="([^"]+)"( class="attention")?>', page[: page.index("</table>")])
    assert rows == [
        ("streamly-silent-platform", ' class="attention"'),
        ("videohost", ' class="attention"'),
        ("telegram", ""),
        ("fresh", ""),
    ]
    assert "16 of 16 breached, no answer" in page
    assert re.search(r'<rect class="bar unanswered" data-breached="16"', page)
    assert "none removed yet, none past its bound" in page  # fresh: nothing due yet, nothing red
    assert "no removals" not in page
    # The buckets: each bar splits its platform's requests, nothing lost or counted twice.
    buckets = page[page.index('<svg class="chart buckets"') :]
    for name, requests in (("telegram", 3), ("videohost", 2), ("streamly-silent-platform", 16)):
        group = buckets[buckets.index(f'data-group="{name}"') :]
        group = group[: group.index("</g>")]
        assert sum(map(int, re.findall(r'data-count="(\d+)"', group))) == requests
    assert 'data-bucket="b24h" data-count="1"' in buckets  # videohost's 3 h removal


async def test_the_ledger_head_is_shown_when_the_report_has_one() -> None:
    report = await _document()
    report["ledger_head"] = "9f2c" * 16
    page = render_html(report)
    assert "9f2c" * 16 in page
    assert "Evidence ledger head" in page


async def test_a_report_by_profile_wraps_long_labels_at_spaces_and_fits_100_columns() -> None:
    labels = ["Regulation (EU) 2021/784, Art. 3(3): one hour", "TAKE IT DOWN Act: 48 hours", "", ""]
    platforms = (await _document())["platforms"]
    report: dict[str, Any] = {
        "generated_at": "2024-09-30T15:00:00Z",
        "since": None,
        "until": None,
        "profiles": [
            {"profile": label or None, "label": label or "platform bounds"}
            | {k: v for k, v in g.items() if k != "platform" and k not in VERIFY_REPORT_KEYS}
            for label, g in zip(labels, platforms, strict=True)
        ],
    }
    text = render(report, "table")
    lines = text.splitlines()
    assert all(len(line) <= 100 for line in lines)
    assert "…" not in text
    tokens = text.split()
    assert all(word in tokens for word in labels[0].split())  # wrapped, if at all, at its spaces
    page = render_html(report)
    assert "Regulation (EU) 2021/784, Art. 3(3): one hour" in page
    assert "Deadline profile" in page and "기한 유형" in page
    # Checks are per platform, not per profile: no verified bars, no verified column.
    assert 'class="bar verified"' not in page and "Removal verified by us" not in page
