"""The HTML compliance report as headless Chromium lays it out, paints it and prints it.

The report comes from a real SQLite store seeded with six platforms: two clean, one removing late,
one leaving acknowledged requests open past the bound, and two silent (nothing answered, every
request past its bound; one of them quietly removed half its content, as notifier's checks saw).
At 1280 x 800 every platform's breaches are on screen without scrolling; the charts draw what the
figures say, the silent platforms in red; in print (A4) no table is wider than the page and no cell
overflows, and the page prints to a PDF.

Skips when chromium is not installed on a developer's machine; under ``CI=true`` that is a failure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from notifier.domain.models import RequestState
from notifier.domain.report import Bounds
from notifier.services.report import build_report, render_html
from notifier.store import SqlStore
from notifier.store.tables import requests
from tests.chromium import A4_CONTENT_PX, MEASURE, RED, check_charts, png_size, report_page
from tests.stores import sqlite_store

NOW = datetime(2024, 9, 30, 15, 0, tzinfo=UTC)  # 1 October, midnight in Seoul
SINCE = NOW - timedelta(days=30)
H = timedelta(hours=1)
AUTHORITY = "Korea Communications Standards Commission"
BOUNDS = {
    "telegram": Bounds(ack_within=36 * H, removal_within=36 * H),
    "videohost": Bounds(ack_within=12 * H, removal_within=24 * H),
    "clip<share>": Bounds(ack_within=24 * H, removal_within=24 * H),
    "streamly": Bounds(ack_within=36 * H, removal_within=36 * H),
    "silent-platform-long-name": Bounds(ack_within=36 * H, removal_within=36 * H),
    "fresh": Bounds(ack_within=36 * H, removal_within=36 * H),
}
SILENT = ("streamly", "silent-platform-long-name")


@dataclass(frozen=True, slots=True, kw_only=True)
class Seeded:
    platform: str
    state: RequestState
    delivered_ago: timedelta
    acked_after: timedelta | None = None
    removed_after: timedelta | None = None
    verified_after: timedelta | None = None
    false_claims: int = 0


def _seeds() -> list[Seeded]:
    seeds: list[Seeded] = []
    for i in range(20):  # removes within 2 to 21 hours, each checked gone an hour later
        seeds.append(
            Seeded(
                platform="telegram",
                state=RequestState.REMOVED,
                delivered_ago=timedelta(days=10, hours=i),
                acked_after=H,
                removed_after=(2 + i) * H,
                verified_after=(3 + i) * H,
            )
        )
    for i in range(10):  # eight within 24 h, two at 30 h; one claim contradicted by a check
        removed = (30 if i >= 8 else 3 + i) * H
        seeds.append(
            Seeded(
                platform="videohost",
                state=RequestState.REMOVED,
                delivered_ago=timedelta(days=8, hours=i),
                acked_after=H,
                removed_after=removed,
                verified_after=None if i == 0 else removed + H,
                false_claims=int(i == 0),
            )
        )
    for i in range(6):  # four removed, two acknowledged and left open past 24 h
        done = i < 4
        seeds.append(
            Seeded(
                platform="clip<share>",
                state=RequestState.REMOVED if done else RequestState.ACKNOWLEDGED,
                delivered_ago=timedelta(days=5, hours=i),
                acked_after=2 * H,
                removed_after=(5 + i) * H if done else None,
                verified_after=(6 + i) * H if done else None,
            )
        )
    for i in range(16):  # silent; half of it quietly taken down, as the checks saw
        seeds.append(
            Seeded(
                platform="streamly",
                state=RequestState.DELIVERED,
                delivered_ago=timedelta(days=12, hours=i),
                verified_after=24 * H if i % 2 else None,
            )
        )
    seeds += [
        Seeded(platform=SILENT[1], state=RequestState.DELIVERED, delivered_ago=timedelta(days=4, hours=i))
        for i in range(5)
    ]
    seeds += [Seeded(platform="fresh", state=RequestState.DELIVERED, delivered_ago=H) for _ in range(3)]
    return seeds


async def _seed(store: SqlStore, seeds: Sequence[Seeded]) -> None:
    rows: list[dict[str, Any]] = []
    for index, s in enumerate(seeds):
        delivered = NOW - s.delivered_ago

        def after(offset: timedelta | None, start: datetime = delivered) -> datetime | None:
            return None if offset is None else start + offset

        rows.append(
            {
                "request_id": f"r{index:04d}",
                "platform": s.platform,
                "state": s.state.value,
                "priority": "normal",
                "content_hash": f"{index:064x}",
                "body": "{}",
                "source": "test",
                "ingested_at": delivered - timedelta(minutes=10),
                "notice_id": f"TD-{index:04d}",
                "delivered_at": delivered,
                "acknowledged_at": after(s.acked_after),
                "resolved_at": after(s.removed_after),
                "verified_removed_at": after(s.verified_after),
                "false_claims": s.false_claims,
            }
        )
    async with store.engine.begin() as conn:
        await conn.execute(requests.insert(), rows)


async def _report(tmp_path: Path) -> dict[str, Any]:
    store = await sqlite_store(tmp_path)
    try:
        await _seed(store, _seeds())
        return await build_report(store, BOUNDS, now=NOW, since=SINCE)
    finally:
        await store.close()


async def test_every_breach_is_on_screen_at_1280_and_the_page_prints_on_a4_without_cut_columns(
    tmp_path: Path,
) -> None:
    report = await _report(tmp_path)
    figures = {f["platform"]: f for f in report["platforms"]}
    for name in SILENT:  # the seeding is what the test means it to be
        assert figures[name]["acknowledged"] == 0
        assert figures[name]["removal_breaches"] == figures[name]["requests"] > 0
    assert figures["streamly"]["verified_removed"] == 8
    assert figures["videohost"]["removal_breaches"] == 2
    assert figures["clip<share>"]["removal_breaches"] == 2
    assert figures["fresh"]["removal_breaches"] == 0
    page_path = tmp_path / "report.html"
    page_path.write_text(render_html(report, authority=AUTHORITY, timezone="Asia/Seoul"), encoding="utf-8")

    async with report_page(page_path, tmp_path / "profile", width=1280, height=800) as page:
        screenshot = tmp_path / "report.png"
        await page.screenshot(path=str(screenshot))
        measured = await page.evaluate(MEASURE)
        heading = await page.inner_text("header")

        await page.emulate_media(media="print")
        await page.set_viewport_size({"width": A4_CONTENT_PX, "height": 1123})
        printed = await page.evaluate(MEASURE)
        pdf = await page.pdf(format="A4")

    assert png_size(screenshot) == (1280, 800)
    assert screenshot.stat().st_size > 20_000, "the screenshot is nearly blank"
    assert AUTHORITY in heading
    assert "1 Sep 2024 00:00 – 1 Oct 2024 00:00 KST (Asia/Seoul)" in heading  # the authority's zone

    # One row per platform; those with breaches first, in red, and all of them on screen.
    rows = measured["rows"]
    assert sorted(r["group"] for r in rows) == sorted(BOUNDS)
    attention = [r["attention"] for r in rows]
    assert attention == sorted(attention, reverse=True), "a platform with breaches comes after a clean one"
    assert {r["group"] for r in rows if r["attention"]} == {"videohost", "clip<share>", *SILENT}
    for row in rows:
        f = figures[row["group"]]
        total = f["ack_breaches"] + f["removal_breaches"] + f["undelivered_breaches"]
        assert row["breaches"] == total, row
        assert (row["color"] == RED) == (total > 0), row
        for part in (row["cell"], row["name"]):
            assert part["left"] >= 0 and part["top"] >= 0, row
            assert part["right"] <= 1280 and part["bottom"] <= 800, (
                f"{row['group']}'s breaches are off screen"
            )
    check_charts(measured, figures)
    removal = {g["group"]: g for g in measured["charts"]["removal"]["groups"]}
    for name in SILENT:
        n = figures[name]["requests"]
        assert f"{n} of {n} breached, no answer" in removal[name]["text"]
    assert "none removed yet, none past its bound" in removal["fresh"]["text"]

    # Printed on A4: nothing wider than the page's content, no cell overflowing its column.
    assert printed["page"]["scrollWidth"] <= A4_CONTENT_PX
    assert len(printed["tables"]) == 2
    for table in printed["tables"]:
        assert table["scrollWidth"] <= table["clientWidth"], table
        assert table["box"]["right"] <= A4_CONTENT_PX, table
        assert table["overflowing"] == [], f"cut in print: {table['overflowing']}"
    for wrapper in printed["wrappers"]:
        assert wrapper["scrollWidth"] <= wrapper["clientWidth"], wrapper
    for chart in printed["charts"].values():
        assert chart["box"]["right"] <= A4_CONTENT_PX, chart["box"]
    assert pdf.startswith(b"%PDF-")
    assert re.search(rb"/MediaBox \[0 0 59[45](\.\d+)? 84[12](\.\d+)?\]", pdf), "not an A4 page"
