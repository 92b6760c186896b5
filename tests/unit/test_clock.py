"""The clock seam: a simulated clock lets 36-hour rules run in milliseconds, waking sleepers in order."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from notifier.clock import SimulatedClock, SystemClock

START = datetime(2024, 9, 3, 1, 0, tzinfo=UTC)


async def settle() -> None:
    """Let freshly created tasks run up to their first real wait."""
    for _ in range(5):
        await asyncio.sleep(0)


async def sleeper(
    clock: SimulatedClock, seconds: float, name: str, woken: list[tuple[str, datetime]]
) -> None:
    await clock.sleep(seconds)
    woken.append((name, clock.now()))


def test_a_simulated_clock_starts_where_it_is_told() -> None:
    assert SimulatedClock(START).now() == START


def test_a_simulated_clock_needs_a_timezone_aware_start() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        SimulatedClock(datetime(2024, 9, 3, 1, 0))


async def test_sleepers_wake_in_deadline_order_each_at_its_own_deadline() -> None:
    clock = SimulatedClock(START)
    woken: list[tuple[str, datetime]] = []
    tasks = [
        asyncio.create_task(sleeper(clock, hours * 3600, f"{hours}h", woken)) for hours in (36, 1, 24, 6)
    ]
    await settle()

    await clock.advance(timedelta(hours=48))

    assert woken == [
        ("1h", START + timedelta(hours=1)),
        ("6h", START + timedelta(hours=6)),
        ("24h", START + timedelta(hours=24)),
        ("36h", START + timedelta(hours=36)),
    ]
    assert clock.now() == START + timedelta(hours=48)
    await asyncio.gather(*tasks)


async def test_sleepers_with_the_same_deadline_wake_in_the_order_they_slept() -> None:
    clock = SimulatedClock(START)
    woken: list[tuple[str, datetime]] = []
    tasks = [asyncio.create_task(sleeper(clock, 60, name, woken)) for name in ("first", "second", "third")]
    await settle()

    await clock.advance(60)

    assert [name for name, _ in woken] == ["first", "second", "third"]
    await asyncio.gather(*tasks)


async def test_a_sleeper_does_not_wake_before_its_deadline() -> None:
    clock = SimulatedClock(START)
    woken: list[tuple[str, datetime]] = []
    task = asyncio.create_task(sleeper(clock, 36 * 3600, "bound", woken))
    await settle()

    await clock.advance(timedelta(hours=36) - timedelta(microseconds=1))
    await settle()
    assert woken == []
    assert not task.done()

    await clock.advance(timedelta(microseconds=1))
    assert woken == [("bound", START + timedelta(hours=36))]
    await task


async def test_a_36_hour_sleep_takes_milliseconds_of_real_time() -> None:
    clock = SimulatedClock(START)
    woken: list[tuple[str, datetime]] = []
    task = asyncio.create_task(sleeper(clock, 36 * 3600, "bound", woken))
    await settle()

    started = time.perf_counter()
    await clock.advance(timedelta(hours=36))
    await task
    elapsed = time.perf_counter() - started

    assert woken == [("bound", START + timedelta(hours=36))]
    assert elapsed < 1.0


async def test_a_task_that_sleeps_again_is_woken_again_within_one_advance() -> None:
    clock = SimulatedClock(START)
    ticks: list[datetime] = []

    async def every_hour() -> None:
        for _ in range(5):
            await clock.sleep(3600)
            ticks.append(clock.now())

    task = asyncio.create_task(every_hour())
    await settle()

    await clock.advance(timedelta(hours=3, minutes=30))

    assert ticks == [START + timedelta(hours=h) for h in (1, 2, 3)]
    assert clock.next_deadline == START + timedelta(hours=4)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_next_deadline_is_the_earliest_pending_wake_up() -> None:
    clock = SimulatedClock(START)
    woken: list[tuple[str, datetime]] = []
    assert clock.next_deadline is None

    tasks = [asyncio.create_task(sleeper(clock, seconds, str(seconds), woken)) for seconds in (900, 300)]
    await settle()
    assert clock.next_deadline == START + timedelta(seconds=300)

    await clock.advance(300)
    assert clock.next_deadline == START + timedelta(seconds=900)

    await clock.advance(600)
    assert clock.next_deadline is None
    await asyncio.gather(*tasks)


async def test_a_cancelled_sleeper_no_longer_counts_as_a_deadline() -> None:
    clock = SimulatedClock(START)
    woken: list[tuple[str, datetime]] = []
    early = asyncio.create_task(sleeper(clock, 60, "early", woken))
    late = asyncio.create_task(sleeper(clock, 120, "late", woken))
    await settle()

    early.cancel()
    await settle()

    assert clock.next_deadline == START + timedelta(seconds=120)
    await clock.advance(120)
    assert woken == [("late", START + timedelta(seconds=120))]
    await late


@pytest.mark.parametrize("delta", [-1, -0.001, timedelta(seconds=-1)])
async def test_time_does_not_go_backwards(delta: float | timedelta) -> None:
    clock = SimulatedClock(START)
    with pytest.raises(ValueError, match="backwards"):
        await clock.advance(delta)
    assert clock.now() == START


async def test_advancing_by_zero_or_with_no_sleepers_just_moves_time() -> None:
    clock = SimulatedClock(START)
    await clock.advance(0)
    assert clock.now() == START
    await clock.advance(timedelta(days=30))
    assert clock.now() == START + timedelta(days=30)


@pytest.mark.parametrize("seconds", [0, -5])
async def test_a_sleep_of_zero_or_less_returns_without_waiting_for_time(seconds: float) -> None:
    clock = SimulatedClock(START)
    await asyncio.wait_for(clock.sleep(seconds), timeout=5)
    assert clock.now() == START
    assert clock.next_deadline is None


def test_the_system_clock_reads_utc() -> None:
    now = SystemClock().now()
    assert now.tzinfo is UTC
    assert abs(now - datetime.now(UTC)) < timedelta(seconds=5)


async def test_the_system_clock_does_not_sleep_for_negative_time() -> None:
    await asyncio.wait_for(SystemClock().sleep(-10), timeout=5)
