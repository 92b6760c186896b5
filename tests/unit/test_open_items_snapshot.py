"""The open-item gauge values computed from what the store read (pure: items, platforms, now)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from notifier.ports import OpenItems
from notifier.services.monitoring import open_items_snapshot

NOW = datetime(2024, 9, 3, 12, 0, tzinfo=UTC)


def test_every_configured_platform_gets_every_state_and_kind_with_zeros_filled_in() -> None:
    items = OpenItems(
        requests={"telegram": {"pending": 2}},
        notices={"telegram": {"retrying": 1}},
        oldest_undelivered={"telegram": NOW - timedelta(minutes=3)},
        oldest_unacknowledged={},
    )

    snapshot = open_items_snapshot(items, platforms=["telegram", "forum"], now=NOW)

    assert snapshot.requests == {
        ("telegram", "pending"): 2,
        ("telegram", "batched"): 0,
        ("telegram", "delivered"): 0,
        ("telegram", "acknowledged"): 0,
        ("forum", "pending"): 0,
        ("forum", "batched"): 0,
        ("forum", "delivered"): 0,
        ("forum", "acknowledged"): 0,
    }
    assert snapshot.notices[("telegram", "retrying")] == 1
    assert sum(snapshot.notices.values()) == 1 and len(snapshot.notices) == 12
    assert snapshot.oldest_seconds == {
        ("telegram", "undelivered"): 180.0,
        ("telegram", "unacknowledged"): 0.0,
        ("forum", "undelivered"): 0.0,
        ("forum", "unacknowledged"): 0.0,
    }


def test_an_age_is_never_negative_when_another_process_wrote_ahead_of_this_clock() -> None:
    items = OpenItems(
        requests={"telegram": {"delivered": 1}},
        notices={"telegram": {"delivered": 1}},
        oldest_undelivered={},
        oldest_unacknowledged={"telegram": NOW + timedelta(seconds=2)},
    )

    snapshot = open_items_snapshot(items, platforms=["telegram"], now=NOW)

    assert snapshot.oldest_seconds[("telegram", "unacknowledged")] == 0.0
