"""The report's figures in words for people: durations as days, hours and minutes, shares as
percentages, the headings in English and Korean, and the moments of the window in the authority's
time zone. Presentation only; the figures themselves are :mod:`notifier.domain.report`'s."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

MINUTE, HOUR, DAY = 60, 3600, 86400
NONE = "–"

# Heading of each column: (English, Korean). Plain words, no keys.
HEADINGS: dict[str, tuple[str, str]] = {
    "platform": ("Platform", "플랫폼"),
    "profile": ("Deadline profile", "기한 유형"),
    "requests": ("Requests", "요청"),
    "breaches": ("Breaches", "기한 위반"),
    "ack_breaches": ("Answered late or not at all", "접수 확인 지연·미회신"),
    "removal_breaches": ("Removed late or not at all", "삭제 지연·미삭제"),
    "undelivered_breaches": ("Filed late by us", "제출 지연(당 기관)"),
    "open": ("Open", "미처리"),
    "oldest_open": ("Oldest open", "최장 미처리"),
    "delivered": ("Notices delivered", "전달된 통지"),
    "acknowledged": ("Answered", "접수 확인"),
    "acked_in_bound": ("Answered within bound", "기한 내 접수 확인"),
    "removed": ("Removed (platform's word)", "삭제(플랫폼 회신)"),
    "verified_removed": ("Removal verified by us", "삭제 확인(직접 점검)"),
    "within_bound": ("Removed within bound", "기한 내 삭제"),
    "removed_within": ("Removed within 1 h / 24 h / 48 h / 7 d", "1시간 / 24시간 / 48시간 / 7일 내 삭제"),
    "bound": ("Bounds: answer / remove", "기한: 접수 확인 / 삭제"),
    "time_to_ack": ("Time to answer: median / 90 %", "접수 확인 소요: 중앙값 / 90 %"),
    "time_to_removal": ("Time to removal, 90 %", "삭제 소요 시간(90 %)"),
    "time_to_verified": ("Time to verified removal: median / 90 %", "삭제 확인 소요: 중앙값 / 90 %"),
    "time_to_delivery": ("Time to deliver: median / 90 %", "통지 전달 소요: 중앙값 / 90 %"),
    "rejected": ("Rejected by the platform", "삭제 거부"),
    "false_claims": ("Claimed removed, found online", "허위 삭제 회신"),
    "reappeared": ("Back online after removal", "재게시"),
    "inconclusive": ("Checks inconclusive", "점검 불확정"),
    "failed": ("Not deliverable", "전달 실패"),
    "dead_letters": ("Rejected at intake", "접수 거부"),
    "withdrawn": ("Withdrawn by us", "요청 철회"),
    "paused_s": ("Paused for clarification", "소명 요청으로 중지"),
    "undelivered": ("Not yet delivered", "미전달"),
}


def duration(seconds: int | None) -> str:
    """``1 d 12 h``, ``2 h 05 min``, ``12 min``, ``45 s``; a dash for none.

    Truncated, never rounded up, so a time just inside a bound never reads as the bound itself.
    """
    if seconds is None:
        return NONE
    if seconds >= DAY:
        days, hours = divmod(seconds // HOUR, 24)
        return f"{days} d {hours} h" if hours else f"{days} d"
    if seconds >= HOUR:
        hours, minutes = divmod(seconds // MINUTE, 60)
        return f"{hours} h {minutes:02d} min" if minutes else f"{hours} h"
    if seconds >= MINUTE:
        return f"{seconds // MINUTE} min"
    return f"{seconds} s"


def bound(seconds: int) -> str:
    """A bound, exact: ``36 h``, ``7 d``, ``1 h``, ``90 min``."""
    if seconds % DAY == 0 and seconds >= 2 * DAY:
        return f"{seconds // DAY} d"
    if seconds % HOUR == 0:
        return f"{seconds // HOUR} h"
    if seconds % MINUTE == 0:
        return f"{seconds // MINUTE} min"
    return f"{seconds} s"


def share(value: float | None) -> str:
    """``100 %``, ``33 %``, ``99.5 %`` (one decimal only where whole numbers would hide a miss)."""
    if value is None:
        return NONE
    percent = value * 100
    if 99 < percent < 100 or 0 < percent < 1:
        return f"{percent:.1f} %"
    return f"{percent:.0f} %"


def spread(distribution: Mapping[str, int] | None, *points: str) -> str:
    """``2 h 18 min / 14 h 54 min`` for the chosen points of a distribution; a dash for none."""
    if distribution is None:
        return NONE
    return " / ".join(duration(distribution[p]) for p in points)


def delivered_requests(figures: Mapping[str, Any]) -> int:
    """Requests that reached the platform: neither waiting on our side nor undeliverable."""
    return max(0, int(figures["requests"]) - int(figures["undelivered"]) - int(figures["failed"]))


def acked_in_bound(figures: Mapping[str, Any]) -> float | None:
    """Share of the delivered requests without an acknowledgement breach: answered within the
    bound, or still within it. ``None`` when nothing was delivered."""
    delivered = delivered_requests(figures)
    if delivered == 0:
        return None
    return max(0, delivered - int(figures["ack_breaches"])) / delivered


def breaches(figures: Mapping[str, Any]) -> int:
    return (
        int(figures["ack_breaches"]) + int(figures["removal_breaches"]) + int(figures["undelivered_breaches"])
    )


def open_past_bound(figures: Mapping[str, Any]) -> bool:
    """The oldest open request has waited longer than its removal bound."""
    oldest = figures.get("oldest_open_s")
    return oldest is not None and oldest > figures["removal_within"]


def silent(figures: Mapping[str, Any]) -> bool:
    """Delivered requests, not one answered, and breaches: a platform that does not answer."""
    return (
        delivered_requests(figures) > 0 and figures["acknowledged"] == 0 and figures["removal_breaches"] > 0
    )


def needs_attention(figures: Mapping[str, Any]) -> bool:
    return breaches(figures) > 0 or open_past_bound(figures)


def moment(value: str, zone: ZoneInfo) -> str:
    """An ISO 8601 UTC time of the document as ``1 Sep 2024 00:00`` in ``zone``."""
    local = datetime.fromisoformat(value).astimezone(zone)
    return f"{local.day} {local:%b %Y %H:%M}"


def period(report: Mapping[str, Any], zone: ZoneInfo) -> str:
    """The window in the authority's time zone, e.g. ``1 Sep 2024 00:00 - 1 Oct 2024 00:00 KST``
    (with an en dash)."""
    last = report["until"] or report["generated_at"]
    end = f"{moment(last, zone)} {datetime.fromisoformat(last).astimezone(zone).tzname()}"
    if report["since"] is None:
        return f"up to {end}"
    return f"{moment(report['since'], zone)} – {end}"


def group_name(figures: Mapping[str, Any], by: str) -> str:
    """A group's name as people read it: a platform's id, or a profile's label."""
    if by == "profile":
        return str(figures.get("label") or figures.get("profile") or "platform bounds")
    return str(figures["platform"])
