"""The port behind the gauges of ``/metrics``: what is still open, per platform."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenItems:
    """What is still open, per platform, for the gauges of ``/metrics`` (SPEC §10).

    Only the platforms asked about appear, and only the states and ages that have rows: callers
    fill the zeros. Times are as stored; the caller turns them into ages with its clock.
    """

    # platform → state (one of OPEN_REQUEST_STATES / OPEN_NOTICE_STATES) → count
    requests: dict[str, dict[str, int]]
    notices: dict[str, dict[str, int]]
    # platform → ``ingested_at`` of its oldest request not delivered yet (pending or batched)
    oldest_undelivered: dict[str, datetime]
    # platform → ``delivered_at`` of its oldest request delivered and not acknowledged (delivered)
    oldest_unacknowledged: dict[str, datetime]


class MonitoringStore(Protocol):
    async def open_items(self, platforms: Sequence[str]) -> OpenItems:
        """Counts of the requests and notices of ``platforms`` not in a final state, and the oldest
        undelivered and unacknowledged request of each. Runs on every scrape of ``/metrics``, so it
        reads indexes only: its cost grows with the open items, never with the history."""
        ...
