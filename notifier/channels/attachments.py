"""The machine-readable attachments of a notice: a CSV of its URLs and hashes, and XARF v4-style
JSON reports, one per URL.

CSV cells that a spreadsheet would run as a formula are defused; the ids in the JSON are stable, so
a re-send produces the same reports.
"""

from __future__ import annotations

import csv as csv_module
import io
import json
from typing import Any, Final

from notifier.channels.formatting import one_line, paragraph
from notifier.domain.models import TakedownRequest, format_timestamp
from notifier.domain.notices import NoticeContent

CSV_HEADER: Final = ("request_id", "url", "category", "sha256", "pdq")
XARF_VERSION: Final = "4.0.0"
# Our categories as XARF v4 ``content`` types. XARF has ``csam``; the other two are the names the
# trust-and-safety industry uses for them. An unmapped category travels under its own id.
_XARF_TYPES: Final = {
    "child_sexual_abuse_material": "csam",
    "deepfake_sexual_abuse": "deepfake",
    "non_consensual_intimate_imagery": "ncii",
}
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def notice_csv(content: NoticeContent) -> bytes:
    """One row per URL: ``request_id,url,category,sha256,pdq`` (several hashes joined by ``;``)."""
    buffer = io.StringIO()
    writer = csv_module.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for request in content.requests:
        sha256 = ";".join(e.sha256 for e in request.evidence if e.sha256)
        pdq = ";".join(e.pdq for e in request.evidence if e.pdq)
        for url in request.urls:
            writer.writerow([_csv_cell(v) for v in (request.request_id, url, request.category, sha256, pdq)])
    return buffer.getvalue().encode("utf-8")


def notice_xarf_json(content: NoticeContent) -> bytes:
    """A JSON array with one XARF v4-style report per URL.

    ``category`` is the XARF class (``content``), ``type`` the XARF-style type of the request's
    category (``deepfake``, ``ncii``, ``csam``, else the category id itself), ``takedown_category``
    the category id as the regulator names it. ``report_id`` is ``notice_id:request_id:index``
    with the 0-based position of the URL in its request, so a re-send produces the same ids.
    """
    reporter = {
        "org": one_line(content.authority.name),
        "contact": content.authority.email,
        "type": "manual",
    }
    timestamp = format_timestamp(content.created_at)
    reports: list[dict[str, Any]] = []
    for request in content.requests:
        shared = _xarf_request_fields(content, request)
        for index, url in enumerate(request.urls):
            reports.append(
                {
                    "xarf_version": XARF_VERSION,
                    "report_id": f"{content.notice_id}:{request.request_id}:{index}",
                    "timestamp": timestamp,
                    "reporter": reporter,
                    "sender": reporter,
                    "source_identifier": url,
                    "url": url,
                    **shared,
                }
            )
    # Compact, one report per line: no indentation keeps json on its C encoder and the
    # attachment a third smaller, while a person can still read it report by report.
    lines = ",\n".join(json.dumps(report, ensure_ascii=False) for report in reports)
    return f"[\n{lines}\n]\n".encode()


def _xarf_request_fields(content: NoticeContent, request: TakedownRequest) -> dict[str, Any]:
    return {
        "category": "content",
        "type": _XARF_TYPES.get(request.category, request.category),
        "takedown_category": request.category,
        "category_label": one_line(content.category_labels.get(request.category) or request.category),
        "evidence": [e.as_dict() for e in request.evidence],
        "request_id": request.request_id,
        "notice_id": content.notice_id,
        "legal_basis": request.legal_basis,
        "description": paragraph(request.explanation) if request.explanation else None,
        "case_ref": request.case_ref,
        "territorial_scope": list(request.territorial_scope),
        "decided_at": format_timestamp(request.decided_at) if request.decided_at else None,
        "ack_by": format_timestamp(content.ack_by),
        "remove_by": format_timestamp(content.remove_by),
    }


def _csv_cell(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value
