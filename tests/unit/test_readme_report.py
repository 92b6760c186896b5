"""The README shows the report as notifier prints it: the demo's table is the 100-column table of
the demo's ``report.json`` (kept as ``docs/demo-report.json``), read in the shipped authority's time
zone, and the HTML report's screenshot is there, a page 1280 pixels wide.

When the demo's figures change: run ``notifier demo``, copy ``var/demo/report.json`` to
``docs/demo-report.json`` and paste :func:`notifier.services.report_table.table_text` of it into
the README."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from notifier.services.report_table import table_text
from tests.chromium import png_size

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")


def _section(heading: str) -> str:
    start = README.index(f"\n{heading}\n")
    end = README.find("\n## ", start + len(heading) + 2)
    return README[start : end if end >= 0 else len(README)]


def test_the_readme_demo_table_is_the_table_of_the_demo_report() -> None:
    config = tomllib.loads((REPO / "config" / "notifier.toml").read_text(encoding="utf-8"))
    report = json.loads((REPO / "docs" / "demo-report.json").read_text(encoding="utf-8"))
    blocks = re.findall(r"^```\n(.*?)^```$", _section("## What the demo shows"), re.MULTILINE | re.DOTALL)
    assert blocks, "the demo section shows no table"
    assert blocks[0] == table_text(report, timezone=config["authority"]["timezone"])
    assert all(len(line) <= 100 for line in blocks[0].splitlines())


def test_the_readme_shows_the_html_report_screenshot() -> None:
    images = re.findall(r"!\[[^\]]+\]\((docs/report\.png)\)", _section("## What the demo shows"))
    assert images == ["docs/report.png"]
    width, height = png_size(REPO / "docs" / "report.png")
    assert width == 1280 and height >= 800
