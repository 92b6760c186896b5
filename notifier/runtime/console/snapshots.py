"""Figures the console computes once for everyone, in the background, and shows with their time.

The overview's counts (0.3 s over a million requests) and the compliance report (seconds) cost
too much to compute for each page. A :class:`Snapshot` keeps the last result and the time it
was computed; a page reads it at once and says "as of" that time. When it is older than its
interval, the page still gets it at once, and one refresh starts in the background (never more
than one at a time); only the very first page waits for the figures. ``every_s = 0`` computes for
every page (the tests see each change at once).

:class:`Reports` keeps one snapshot per set of report filters, and refreshes the default report
(the last 30 days, every platform) on its interval whether or not anyone looks, so that the report
page is ready when staff open it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

import structlog

log = structlog.get_logger("notifier.console")

T = TypeVar("T")
# Report filters kept at once; past this the least recently read are forgotten.
_MAX_REPORTS = 16


@dataclass
class Snapshot(Generic[T]):
    compute: Callable[[], Awaitable[tuple[datetime, T]]]  # the figures and their "as of" time
    every_s: float
    name: str
    value: tuple[datetime, T] | None = None
    monotonic: Callable[[], float] = time.monotonic
    _computed: float = 0.0  # ``monotonic()`` of ``value``
    _task: asyncio.Task[tuple[datetime, T]] | None = field(default=None, repr=False)

    async def get(self) -> tuple[datetime, T]:
        """The latest figures with their time; waits only when there are none yet."""
        if self.every_s <= 0:
            return await self.compute()
        if self.value is None:
            return await asyncio.shield(self.refresh())
        if self.monotonic() - self._computed >= self.every_s:
            self.refresh()
        return self.value

    def refresh(self) -> asyncio.Task[tuple[datetime, T]]:
        """Start computing afresh (or join the computation under way)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
            self._task.add_done_callback(_observed)
        return self._task

    async def _run(self) -> tuple[datetime, T]:
        started = time.perf_counter()
        try:
            value = await self.compute()
        except Exception:
            log.exception("console.snapshot_failed", snapshot=self.name)
            raise
        self.value, self._computed = value, self.monotonic()
        log.debug("console.snapshot", snapshot=self.name, seconds=round(time.perf_counter() - started, 3))
        return value

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


def _observed(task: asyncio.Task[Any]) -> None:
    """A background refresh's failure is logged by it; nobody else need collect it."""
    if not task.cancelled():
        task.exception()


ReportKey = tuple[str, str, tuple[str, ...]]  # since, until, platforms (empty: all)
DEFAULT_REPORT: ReportKey = ("30d", "", ())


@dataclass
class Reports:
    """One :class:`Snapshot` of the compliance report per set of filters."""

    compute: Callable[[ReportKey], Awaitable[tuple[datetime, dict[str, Any]]]]
    every_s: float
    _kept: OrderedDict[ReportKey, Snapshot[dict[str, Any]]] = field(default_factory=OrderedDict)
    _loop: asyncio.Task[None] | None = None

    def snapshot(self, key: ReportKey) -> Snapshot[dict[str, Any]]:
        found = self._kept.get(key)
        if found is None:
            found = Snapshot(lambda: self.compute(key), every_s=self.every_s, name=f"report {key}")
            self._kept[key] = found
            while len(self._kept) > _MAX_REPORTS:
                _, dropped = self._kept.popitem(last=False)
                if dropped._task is not None and not dropped._task.done():
                    dropped._task.cancel()
        self._kept.move_to_end(key)
        return found

    async def get(self, key: ReportKey) -> tuple[datetime, dict[str, Any]]:
        return await self.snapshot(key).get()

    def start(self) -> None:
        """Refresh the default report now and on every interval."""
        if self.every_s > 0 and self._loop is None:
            self._loop = asyncio.get_running_loop().create_task(self._keep_fresh())

    async def _keep_fresh(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # logged by the snapshot; tried again next time
                await self.snapshot(DEFAULT_REPORT).refresh()
            await asyncio.sleep(self.every_s)

    async def close(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
            self._loop = None
        for kept in self._kept.values():
            await kept.close()
