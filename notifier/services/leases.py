"""Claims that hold while their send runs, and outcomes written through a store outage."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

import structlog
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential_jitter

from notifier.errors import StoreUnavailable
from notifier.ports import NoticeStore

log = structlog.get_logger("notifier.dispatch")
_T = TypeVar("_T")


class Lease:
    """Whether a claim was lost while its send ran (a renewal found it taken over)."""

    __slots__ = ("lost",)

    def __init__(self) -> None:
        self.lost = False


@contextlib.asynccontextmanager
async def holding(
    store: NoticeStore, notice_id: str, *, owner: str, lease: timedelta
) -> AsyncIterator[Lease]:
    """Renew ``owner``'s lease on a notice every third of it while the body runs.

    The lease can then be short (a killed process's notice is taken over within it) however long a
    send takes: waiting for an SMTP slot, in-call retries, a slow platform.
    """
    held = Lease()
    every = max(0.05, lease.total_seconds() / 3)

    async def renew() -> None:
        while True:
            await asyncio.sleep(every)
            try:
                if not await store.renew_lease(notice_id, owner=owner, lease=lease):
                    held.lost = True
                    return
            except StoreUnavailable:
                continue  # the outcome's write waits the outage out, or the lease runs out

    renewing = asyncio.create_task(renew(), name=f"lease {notice_id}")
    try:
        yield held
    finally:
        renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewing


async def persist(operation: str, write: Callable[[], Awaitable[_T]], *, lease: timedelta) -> _T:
    """Write an outcome, waiting out a store outage for up to half the lease.

    The send has already happened; losing its record would send it again. Past half the lease the
    write gives up: the lease then expires and the notice is sent again (same notice id, same
    Message-ID), the one duplicate an outage this long can cause.
    """
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(StoreUnavailable),
        wait=wait_exponential_jitter(multiplier=0.1, max=5.0),
        stop=stop_after_delay(lease.total_seconds() / 2),
        reraise=True,
        before_sleep=lambda state: log.warning("store.unavailable", operation=operation),
    ):
        with attempt:
            return await write()
    raise AssertionError("unreachable: AsyncRetrying returns or raises")
