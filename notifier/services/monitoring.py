"""The gauges of open items and of the oldest open age on ``/metrics`` (SPEC §10).

They are read from the store at scrape time, not kept in the process: the store is the truth, and
every daemon sharing it then reports the same values, however many there are and however recently
one restarted. The read is one short transaction of indexed queries
(:meth:`notifier.ports.MonitoringStore.open_items`); ages are taken on the daemon's clock, so a
simulated clock moves them too.

A scrape never fails because of the store: when it cannot be read in time, the gauges are left out
for that scrape, ``notifier_open_items_up`` is 0, a warning is logged, and every other metric is
served as usual.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime

import structlog

from notifier.clock import Clock
from notifier.domain.models import OPEN_NOTICE_STATES, OPEN_REQUEST_STATES
from notifier.errors import StoreUnavailable
from notifier.metrics import OpenItemsCollector, OpenItemsSnapshot
from notifier.ports import MonitoringStore, OpenItems

log = structlog.get_logger("notifier.metrics")

# Transport time, not business time: well inside Prometheus's default 10 s scrape timeout, so a
# store that hangs costs the open-item gauges of one scrape and not the whole scrape.
READ_TIMEOUT_S = 5.0

UNDELIVERED = "undelivered"
UNACKNOWLEDGED = "unacknowledged"


def _age_seconds(now: datetime, since: datetime | None) -> float:
    """Seconds from ``since`` to ``now``; 0 when nothing is open or the clock stepped back."""
    return 0.0 if since is None else max(0.0, (now - since).total_seconds())


def open_items_snapshot(items: OpenItems, *, platforms: Sequence[str], now: datetime) -> OpenItemsSnapshot:
    """The gauge values for ``platforms``: every open state and kind present, 0 when empty, so a
    platform with nothing open still shows (and an alert on it has a series to judge)."""
    requests: dict[tuple[str, str], int] = {}
    notices: dict[tuple[str, str], int] = {}
    oldest: dict[tuple[str, str], float] = {}
    for platform in dict.fromkeys(platforms):
        request_counts = items.requests.get(platform, {})
        for request_state in OPEN_REQUEST_STATES:
            requests[platform, request_state.value] = request_counts.get(request_state.value, 0)
        notice_counts = items.notices.get(platform, {})
        for notice_state in OPEN_NOTICE_STATES:
            notices[platform, notice_state.value] = notice_counts.get(notice_state.value, 0)
        oldest[platform, UNDELIVERED] = _age_seconds(now, items.oldest_undelivered.get(platform))
        oldest[platform, UNACKNOWLEDGED] = _age_seconds(now, items.oldest_unacknowledged.get(platform))
    return OpenItemsSnapshot(requests=requests, notices=notices, oldest_seconds=oldest)


class OpenItemsMonitor:
    """Refreshes the open-item gauges from the store; ``/metrics`` awaits :meth:`refresh` first."""

    def __init__(
        self,
        *,
        store: MonitoringStore,
        clock: Clock,
        platforms: Sequence[str],
        collector: OpenItemsCollector,
        timeout: float = READ_TIMEOUT_S,
    ) -> None:
        self._store = store
        self._clock = clock
        self._platforms = list(dict.fromkeys(platforms))
        self._collector = collector
        self._timeout = timeout

    async def refresh(self) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                items = await self._store.open_items(self._platforms)
        except (StoreUnavailable, TimeoutError) as error:
            reason = str(error) or f"no answer within {self._timeout:g} s"
            log.warning("metrics.open_items_unavailable", error=reason)
            self._collector.snapshot = None
            return
        self._collector.snapshot = open_items_snapshot(
            items, platforms=self._platforms, now=self._clock.now()
        )
