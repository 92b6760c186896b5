"""The compliance report written out (SPEC §8): JSON and one CSV row per group here, with the keys as
SPEC fixes them; the rich table for people (:mod:`notifier.services.report_table`) and the page to
publish (:mod:`notifier.services.report_html`) beside them."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from typing import Any

from notifier.domain.report import PERCENTILES, REMOVED_WITHIN, REPORT_KEYS
from notifier.domain.report_acks import ACK_SOURCE_KEYS
from notifier.domain.verification import VERIFY_REPORT_KEYS
from notifier.services.report_html import render_html
from notifier.services.report_table import render_table, table_text

__all__ = [
    "FORMATS",
    "csv_header",
    "groups_of",
    "render",
    "render_csv",
    "render_html",
    "render_json",
    "render_table",
]

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
    return [*REPORT_KEYS, *VERIFY_REPORT_KEYS, *ACK_SOURCE_KEYS]


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


def render(
    report: Mapping[str, Any],
    fmt: str,
    *,
    wide: bool = False,
    authority: str | None = None,
    timezone: str = "UTC",
) -> str:
    """The report as text in ``fmt``; ``table`` as rich draws it at 100 columns, without colour
    (for a file; ``wide``: every figure, as wide as they need); ``authority`` and ``timezone``
    head the table and the page."""
    if fmt == "json":
        return render_json(report)
    if fmt == "csv":
        return render_csv(report)
    if fmt == "html":
        return render_html(report, authority=authority, timezone=timezone)
    if fmt == "table":
        return table_text(report, wide=wide, timezone=timezone)
    raise ValueError(f"unknown format {fmt!r} (use {', '.join(FORMATS)})")
