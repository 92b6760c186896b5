"""The compliance report's counting rules (SPEC §8), on plain rows and a fixed ``now``."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifier.domain.models import RequestState
from notifier.domain.report import (
    REPORT_KEYS,
    Bounds,
    PlatformFigures,
    ReportRow,
    nearest_rank,
    percentiles,
    platform_documents,
    platform_reports,
    seconds,
    spread,
    tally,
)

T0 = datetime(2024, 9, 1, tzinfo=UTC)
H36 = timedelta(hours=36)
BOUNDS = {"telegram": Bounds(ack_within=H36, removal_within=H36)}


def row(
    request: int,
    state: RequestState,
    *,
    platform: str = "telegram",
    notice: str | None = "TD-1",
    delivered: timedelta | None = timedelta(minutes=5),
    acknowledged: timedelta | None = None,
    resolved: timedelta | None = None,
    unfiled: bool = False,
) -> ReportRow:
    """A request ingested ``request`` seconds after T0; the other times are offsets from T0."""
    return ReportRow(
        platform=platform,
        state=state,
        ingested_at=T0 + timedelta(seconds=request),
        delivered_at=None if delivered is None else T0 + delivered,
        acknowledged_at=None if acknowledged is None else T0 + acknowledged,
        resolved_at=None if resolved is None else T0 + resolved,
        notice_id=notice,
        undelivered_breach=unfiled,
    )


def report(
    *rows: ReportRow,
    now: datetime = T0 + timedelta(days=1),
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    [only] = platform_reports(rows, bounds=BOUNDS, now=now, since=since, until=until)
    return only


def reference(values: list[int], percent: int) -> int:
    """Nearest rank written out independently: the ⌈p/100·n⌉-th smallest, 1-based."""
    ordered = sorted(values)
    return ordered[math.ceil(percent / 100 * len(ordered)) - 1]


# -- percentiles -------------------------------------------------------------------------------------


def test_percentiles_of_ten_values_are_the_fifth_and_ninth_smallest() -> None:
    values = [70, 10, 100, 40, 20, 90, 30, 60, 50, 80]
    assert percentiles(values) == {"p50": 50, "p90": 90, "max": 100}


def test_percentiles_of_one_value_are_that_value() -> None:
    assert percentiles([7]) == {"p50": 7, "p90": 7, "max": 7}


def test_percentiles_of_nothing_are_none() -> None:
    assert percentiles([]) is None


@given(st.lists(st.integers(min_value=0, max_value=10**7), min_size=1, max_size=300))
def test_percentiles_agree_with_the_nearest_rank_formula(values: list[int]) -> None:
    result = percentiles(values)
    assert result == {"p50": reference(values, 50), "p90": reference(values, 90), "max": max(values)}


def test_nearest_rank_refuses_a_percent_outside_its_range() -> None:
    with pytest.raises(ValueError, match="percent"):
        nearest_rank([1, 2], 0)


@given(
    st.lists(
        st.timedeltas(min_value=timedelta(days=-2), max_value=timedelta(days=90)), min_size=1, max_size=300
    )
)
def test_ranking_exact_durations_then_truncating_equals_ranking_whole_seconds(
    durations: list[timedelta],
) -> None:
    # What lets PostgreSQL rank the exact intervals and leave the truncation to ``seconds``.
    ordered = sorted(durations)
    n = len(ordered)
    p50, p90 = ordered[-(-50 * n // 100) - 1], ordered[-(-90 * n // 100) - 1]
    assert spread(p50, p90, ordered[-1]) == percentiles(seconds(d) for d in durations)


def postgres_rank(fraction: float, n: int) -> int:
    """The 1-based position ``percentile_disc(fraction)`` returns: ``ceil(percentile * rows)`` in
    float8, as PostgreSQL's ``percentile_disc_final`` computes it."""
    return math.ceil(fraction * n)


def test_postgres_float_ranks_are_the_integer_nearest_ranks_for_every_count_up_to_200000() -> None:
    for n in range(1, 200_001):
        assert postgres_rank(0.5, n) == -(-50 * n // 100)
        assert postgres_rank(0.9, n) == -(-90 * n // 100), n


@given(st.integers(min_value=1, max_value=10**12))
def test_postgres_float_ranks_are_the_integer_nearest_ranks_for_large_counts(n: int) -> None:
    assert postgres_rank(0.5, n) == -(-50 * n // 100)
    assert postgres_rank(0.9, n) == -(-90 * n // 100)
    assert postgres_rank(0.9, n - n % 10 + 10) == 9 * ((n - n % 10 + 10) // 10)  # exact multiples


# -- counting ----------------------------------------------------------------------------------------


def test_keys_are_exactly_those_of_the_specification() -> None:
    assert tuple(report(row(1, RequestState.REMOVED, resolved=timedelta(hours=2)))) == REPORT_KEYS


def test_requests_are_counted_per_request_and_notices_per_notice() -> None:
    result = report(
        row(
            1,
            RequestState.REMOVED,
            notice="TD-1",
            acknowledged=timedelta(hours=1),
            resolved=timedelta(hours=2),
        ),
        row(2, RequestState.REJECTED, notice="TD-1", resolved=timedelta(hours=3)),
        row(3, RequestState.ACKNOWLEDGED, notice="TD-2", acknowledged=timedelta(hours=1)),
        row(4, RequestState.DELIVERED, notice="TD-2"),
        row(5, RequestState.FAILED, notice="TD-3", delivered=None),
        row(6, RequestState.PENDING, notice=None, delivered=None),
    )
    assert {k: result[k] for k in ("requests", "notices", "delivered")} == {
        "requests": 6,
        "notices": 3,
        "delivered": 2,  # TD-3 failed before any delivery
    }
    assert {k: result[k] for k in ("acknowledged", "removed", "rejected", "open", "failed")} == {
        "acknowledged": 3,  # a removal and a rejection are answers too
        "removed": 1,
        "rejected": 1,
        "open": 3,  # delivered and not yet removed or rejected, or not delivered yet
        "failed": 1,
    }
    assert result["undelivered"] == 1  # the pending one


def test_times_run_from_intake_to_delivery_and_from_delivery_to_answers() -> None:
    result = report(
        row(0, RequestState.REMOVED, delivered=timedelta(seconds=300), resolved=timedelta(seconds=7500)),
        row(
            0,
            RequestState.ACKNOWLEDGED,
            delivered=timedelta(seconds=600),
            acknowledged=timedelta(seconds=4200),
        ),
    )
    assert result["time_to_delivery_s"] == {"p50": 300, "p90": 600, "max": 600}
    # The removal without a separate acknowledgement answered at its resolution.
    assert result["time_to_ack_s"] == {"p50": 3600, "p90": 7200, "max": 7200}
    assert result["time_to_removal_s"] == {"p50": 7200, "p90": 7200, "max": 7200}


def test_time_to_removal_covers_removed_requests_only() -> None:
    result = report(
        row(0, RequestState.REJECTED, acknowledged=timedelta(hours=1), resolved=timedelta(hours=2))
    )
    assert result["time_to_removal_s"] is None
    assert result["time_to_ack_s"] == {"p50": 3300, "p90": 3300, "max": 3300}


def test_times_are_whole_seconds() -> None:
    result = report(
        row(0, RequestState.REMOVED, delivered=timedelta(seconds=1.9), resolved=timedelta(seconds=11.2))
    )
    assert result["time_to_delivery_s"] == {"p50": 1, "p90": 1, "max": 1}
    assert result["time_to_removal_s"] == {"p50": 9, "p90": 9, "max": 9}


# -- breaches ----------------------------------------------------------------------------------------


def test_exactly_the_bound_is_within_it_and_one_second_more_is_a_breach() -> None:
    delivered = timedelta(minutes=5)
    within = row(1, RequestState.REMOVED, delivered=delivered, resolved=delivered + H36)
    late = row(2, RequestState.REMOVED, delivered=delivered, resolved=delivered + H36 + timedelta(seconds=1))
    assert report(within)["removal_breaches"] == 0
    assert report(within)["ack_breaches"] == 0
    assert report(late)["removal_breaches"] == 1
    assert report(late)["ack_breaches"] == 1


def test_an_open_request_past_its_bound_is_a_breach_and_shows_as_the_oldest_open() -> None:
    delivered = timedelta(hours=1)
    now = T0 + delivered + H36 + timedelta(seconds=10)
    result = report(row(1, RequestState.DELIVERED, delivered=delivered), now=now)
    assert result["ack_breaches"] == 1
    assert result["removal_breaches"] == 1
    assert result["open"] == 1
    assert result["oldest_open_s"] == 36 * 3600 + 10
    assert result["time_to_ack_s"] is None


def test_an_open_request_inside_its_bound_is_no_breach_yet() -> None:
    now = T0 + timedelta(hours=10)
    result = report(row(1, RequestState.DELIVERED, delivered=timedelta(hours=1)), now=now)
    assert (result["ack_breaches"], result["removal_breaches"], result["oldest_open_s"]) == (0, 0, 9 * 3600)


def test_an_acknowledged_request_not_removed_past_the_bound_breaches_removal_only() -> None:
    now = T0 + timedelta(hours=50)
    result = report(
        row(1, RequestState.ACKNOWLEDGED, delivered=timedelta(hours=1), acknowledged=timedelta(hours=2)),
        now=now,
    )
    assert (result["ack_breaches"], result["removal_breaches"]) == (0, 1)
    assert result["oldest_open_s"] is None  # acknowledged: the platform is not silent


def test_oldest_open_is_the_oldest_unacknowledged_delivered_request() -> None:
    now = T0 + timedelta(hours=30)
    result = report(
        row(1, RequestState.DELIVERED, delivered=timedelta(hours=5)),
        row(2, RequestState.DELIVERED, delivered=timedelta(hours=2)),
        row(
            3,
            RequestState.ACKNOWLEDGED,
            delivered=timedelta(hours=1),
            acknowledged=timedelta(hours=1, minutes=1),
        ),
        now=now,
    )
    assert result["oldest_open_s"] == 28 * 3600


def test_a_thousand_unfiled_portal_requests_are_open_undelivered_and_breached_once_decided() -> None:
    # A portal notice rendered and never filed: its requests stay batched, with no delivery time.
    now = T0 + timedelta(hours=3)
    unfiled = [row(i, RequestState.BATCHED, notice="TD-9", delivered=None, unfiled=True) for i in range(1000)]
    result = report(*unfiled, row(5000, RequestState.PENDING, notice=None, delivered=None), now=now)
    assert (result["open"], result["undelivered"], result["undelivered_breaches"]) == (1001, 1001, 1000)
    assert result["oldest_undelivered_s"] == 3 * 3600  # the first request, ingested at T0
    assert (result["ack_breaches"], result["removal_breaches"], result["oldest_open_s"]) == (0, 0, None)


def test_an_undelivered_breach_stays_counted_after_the_notice_is_filed_and_delivered() -> None:
    result = report(
        row(1, RequestState.DELIVERED, delivered=timedelta(hours=4), unfiled=True),
        row(2, RequestState.REMOVED, delivered=timedelta(hours=4), resolved=timedelta(hours=5), unfiled=True),
    )
    assert (result["undelivered"], result["oldest_undelivered_s"], result["undelivered_breaches"]) == (
        0,
        None,
        2,
    )
    assert result["open"] == 1


def test_bounds_are_reported_in_seconds_per_platform() -> None:
    bounds = {
        "telegram": Bounds(ack_within=H36, removal_within=H36),
        "clipshare": Bounds(ack_within=timedelta(hours=12), removal_within=timedelta(hours=24)),
    }
    reports = platform_reports([], bounds=bounds, now=T0)
    assert [(r["platform"], r["ack_within"], r["removal_within"]) for r in reports] == [
        ("telegram", 129600, 129600),
        ("clipshare", 43200, 86400),
    ]


# -- window and platforms ----------------------------------------------------------------------------


def test_the_window_selects_requests_by_delivery_time() -> None:
    since, until = T0 + timedelta(days=1), T0 + timedelta(days=2)
    rows = (
        # Ingested before the window, delivered inside it: in.
        row(0, RequestState.DELIVERED, notice="TD-in", delivered=timedelta(days=1, hours=1)),
        # Ingested inside the window, delivered after it: out.
        row(86400 + 60, RequestState.DELIVERED, notice="TD-late", delivered=timedelta(days=2, hours=1)),
        # Delivered at ``until`` exactly: out (the window is half-open).
        row(0, RequestState.DELIVERED, notice="TD-edge", delivered=timedelta(days=2)),
        # Delivered at ``since`` exactly: in.
        row(0, RequestState.DELIVERED, notice="TD-start", delivered=timedelta(days=1)),
    )
    result = report(*rows, since=since, until=until)
    assert (result["requests"], result["notices"]) == (2, 2)


def test_requests_never_delivered_are_selected_by_intake_time() -> None:
    since = T0 + timedelta(days=1)
    rows = (
        row(86400 + 5, RequestState.FAILED, notice="TD-f", delivered=None),
        row(5, RequestState.FAILED, notice="TD-old", delivered=None),
    )
    assert report(*rows, since=since)["failed"] == 1


def test_every_platform_appears_with_zeros_and_nulls_when_it_has_no_requests() -> None:
    bounds = {
        "telegram": Bounds(ack_within=H36, removal_within=H36),
        "empty": Bounds(ack_within=H36, removal_within=H36),
    }
    rows = [row(1, RequestState.DELIVERED), row(2, RequestState.DELIVERED, platform="unconfigured")]
    telegram, empty = platform_reports(
        rows, bounds=bounds, now=T0 + timedelta(hours=1), dead_letters={"empty": 2}
    )
    assert telegram["requests"] == 1
    assert empty == {
        "platform": "empty",
        "requests": 0,
        "notices": 0,
        "delivered": 0,
        "acknowledged": 0,
        "removed": 0,
        "rejected": 0,
        "open": 0,
        "undelivered": 0,
        "failed": 0,
        "dead_letters": 2,
        "ack_within": 129600,
        "removal_within": 129600,
        "time_to_delivery_s": None,
        "time_to_ack_s": None,
        "time_to_removal_s": None,
        "ack_breaches": 0,
        "removal_breaches": 0,
        "undelivered_breaches": 0,
        "oldest_open_s": None,
        "oldest_undelivered_s": None,
        "within_bound": None,
        "removed_within": {"1h": 0, "24h": 0, "48h": 0, "7d": 0},
        "paused_s": 0,
        "withdrawn": 0,
    }


def test_the_tally_has_every_configured_platform_and_documents_fill_the_missing_ones() -> None:
    bounds = {
        "telegram": Bounds(ack_within=H36, removal_within=H36),
        "empty": Bounds(ack_within=timedelta(hours=12), removal_within=H36),
    }
    figures = tally([row(1, RequestState.DELIVERED)], bounds=bounds, now=T0 + timedelta(hours=1))
    assert list(figures) == ["telegram", "empty"]
    assert figures["empty"] == PlatformFigures()
    # A store may leave out a platform with nothing in the window, and name one not asked about.
    partial = {"telegram": figures["telegram"], "unconfigured": figures["telegram"]}
    documents = platform_documents(partial, bounds=bounds, dead_letters={"empty": 1})
    assert documents == platform_reports(
        [row(1, RequestState.DELIVERED)],
        bounds=bounds,
        now=T0 + timedelta(hours=1),
        dead_letters={"empty": 1},
    )
    assert [d["platform"] for d in documents] == ["telegram", "empty"]
    assert (documents[1]["ack_within"], documents[1]["dead_letters"]) == (43200, 1)
