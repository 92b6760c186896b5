"""Headless Chromium (Debian's ``chromium``, driven by Playwright) for the tests that check what a
browser draws of the HTML report.

:func:`report_page` opens a report file in a fresh profile at a given viewport; :data:`MEASURE`,
run in the page, returns what Chromium laid out: the main table's breach cells, each chart's groups
(bars, the bound line, their texts), and every table's widths and the cells whose content overflows.
:func:`check_charts` asserts the charts against the report's figures. Chromium missing skips the
test on a developer's machine; under ``CI=true`` that is a failure (``.ci/run`` installs it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import struct
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, async_playwright

HOUR = 3600
RED = "rgb(180, 35, 24)"  # #b42318, the report's colour of a breach and of the bound
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# A4 (210 mm) less the report's @page margins (2 x 12 mm), in CSS pixels (96 per inch).
A4_CONTENT_PX = int((210 - 2 * 12) / 25.4 * 96)

MEASURE = """
() => {
  const box = (el) => {
    const r = el.getBoundingClientRect();
    return {left: r.left, top: r.top, right: r.right, bottom: r.bottom, width: r.width, height: r.height};
  };
  const num = (value) => (value === undefined ? null : Number(value));
  const out = {rows: [], charts: {}, tables: [], wrappers: [],
               page: {scrollWidth: document.documentElement.scrollWidth,
                      clientWidth: document.documentElement.clientWidth}};
  for (const tr of document.querySelectorAll("table.main tbody tr")) {
    const cell = tr.querySelector("td.breaches");
    out.rows.push({group: tr.dataset.group, attention: tr.classList.contains("attention"),
                   breaches: num(cell.dataset.breaches), color: getComputedStyle(cell).color,
                   cell: box(cell), name: box(tr.querySelector("td"))});
  }
  for (const svg of document.querySelectorAll("svg.chart")) {
    const kind = svg.classList.contains("removal") ? "removal" : "buckets";
    const groups = [];
    for (const g of svg.querySelectorAll("g.group")) {
      const bars = [...g.querySelectorAll("rect")].map((r) => {
        const b = r.getBBox();
        return {cls: r.getAttribute("class"), x: b.x, width: b.width, height: b.height,
                fill: getComputedStyle(r).fill, p90: num(r.dataset.p90), count: num(r.dataset.count),
                breached: num(r.dataset.breached), shown: r.checkVisibility()};
      });
      const line = g.querySelector("line.bound");
      const bound = line ? {x: line.getBBox().x, stroke: getComputedStyle(line).stroke,
                            shown: line.checkVisibility()} : null;
      groups.push({group: g.dataset.group, bars, bound, box: box(g),
                   text: [...g.querySelectorAll("text")].map((t) => t.textContent)});
    }
    out.charts[kind] = {box: box(svg), groups};
  }
  for (const t of document.querySelectorAll("table")) {
    const overflowing = [...t.querySelectorAll("th, td")]
      .filter((c) => c.scrollWidth > c.clientWidth + 1)
      .map((c) => c.textContent);
    out.tables.push({cls: t.className, scrollWidth: t.scrollWidth, clientWidth: t.clientWidth,
                     box: box(t), overflowing});
  }
  for (const w of document.querySelectorAll("div.table")) {
    out.wrappers.push({scrollWidth: w.scrollWidth, clientWidth: w.clientWidth});
  }
  return out;
}
"""


def find_chromium() -> str:
    binary = shutil.which("chromium")
    if binary is None and os.access("/usr/bin/chromium", os.X_OK):
        binary = "/usr/bin/chromium"
    if binary is None:
        message = "chromium is not installed (apt-get install -y chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI=true: integration tests may not skip)")
        pytest.skip(message)
    return binary


def leftovers(marker: str) -> list[int]:
    """Pids of live processes whose command line mentions ``marker`` (this run's profile dir)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            status = (entry / "status").read_text()
        except OSError:
            continue
        if marker.encode() in cmdline and "State:\tZ" not in status:
            pids.append(int(entry.name))
    return pids


@contextlib.asynccontextmanager
async def report_page(
    page_path: Path, profile: Path, *, width: int = 1280, height: int = 800
) -> AsyncIterator[Page]:
    """The report at ``page_path`` in headless Chromium, at ``width`` x ``height``; no browser
    process outlives it."""
    binary = find_chromium()
    profile.mkdir(exist_ok=True)
    try:
        async with async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                str(profile),
                executable_path=binary,
                headless=True,
                args=FLAGS,
                viewport={"width": width, "height": height},
                env={**os.environ, "HOME": str(profile)},
            )
            try:
                page = await context.new_page()
                await page.goto(page_path.as_uri())
                yield page
            finally:
                await context.close()
    finally:
        left = leftovers(str(profile))
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert left == [], f"chromium processes outlived the test: {left}"


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _check_bars(name: str, bars: list[dict[str, Any]], figures: Mapping[str, Any]) -> float | None:
    """A group's bars of the removal chart; its pixels per second (None without a claimed bar)."""
    scale = None
    claimed = [b for b in bars if b["cls"] == "bar claimed"]
    if figures["time_to_removal_s"] is not None:
        [bar] = claimed
        assert bar["p90"] == figures["time_to_removal_s"]["p90"], name
        scale = bar["width"] / bar["p90"]
    elif figures["removal_breaches"]:
        # Nothing removed, breaches: drawn red across the chart, saying so; never a neutral blank.
        [bar] = [b for b in bars if b["cls"] == "bar unanswered"]
        assert bar["fill"] == RED, name
        assert bar["breached"] == figures["removal_breaches"], name
        assert bar["width"] > 100, name
    else:
        assert claimed == [], name
    verified = [b for b in bars if b["cls"] == "bar verified"]
    distribution = figures.get("time_to_verified_removal_s")
    assert len(verified) == (distribution is not None), name
    for bar in [*claimed, *verified]:
        assert bar["shown"] and bar["width"] > 0 and bar["height"] > 0, (name, bar)
        assert bar["fill"] not in {"none", "rgba(0, 0, 0, 0)", RED}, (name, bar)
    return scale


def check_charts(measured: Mapping[str, Any], figures: Mapping[str, Mapping[str, Any]]) -> None:
    """The removal chart and the buckets as Chromium drew them, against the report's figures."""
    removal = {g["group"]: g for g in measured["charts"]["removal"]["groups"]}
    assert set(removal) == set(figures)
    scales: list[tuple[str, float, int]] = []
    for name, g in removal.items():
        f = figures[name]
        bound = g["bound"]
        assert bound is not None and bound["shown"] and bound["stroke"] == RED, name
        scale = _check_bars(name, g["bars"], f)
        if scale is not None:
            origin = next(b["x"] for b in g["bars"] if b["cls"] == "bar claimed")
            scales.append((name, scale, int(bound["x"] - origin)))
            for bar in g["bars"]:
                if bar["cls"] == "bar verified":
                    assert abs(bar["width"] - max(1.5, bar["p90"] * scale)) <= 0.2, (name, bar)
            assert abs((bound["x"] - origin) - f["removal_within"] * scale) <= 0.2, name
    # Every group is drawn to one scale.
    for name, scale, _ in scales:
        assert abs(scale - scales[0][1]) <= 1e-3 * scales[0][1], f"{name} is drawn to another scale"
    for g in measured["charts"]["buckets"]["groups"]:
        counted = sum(b["count"] for b in g["bars"])
        assert counted == figures[g["group"]]["requests"], g["group"]
