"""The HTML compliance report as a browser draws it: headless Chromium (Debian's ``chromium``).

The unit tests read the markup; this one checks what Chromium actually lays out and paints. A copy
of the report gets a small script that, once the page has loaded, measures every platform's chart
group (``getBBox``, computed styles, hit testing) and writes a JSON verdict into the DOM, which
``--dump-dom`` prints. A screenshot of the unmodified report is taken too.

Skips when chromium is not installed on a developer's machine; under ``CI=true`` that is a failure
(``.ci/run`` installs chromium).
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from notifier.domain.models import RequestState, format_timestamp
from notifier.domain.report import Bounds, ReportRow, platform_reports
from notifier.services.report import render_html
from tests.chromium import PROBE, VERDICT, check_platform, find_chromium, leftovers, png_size, run_chromium

NOW = datetime(2024, 9, 10, 12, 0, tzinfo=UTC)
SINCE = NOW - timedelta(days=30)
HOUR = 3600
BOUNDS = {
    "telegram": Bounds(ack_within=timedelta(hours=36), removal_within=timedelta(hours=36)),
    "clip<share>": Bounds(ack_within=timedelta(hours=12), removal_within=timedelta(hours=24)),
    "quiet": Bounds(ack_within=timedelta(hours=36), removal_within=timedelta(hours=36)),
}
# p50 / p90 / max of time to removal in seconds; ``quiet`` removed nothing (a null distribution).
EXPECTED_REMOVAL = {
    "telegram": {"p50": 2 * HOUR, "p90": 40 * HOUR, "max": 40 * HOUR},
    "clip<share>": {"p50": 10 * HOUR, "p90": 10 * HOUR, "max": 10 * HOUR},
    "quiet": None,
}


def _row(platform: str, state: RequestState, hours: float, notice: str) -> ReportRow:
    delivered = NOW - timedelta(days=3)
    return ReportRow(
        platform=platform,
        state=state,
        ingested_at=delivered - timedelta(minutes=5),
        delivered_at=delivered,
        acknowledged_at=None if state is RequestState.DELIVERED else delivered + timedelta(hours=hours / 2),
        resolved_at=delivered + timedelta(hours=hours) if state is RequestState.REMOVED else None,
        notice_id=notice,
    )


def _document() -> dict[str, Any]:
    rows = [
        _row("telegram", RequestState.REMOVED, 2, "TD-t-1"),
        _row("telegram", RequestState.REMOVED, 40, "TD-t-2"),
        _row("clip<share>", RequestState.REMOVED, 10, "TD-c-1"),
        _row("clip<share>", RequestState.ACKNOWLEDGED, 1, "TD-c-2"),
        _row("quiet", RequestState.DELIVERED, 0, "TD-q-1"),
    ]
    figures = platform_reports(rows, bounds=BOUNDS, now=NOW, since=SINCE)
    return {
        "generated_at": format_timestamp(NOW),
        "since": format_timestamp(SINCE),
        "until": None,
        "platforms": figures,
    }


def test_chromium_renders_the_chart_of_every_platform(tmp_path: Path) -> None:
    binary = find_chromium()
    document = _document()
    assert [f["time_to_removal_s"] for f in document["platforms"]] == list(EXPECTED_REMOVAL.values())
    page = render_html(document)
    report = tmp_path / "report.html"
    report.write_text(page, encoding="utf-8")
    probed = tmp_path / "report-probed.html"
    assert page.count("</body>") == 1
    probed.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    profile = tmp_path / "chromium-profile"
    profile.mkdir()

    try:
        dom = run_chromium(binary, profile, "--virtual-time-budget=5000", "--dump-dom", probed.as_uri())
        screenshot = tmp_path / "report.png"
        run_chromium(binary, profile, f"--screenshot={screenshot}", report.as_uri())
    finally:
        left = leftovers(str(profile))
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert left == [], f"chromium processes outlived the test: {left}"

    found = VERDICT.search(dom)
    assert found is not None, f"no verdict in the dumped DOM:\n{dom[-2000:]}"
    verdict = json.loads(html.unescape(found.group(1)))
    assert "error" not in verdict, verdict["error"]
    assert verdict["svg"]["width"] > 0
    assert verdict["svg"]["height"] > 0
    parts = verdict["platforms"]
    assert [p["platform"] for p in parts] == list(BOUNDS)

    scales = []
    for part in parts:
        name = part["platform"]
        scale = check_platform(part, EXPECTED_REMOVAL[name], int(BOUNDS[name].removal_within.total_seconds()))
        if scale is not None:
            scales.append(scale)
    assert len(scales) == 2
    assert abs(scales[0] - scales[1]) < 1e-3 * scales[0], "platforms are drawn to different scales"

    assert screenshot.exists(), "chromium wrote no screenshot"
    assert png_size(screenshot) == (1200, 900)
    assert screenshot.stat().st_size > 20_000, "the screenshot is nearly blank"
