"""The compliance report's figures per platform (SPEC §8), from plain request rows.

Pure: the rows, each platform's bounds and ``now`` come in; a dict with exactly §8's keys comes
out. The rules, in one place:

* ``requests``, ``acknowledged``, ``removed``, ``rejected``, ``open``, ``failed`` and the breach
  counts count requests; ``notices`` and ``delivered`` count notices (the distinct notice ids of the
  selected requests; ``delivered`` those of them whose requests carry a delivery time).
* ``acknowledged`` counts every request the platform answered (acknowledged, removed or rejected):
  a removal is an acknowledgement too, as §8's example (148 acknowledged, 148 removed) shows.
* ``open`` counts requests not settled: delivered to the platform and not yet removed or rejected
  (states ``delivered`` and ``acknowledged``), and **undelivered** ones, the authority's own clock:
  ``pending``, ``batched`` (in a notice queued, sending, retrying, or rendered for a portal and not
  filed yet). ``undelivered`` counts the latter alone and ``oldest_undelivered_s`` is the age of the
  oldest of them (since intake), so a thousand unfiled portal requests never read "open 0".
* Times are whole seconds (truncated), percentiles nearest-rank; a distribution with no values is
  ``null``. ``time_to_delivery_s`` runs intake → delivery, ``time_to_ack_s`` delivery →
  acknowledgement over answered requests, ``time_to_removal_s`` delivery → resolution over removed
  ones.
* A breach is strictly longer than the bound (exactly 36 h is within 36 h). A request still open
  past its bound is a breach too, so a silent platform never looks clean: an ack breach is a
  delivered, unanswered request older than ``ack_within``; a removal breach a delivered request
  neither removed nor rejected older than ``removal_within``. A rejection given after the removal
  bound is a removal breach as well: the bound is for a decision, whatever it is.
  ``undelivered_breaches`` counts the requests of notices the SLA monitor decided were left unfiled
  past ``sla.file_within`` (an ``undelivered_breach`` decision): a decision, not a reading of the
  clock, so it stays after the notice is filed.
* Each request is judged by its own bounds: its deadline profile's as its platform applies them
  (SPEC §14), else its platform's. ``within_bound`` is the share (0 to 1, 4 decimals) of removed
  requests removed within their removal bound (``null`` when none was removed);
  ``removed_within`` counts removed requests by time to removal, cumulatively: within 1 h, 24 h,
  48 h and 7 d, the buckets regulators publish. A clarification (SPEC §14) stops the removal clock:
  while asked and unanswered a request is not breached; answered, its bound runs again from the
  answer. ``paused_s`` sums, over the group's requests, how long their clocks stood still.
  A withdrawn request (SPEC §14) counts only in ``withdrawn``: in no other figure.
* The window selects requests by delivery time (``since <= delivered_at < until``). A request never
  delivered (pending, batched, failed before any delivery) has no delivery time and is selected by
  its intake time instead, so that failures inside the window are not lost from the report.

:func:`tally` is the reference implementation of these rules. A store may compute the same
:class:`PlatformFigures` itself (PostgreSQL does, in grouped SQL: a million rows are not fetched);
``tests/contract/test_report_store_contract.py`` holds every store to the tally on the same data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from notifier.domain.models import RequestState

PERCENTILES = ("p50", "p90", "max")

# §8's keys, in §8's order: the JSON and CSV renderers and the tests rely on it.
REPORT_KEYS = (
    "platform",
    "requests",
    "notices",
    "delivered",
    "acknowledged",
    "removed",
    "rejected",
    "open",
    "undelivered",
    "failed",
    "dead_letters",
    "ack_within",
    "removal_within",
    "time_to_delivery_s",
    "time_to_ack_s",
    "time_to_removal_s",
    "ack_breaches",
    "removal_breaches",
    "undelivered_breaches",
    "oldest_open_s",
    "oldest_undelivered_s",
    "within_bound",
    "removed_within",
    "paused_s",
    "withdrawn",
)

# The buckets of ``removed_within``: removed within this long of delivery (cumulative).
REMOVED_WITHIN = (
    ("1h", timedelta(hours=1)),
    ("24h", timedelta(hours=24)),
    ("48h", timedelta(hours=48)),
    ("7d", timedelta(days=7)),
)
# The group of ``--by profile`` that holds requests judged by their platform's own bounds.
NO_PROFILE = ""

# The states the rules above name (a store computing the figures in SQL uses the same sets).
ANSWERED = frozenset({RequestState.ACKNOWLEDGED, RequestState.REMOVED, RequestState.REJECTED})
RESOLVED = frozenset({RequestState.REMOVED, RequestState.REJECTED})
OPEN = frozenset({RequestState.DELIVERED, RequestState.ACKNOWLEDGED})
UNDELIVERED = frozenset({RequestState.PENDING, RequestState.BATCHED})


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportRow:
    """One request, as much of it as the report reads."""

    platform: str
    state: RequestState
    ingested_at: datetime
    delivered_at: datetime | None
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    notice_id: str | None
    undelivered_breach: bool = False  # its notice was decided unfiled past ``sla.file_within``
    deadline: str | None = None  # its deadline profile; None: its platform's bounds
    clarification_requested_at: datetime | None = None  # its notice's clarification, asked
    clarified_at: datetime | None = None  # and answered
    earlier_paused_s: int = 0  # the pauses of its notice's earlier clarifications, summed


@dataclass(frozen=True, slots=True, kw_only=True)
class Bounds:
    """A platform's SLA bounds, after its overrides of the global ones."""

    ack_within: timedelta
    removal_within: timedelta


def nearest_rank(sorted_values: Sequence[int], percent: int) -> int:
    """The nearest-rank percentile: the ⌈percent/100 · n⌉-th smallest value (1-based)."""
    if not sorted_values:
        raise ValueError("no values")
    if not 0 < percent <= 100:
        raise ValueError(f"percent must be in (0, 100], not {percent}")
    rank = -(-percent * len(sorted_values) // 100)  # ceil in integers: no float rounding at n·p/100
    return sorted_values[rank - 1]


def percentiles(values: Iterable[int]) -> dict[str, int] | None:
    """``{"p50", "p90", "max"}`` of whole seconds, nearest-rank; ``None`` when there are no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    return {"p50": nearest_rank(ordered, 50), "p90": nearest_rank(ordered, 90), "max": ordered[-1]}


def seconds(delta: timedelta) -> int:
    """Whole seconds, truncated; never negative (a clock step backward is not a negative wait)."""
    return max(0, int(delta.total_seconds()))


def in_window(row: ReportRow, since: datetime | None, until: datetime | None) -> bool:
    """Whether the window selects ``row``: by delivery time, or intake time when never delivered."""
    at = row.delivered_at if row.delivered_at is not None else row.ingested_at
    return (since is None or at >= since) and (until is None or at < until)


Distribution = dict[str, int]
"""``{"p50", "p90", "max"}`` in whole seconds."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PlatformFigures:
    """One platform's figures in the window, before §8's document is made of them (zeros and
    nulls: a platform with nothing in the window)."""

    requests: int = 0
    notices: int = 0
    delivered: int = 0
    acknowledged: int = 0
    removed: int = 0
    rejected: int = 0
    open: int = 0
    undelivered: int = 0
    failed: int = 0
    ack_breaches: int = 0
    removal_breaches: int = 0
    undelivered_breaches: int = 0
    time_to_delivery_s: Distribution | None = None
    time_to_ack_s: Distribution | None = None
    time_to_removal_s: Distribution | None = None
    oldest_open_s: int | None = None
    oldest_undelivered_s: int | None = None
    removed_in_bound: int = 0  # removed requests removed within their own removal bound
    removed_within: tuple[int, ...] = (0,) * len(REMOVED_WITHIN)  # per bucket of REMOVED_WITHIN
    paused_s: int = 0  # how long clarifications stopped the removal clocks, summed over requests
    withdrawn: int = 0  # withdrawn requests, counted apart from every other figure
    verification: dict[str, Any] | None = None  # the §13 figures, when the store was asked for them


def spread(p50: timedelta, p90: timedelta, longest: timedelta) -> Distribution:
    """A distribution from the nearest-rank p50 and p90 and the maximum of the exact durations.

    Truncating to whole seconds never puts a longer duration before a shorter one, so the k-th
    smallest truncated duration is the truncated k-th smallest duration: ranking the exact
    durations and truncating the three picked is the same as :func:`percentiles` of the truncated
    ones, ties included. That lets a store rank in SQL and leave the truncation to :func:`seconds`.
    """
    return {"p50": seconds(p50), "p90": seconds(p90), "max": seconds(longest)}


@dataclass(slots=True)
class PlatformTally:
    """The figures of one platform, gathered one row at a time (a million rows need no list)."""

    bounds: Bounds
    now: datetime
    requests: int = 0
    acknowledged: int = 0
    removed: int = 0
    rejected: int = 0
    open: int = 0
    undelivered: int = 0
    failed: int = 0
    ack_breaches: int = 0
    removal_breaches: int = 0
    undelivered_breaches: int = 0
    oldest_open: timedelta | None = None
    oldest_undelivered: timedelta | None = None
    notices: set[str] = field(default_factory=set)
    delivered_notices: set[str] = field(default_factory=set)
    to_delivery: list[int] = field(default_factory=list)
    to_ack: list[int] = field(default_factory=list)
    to_removal: list[int] = field(default_factory=list)
    removed_in_bound: int = 0
    removed_within: list[int] = field(default_factory=lambda: [0] * len(REMOVED_WITHIN))
    paused: int = 0
    withdrawn: int = 0

    def add(self, row: ReportRow, bounds: Bounds | None = None) -> None:
        """Count ``row``, judged by ``bounds`` (its own: its profile's), else the group's."""
        own = bounds or self.bounds
        if row.state is RequestState.WITHDRAWN:
            self.withdrawn += 1
            return
        self.requests += 1
        state = row.state
        if state is RequestState.FAILED:
            self.failed += 1
        elif state is RequestState.REMOVED:
            self.removed += 1
        elif state is RequestState.REJECTED:
            self.rejected += 1
        if state in OPEN:
            self.open += 1
        elif state in UNDELIVERED:
            self.open += 1
            self.undelivered += 1
            age = self.now - row.ingested_at
            if self.oldest_undelivered is None or age > self.oldest_undelivered:
                self.oldest_undelivered = age
        self.undelivered_breaches += row.undelivered_breach
        if row.notice_id is not None:
            self.notices.add(row.notice_id)
        delivered = row.delivered_at
        if delivered is None:
            return
        if row.notice_id is not None:
            self.delivered_notices.add(row.notice_id)
        self.to_delivery.append(seconds(delivered - row.ingested_at))
        self._ack(row, delivered, own)
        self._removal(row, delivered, own)

    def _ack(self, row: ReportRow, delivered: datetime, bounds: Bounds) -> None:
        answered_at = row.acknowledged_at or (row.resolved_at if row.state in RESOLVED else None)
        if row.state in ANSWERED or answered_at is not None:
            self.acknowledged += 1
            if answered_at is not None:
                waited = answered_at - delivered
                self.to_ack.append(seconds(waited))
                self.ack_breaches += waited > bounds.ack_within
            return
        if row.state is RequestState.DELIVERED:
            age = self.now - delivered
            self.ack_breaches += age > bounds.ack_within
            if self.oldest_open is None or age > self.oldest_open:
                self.oldest_open = age

    def _removal(self, row: ReportRow, delivered: datetime, bounds: Bounds) -> None:
        # The removal clock: from delivery or a clarification's answer; None while one is unanswered.
        start: datetime | None = delivered
        asked, answered = row.clarification_requested_at, row.clarified_at
        if asked is not None:
            stopped = answered is None or answered < asked
            start = None if stopped else answered
            self.paused += seconds((self.now if stopped or answered is None else answered) - asked)
            self.paused += row.earlier_paused_s
        if row.state in RESOLVED and row.resolved_at is not None:
            waited = row.resolved_at - delivered
            on_clock = row.resolved_at - start if start is not None else timedelta(0)
            if row.state is RequestState.REMOVED:
                self.to_removal.append(seconds(waited))
                self.removed_in_bound += on_clock <= bounds.removal_within
                for index, (_, within) in enumerate(REMOVED_WITHIN):
                    self.removed_within[index] += waited <= within
            self.removal_breaches += on_clock > bounds.removal_within
        elif row.state in OPEN and start is not None:
            self.removal_breaches += self.now - start > bounds.removal_within

    def figures(self) -> PlatformFigures:
        return PlatformFigures(
            requests=self.requests,
            notices=len(self.notices),
            delivered=len(self.delivered_notices),
            acknowledged=self.acknowledged,
            removed=self.removed,
            rejected=self.rejected,
            open=self.open,
            undelivered=self.undelivered,
            failed=self.failed,
            ack_breaches=self.ack_breaches,
            removal_breaches=self.removal_breaches,
            undelivered_breaches=self.undelivered_breaches,
            time_to_delivery_s=percentiles(self.to_delivery),
            time_to_ack_s=percentiles(self.to_ack),
            time_to_removal_s=percentiles(self.to_removal),
            oldest_open_s=None if self.oldest_open is None else seconds(self.oldest_open),
            oldest_undelivered_s=None
            if self.oldest_undelivered is None
            else seconds(self.oldest_undelivered),
            removed_in_bound=self.removed_in_bound,
            removed_within=tuple(self.removed_within),
            paused_s=self.paused,
            withdrawn=self.withdrawn,
        )


def tally(
    rows: Iterable[ReportRow],
    *,
    bounds: Mapping[str, Bounds],
    now: datetime,
    since: datetime | None = None,
    until: datetime | None = None,
    profiles: Mapping[tuple[str, str], Bounds] | None = None,
    groups: Mapping[str, Bounds] | None = None,
) -> dict[str, PlatformFigures]:
    """The figures of every platform of ``bounds``, in its order: the reference implementation.

    Rows of platforms not in ``bounds`` are left out, and rows outside the window skipped (a caller
    may pass more). Each row is judged by its profile's bounds on its platform (``profiles``), else
    its platform's. With ``groups`` (by profile, :data:`NO_PROFILE` for none): per profile instead.
    """
    own = profiles or {}
    by_profile = groups is not None
    tallies = {name: PlatformTally(bound, now) for name, bound in (groups or bounds).items()}
    for row in rows:
        if row.platform not in bounds or not in_window(row, since, until):
            continue
        group = tallies.get((row.deadline or NO_PROFILE) if by_profile else row.platform)
        if group is None:
            continue
        judged = own.get((row.platform, row.deadline)) if row.deadline is not None else None
        group.add(row, judged or bounds[row.platform])
    return {name: group.figures() for name, group in tallies.items()}


def platform_document(
    platform: str, bounds: Bounds, figures: PlatformFigures, dead_letters: int = 0
) -> dict[str, Any]:
    """§8's figures of one platform: exactly :data:`REPORT_KEYS`, in that order."""
    return {
        "platform": platform,
        "requests": figures.requests,
        "notices": figures.notices,
        "delivered": figures.delivered,
        "acknowledged": figures.acknowledged,
        "removed": figures.removed,
        "rejected": figures.rejected,
        "open": figures.open,
        "undelivered": figures.undelivered,
        "failed": figures.failed,
        "dead_letters": dead_letters,
        "ack_within": seconds(bounds.ack_within),
        "removal_within": seconds(bounds.removal_within),
        "time_to_delivery_s": figures.time_to_delivery_s,
        "time_to_ack_s": figures.time_to_ack_s,
        "time_to_removal_s": figures.time_to_removal_s,
        "ack_breaches": figures.ack_breaches,
        "removal_breaches": figures.removal_breaches,
        "undelivered_breaches": figures.undelivered_breaches,
        "oldest_open_s": figures.oldest_open_s,
        "oldest_undelivered_s": figures.oldest_undelivered_s,
        "within_bound": round(figures.removed_in_bound / figures.removed, 4) if figures.removed else None,
        "removed_within": {
            name: n for (name, _), n in zip(REMOVED_WITHIN, figures.removed_within, strict=True)
        },
        "paused_s": figures.paused_s,
        "withdrawn": figures.withdrawn,
    }


def platform_documents(
    figures: Mapping[str, PlatformFigures],
    *,
    bounds: Mapping[str, Bounds],
    dead_letters: Mapping[str, int] | None = None,
) -> list[dict[str, Any]]:
    """One document per platform of ``bounds``, in its order; zeros and nulls for a platform
    ``figures`` does not name (nothing in the window), and figures of other platforms left out."""
    letters = dead_letters or {}
    empty = PlatformFigures()
    return [
        platform_document(name, bound, figures.get(name, empty), letters.get(name, 0))
        for name, bound in bounds.items()
    ]


def platform_reports(
    rows: Iterable[ReportRow],
    *,
    bounds: Mapping[str, Bounds],
    now: datetime,
    since: datetime | None = None,
    until: datetime | None = None,
    dead_letters: Mapping[str, int] | None = None,
) -> list[dict[str, Any]]:
    """One report per platform of ``bounds``, in its order, zeros and nulls when it has no rows:
    :func:`tally` made into §8's documents."""
    figures = tally(rows, bounds=bounds, now=now, since=since, until=until)
    return platform_documents(figures, bounds=bounds, dead_letters=dead_letters)
