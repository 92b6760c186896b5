"""Headless Chromium for the tests that check what a browser draws of the HTML report.

A copy of the report gets :data:`PROBE`, a script that, once the page has loaded, measures every
platform's chart group (``getBBox``, computed styles, hit testing) and writes a JSON verdict into
the DOM, which ``--dump-dom`` prints and :data:`VERDICT` finds. Chromium missing skips the test on
a developer's machine; under ``CI=true`` that is a failure (``.ci/run`` installs it).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

HOUR = 3600
CHROMIUM_TIMEOUT_S = 60
WINDOW = "1200,900"
BOUND_STROKE = "rgb(180, 35, 24)"  # #b42318, the .bound colour of the report's CSS

# Runs after load in a copy of the report; appends <pre id="verdict">{json}</pre> to the body.
PROBE = """
<script>
window.addEventListener("load", () => {
  const out = {platforms: []};
  try {
    const svg = document.querySelector("figure svg");
    const frame = svg.getBoundingClientRect();
    out.svg = {width: frame.width, height: frame.height, top: frame.top, left: frame.left};
    const shown = (el) => el.checkVisibility({checkOpacity: true, checkVisibilityCSS: true});
    for (const g of document.querySelectorAll("svg g.platform")) {
      const box = g.getBBox();
      const client = g.getBoundingClientRect();
      const visible = (el) => {
        const r = el.getBoundingClientRect();
        const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
        return hit === el || el.contains(hit);
      };
      const rects = [...g.querySelectorAll("rect")].map((rect) => {
        const b = rect.getBBox();
        const style = getComputedStyle(rect);
        return {cls: rect.getAttribute("class"), x: b.x, width: b.width, height: b.height,
                fill: style.fill, shown: shown(rect), hit: visible(rect)};
      });
      const line = g.querySelector("line.bound");
      let bound = null;
      if (line) {
        const b = line.getBBox();
        const style = getComputedStyle(line);
        const r = line.getBoundingClientRect();  // the first dash runs from the line's top
        const hit = document.elementFromPoint(r.left, r.top + 1);
        bound = {x: b.x, height: b.height, stroke: style.stroke, width: parseFloat(style.strokeWidth),
                 shown: shown(line), hit: hit === line};
      }
      out.platforms.push({
        platform: g.dataset.platform,
        box: {width: box.width, height: box.height},
        client: {width: client.width, height: client.height},
        shown: shown(g),
        rects: rects,
        bound: bound,
        text: [...g.querySelectorAll("text")].map((t) => t.textContent),
      });
    }
  } catch (error) {
    out.error = String(error);
  }
  const pre = document.createElement("pre");
  pre.id = "verdict";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""
VERDICT = re.compile(r'<pre id="verdict">(.*?)</pre>', re.DOTALL)


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


def run_chromium(binary: str, profile: Path, *args: str) -> str:
    """Run headless chromium in a session of its own; kill the whole group on timeout or after."""
    command = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--window-size={WINDOW}",
        *args,
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "HOME": str(profile)},
    )
    try:
        stdout, stderr = process.communicate(timeout=CHROMIUM_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"chromium did not finish within {CHROMIUM_TIMEOUT_S} s: {command}")
    finally:
        # Helpers (zygote, utility processes) share the group; none may outlive the test.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, f"chromium exited with {process.returncode}:\n{stderr[-3000:]}"
    return stdout


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def check_platform(part: dict[str, Any], removal: dict[str, int] | None, bound_s: int) -> float | None:
    """Assert one platform's drawing; return its pixels per second (None without bars)."""
    name = part["platform"]
    assert part["box"]["width"] > 0, name
    assert part["box"]["height"] > 0, name
    assert part["shown"], f"{name}: the chart group is not rendered"
    assert part["client"]["width"] > 0, name
    assert part["client"]["height"] > 0, name
    bound = part["bound"]
    assert bound is not None, f"{name}: no bound line"
    assert bound["height"] > 0, name
    assert bound["shown"], f"{name}: the bound line is not rendered"
    assert bound["hit"], f"{name}: the bound line is not the topmost element at its top"
    assert bound["stroke"] == BOUND_STROKE, name
    assert bound["width"] > 0, name
    assert f"bound {bound_s / HOUR:g} h" in part["text"], name
    if removal is None:
        assert part["rects"] == [], name
        assert "no removals" in part["text"], name
        return None
    rects = part["rects"]
    assert [r["cls"] for r in rects] == ["p50", "p90", "max"], name
    for rect in rects:
        assert rect["width"] > 0, (name, rect)
        assert rect["height"] > 0, (name, rect)
        assert rect["shown"], (name, rect)
        assert rect["fill"] not in {"none", "rgba(0, 0, 0, 0)"}, (name, rect)
        assert rect["hit"], f"{name} {rect['cls']}: the bar is not the topmost element at its centre"
    # Bars are drawn to the values' scale, and the bound line at the bound's place on it.
    scale: float = rects[-1]["width"] / removal["max"]
    for rect in rects:
        assert abs(rect["width"] - removal[rect["cls"]] * scale) <= 0.2, (name, rect)
    origin = rects[0]["x"]
    assert abs((bound["x"] - origin) - bound_s * scale) <= 0.2, (name, bound)
    return scale
