"""The console's figures computed in the background (:mod:`notifier.runtime.console.snapshots`):
shared, shown with their time, refreshed at most once per interval, never waited for but once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from notifier.runtime.console.snapshots import DEFAULT_REPORT, ReportKey, Reports, Snapshot
from tests.waiting import wait_for

T0 = datetime(2024, 9, 10, tzinfo=UTC)


class Counting:
    """Figures that are the number of times they were computed, released by a gate."""

    def __init__(self) -> None:
        self.calls = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = False

    async def __call__(self) -> tuple[datetime, int]:
        self.calls += 1
        await self.gate.wait()
        if self.fail:
            raise RuntimeError("the store is down")
        return T0 + timedelta(seconds=self.calls), self.calls


class Ticking:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


async def test_the_first_page_waits_later_ones_get_the_last_figures_and_start_one_refresh() -> None:
    compute, clock = Counting(), Ticking()
    snapshot = Snapshot(compute, every_s=10, name="overview", monotonic=clock)
    assert await snapshot.get() == (T0 + timedelta(seconds=1), 1)
    clock.t += 9
    assert await snapshot.get() == (T0 + timedelta(seconds=1), 1)
    assert compute.calls == 1
    # Past the interval: the page still answers at once with what there is, and one refresh runs.
    clock.t += 2
    compute.gate.clear()
    assert await snapshot.get() == (T0 + timedelta(seconds=1), 1)
    assert await snapshot.get() == (T0 + timedelta(seconds=1), 1)
    await wait_for(lambda: _true(compute.calls == 2), within=5, what="the refresh to start")
    compute.gate.set()
    await wait_for(lambda: _true(snapshot.value is not None and snapshot.value[1] == 2), within=5, what="it")
    assert await snapshot.get() == (T0 + timedelta(seconds=2), 2)
    assert compute.calls == 2
    await snapshot.close()


async def test_a_failed_refresh_keeps_the_last_figures_and_is_tried_again() -> None:
    compute, clock = Counting(), Ticking()
    snapshot = Snapshot(compute, every_s=10, name="overview", monotonic=clock)
    await snapshot.get()
    compute.fail = True
    clock.t += 11
    assert (await snapshot.get())[1] == 1
    await wait_for(
        lambda: _true(compute.calls == 2 and snapshot._task is not None and snapshot._task.done()),
        within=5,
        what="the failed refresh",
    )
    assert (await snapshot.get())[1] == 1
    compute.fail = False
    await wait_for(
        lambda: _true(snapshot.value is not None and snapshot.value[1] == 3), within=5, what="the retry"
    )
    await snapshot.close()


async def test_with_no_interval_every_page_computes_and_a_first_failure_is_the_pages() -> None:
    compute = Counting()
    snapshot = Snapshot(compute, every_s=0, name="overview")
    assert (await snapshot.get())[1] == 1
    assert (await snapshot.get())[1] == 2
    compute.fail = True
    with pytest.raises(RuntimeError):
        await Snapshot(compute, every_s=10, name="report").get()


async def test_the_default_report_is_computed_as_the_console_starts_and_other_filters_when_asked() -> None:
    asked: list[ReportKey] = []

    async def report(key: ReportKey) -> tuple[datetime, dict[str, object]]:
        asked.append(key)
        return T0, {"generated_at": T0.isoformat()}

    reports = Reports(report, every_s=300)
    reports.start()
    await wait_for(lambda: _true(asked == [DEFAULT_REPORT]), within=5, what="the default report")
    assert await reports.get(DEFAULT_REPORT) == (T0, {"generated_at": T0.isoformat()})
    week: ReportKey = ("7d", "", ("telegram",))
    await reports.get(week)
    await reports.get(week)
    assert asked == [DEFAULT_REPORT, week]
    await reports.close()


def _figure(snapshot: Snapshot[int]) -> int | None:
    return None if snapshot.value is None else snapshot.value[1]


async def _true(value: bool) -> bool:
    return value
