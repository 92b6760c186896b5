"""Verification of removals (SPEC §13): given what one fetch of a URL observed, was the content gone?

Pure: the prober fetches, these rules decide. An outcome is ``removed``, ``live`` or
``inconclusive`` with a ``reason`` (why nothing could be concluded) and a ``rule`` (what decided).
What a check keeps is :class:`UrlCheck`: the time, the URL, the outcome, the status, the final URL
after redirects, how many bytes were read and their SHA-256. Never the body: the bytes a marker is
searched in are handed to :func:`decide` and dropped by the caller.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from notifier.domain.models import RequestState, format_timestamp

DEFAULT_REMOVED_STATUS = (404, 410, 451)


class CheckOutcome(enum.StrEnum):
    REMOVED = "removed"
    LIVE = "live"
    INCONCLUSIVE = "inconclusive"


class InconclusiveReason(enum.StrEnum):
    """Why a check concluded nothing. Statuses outside the known ones read ``status_<code>``."""

    TIMEOUT = "timeout"
    TLS = "tls"
    DNS = "dns"
    CONNECT = "connect"
    REFUSED_PRIVATE_ADDRESS = "refused_private_address"
    REFUSED_SCHEME = "refused_scheme"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    LOGIN_WALL = "login_wall"
    PROTOCOL = "protocol"


@dataclass(frozen=True, slots=True)
class VerifyRules:
    """One platform's rules (``[platforms.<id>.verify]``): the statuses that mean removed, the
    patterns in the bytes of a 2xx answer that mean removed, and the final URLs that mean removed."""

    removed_status: frozenset[int] = frozenset(DEFAULT_REMOVED_STATUS)
    removed_markers: tuple[re.Pattern[bytes], ...] = ()
    removed_redirect: tuple[re.Pattern[str], ...] = ()

    @classmethod
    def build(
        cls,
        *,
        removed_status: Sequence[int] = DEFAULT_REMOVED_STATUS,
        removed_markers: Sequence[str] = (),
        removed_redirect: Sequence[str] = (),
    ) -> VerifyRules:
        return cls(
            removed_status=frozenset(removed_status),
            removed_markers=tuple(re.compile(marker.encode()) for marker in removed_markers),
            removed_redirect=tuple(re.compile(pattern) for pattern in removed_redirect),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Observation:
    """What one fetch saw: the last answer's status and URL and the bytes read of it (in memory
    only), or the reason no answer came."""

    http_status: int | None = None
    final_url: str = ""
    body: bytes = b""
    failure: InconclusiveReason | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: CheckOutcome
    reason: str = ""
    rule: str = ""


def decide(rules: VerifyRules, seen: Observation) -> Decision:
    """Which outcome one fetch supports, and the rule that says so."""
    if seen.failure is not None:
        return Decision(CheckOutcome.INCONCLUSIVE, reason=seen.failure.value, rule="failure")
    status = seen.http_status
    if status is None:
        return Decision(CheckOutcome.INCONCLUSIVE, reason=InconclusiveReason.PROTOCOL.value, rule="failure")
    if status in rules.removed_status:
        return Decision(CheckOutcome.REMOVED, rule=f"status:{status}")
    for pattern in rules.removed_redirect:
        if pattern.search(seen.final_url):
            return Decision(CheckOutcome.REMOVED, rule=f"redirect:{pattern.pattern}")
    return _by_status(rules, status, seen.body)


def _by_status(rules: VerifyRules, status: int, body: bytes) -> Decision:
    if 200 <= status < 300:
        for marker in rules.removed_markers:
            if marker.search(body):
                return Decision(CheckOutcome.REMOVED, rule=f"marker:{marker.pattern.decode()}")
        return Decision(CheckOutcome.LIVE, rule=f"status:{status}")
    if status == 401:
        return Decision(CheckOutcome.INCONCLUSIVE, reason=InconclusiveReason.LOGIN_WALL.value, rule="status")
    if 300 <= status < 400:
        reason = InconclusiveReason.TOO_MANY_REDIRECTS.value
        return Decision(CheckOutcome.INCONCLUSIVE, reason=reason, rule="status")
    return Decision(CheckOutcome.INCONCLUSIVE, reason=f"status_{status}", rule="status")


@dataclass(frozen=True, slots=True, kw_only=True)
class UrlCheck:
    """One check of one URL, as kept (SPEC §13): never the body."""

    at: datetime
    url: str
    outcome: CheckOutcome
    reason: str = ""
    http_status: int | None = None
    final_url: str = ""
    content_type: str = ""
    bytes_read: int = 0
    sha256: str = ""
    rule: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "at": format_timestamp(self.at),
            "url": self.url,
            "outcome": self.outcome.value,
            "reason": self.reason,
            "http_status": self.http_status,
            "final_url": self.final_url,
            "content_type": self.content_type,
            "bytes_read": self.bytes_read,
            "sha256": self.sha256,
            "rule": self.rule,
        }


@dataclass(frozen=True, slots=True)
class RequestVerdict:
    """What one round of checks of a request's URLs means for it."""

    all_removed: bool
    live_urls: tuple[str, ...] = field(default=())


def judge_round(checks: Sequence[UrlCheck]) -> RequestVerdict:
    """Every URL removed: the request is verified removed; the URLs seen live: still up."""
    live = tuple(check.url for check in checks if check.outcome is CheckOutcome.LIVE)
    all_removed = bool(checks) and all(check.outcome is CheckOutcome.REMOVED for check in checks)
    return RequestVerdict(all_removed=all_removed, live_urls=live)


# -- when to check ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifySchedule:
    """When checks fall due: the reminder point and the removal bound of an open request (from its
    delivery), right after a claim of removal, then at ``recheck_after`` intervals."""

    remind_after: timedelta
    removal_within: timedelta
    recheck_after: tuple[timedelta, ...] = (timedelta(days=1), timedelta(days=7), timedelta(days=30))

    @property
    def first_after(self) -> timedelta:
        """From delivery to a request's first check: the first of ``check_points`` of a request
        just delivered, so the delivery itself can set the timer."""
        return min(self.remind_after, self.removal_within)


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyFacts:
    """A request as the schedule sees it."""

    state: RequestState
    delivered_at: datetime | None
    resolved_at: datetime | None  # when the platform said removed (with state ``removed``)
    verified_removed_at: datetime | None
    # Since when the current phase runs: the last round that saw every URL gone, or the
    # re-appearance after it. None before the first verification.
    verify_base: datetime | None
    checked_at: datetime | None  # the last round of checks


_OPEN = frozenset({RequestState.DELIVERED, RequestState.ACKNOWLEDGED})


def check_points(facts: VerifyFacts, schedule: VerifySchedule) -> list[datetime]:
    """Every moment a check of this request is due, in order."""
    later = list(schedule.recheck_after)
    if facts.verified_removed_at is not None:
        base = facts.verify_base or facts.verified_removed_at
        return [base + step for step in later]
    if facts.state is RequestState.REMOVED and facts.resolved_at is not None:
        return [facts.resolved_at] + [facts.resolved_at + step for step in later]
    if facts.state in _OPEN and facts.delivered_at is not None:
        bound = facts.delivered_at + schedule.removal_within
        first = [facts.delivered_at + schedule.remind_after, bound]
        return sorted(first) + [bound + step for step in later]
    return []


def next_check(facts: VerifyFacts, schedule: VerifySchedule) -> datetime | None:
    """The first check point after the last round (any, before the first), or None: no more."""
    for point in check_points(facts, schedule):
        if facts.checked_at is None or point > facts.checked_at:
            return point
    return None


# -- the report's figures (SPEC §8, §13) -----------------------------------------------------------

# The keys verification adds to each platform of the report, after §8's.
VERIFY_REPORT_KEYS = (
    "verified_removed",
    "false_claims",
    "reappeared",
    "inconclusive",
    "time_to_verified_removal_s",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class VerificationRow:
    """One request of the report's window, as verification counts it."""

    platform: str
    delivered_at: datetime | None
    verified_removed_at: datetime | None
    false_claims: int = 0
    reappeared: bool = False
    inconclusive: int = 0  # its checks that concluded nothing


def verification_figures(rows: Iterable[VerificationRow]) -> dict[str, dict[str, Any]]:
    """Per platform: requests verified removed, false claims, requests that re-appeared, checks
    that concluded nothing, and delivery → first check that saw every URL gone (whole seconds,
    nearest-rank p50/p90/max; null without any)."""
    counts: dict[str, dict[str, Any]] = {}
    waits: dict[str, list[int]] = {}
    for row in rows:
        figures = counts.setdefault(row.platform, _empty_figures())
        figures["false_claims"] += row.false_claims
        figures["reappeared"] += int(row.reappeared)
        figures["inconclusive"] += row.inconclusive
        if row.verified_removed_at is not None:
            figures["verified_removed"] += 1
            if row.delivered_at is not None:
                wait = max(0, int((row.verified_removed_at - row.delivered_at).total_seconds()))
                waits.setdefault(row.platform, []).append(wait)
    for platform, figures in counts.items():
        figures["time_to_verified_removal_s"] = _spread(waits.get(platform, []))
    return counts


def empty_verification_figures() -> dict[str, Any]:
    """A platform with nothing verified in the window."""
    return _empty_figures()


def _empty_figures() -> dict[str, Any]:
    return {
        "verified_removed": 0,
        "false_claims": 0,
        "reappeared": 0,
        "inconclusive": 0,
        "time_to_verified_removal_s": None,
    }


def _spread(values: list[int]) -> dict[str, int] | None:
    if not values:
        return None
    ordered = sorted(values)

    def rank(percent: int) -> int:
        return ordered[-(-percent * len(ordered) // 100) - 1]

    return {"p50": rank(50), "p90": rank(90), "max": ordered[-1]}
