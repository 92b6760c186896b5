"""A daemon whose start fails half-way stops the services it had started before it closes what they
use: :meth:`Supervisor.abort` returns only once every task has ended."""

from __future__ import annotations

import asyncio

from notifier.runtime.supervisor import Supervisor


async def test_abort_cancels_every_task_and_waits_for_each_to_end() -> None:
    supervisor = Supervisor(grace=30)
    ended: list[str] = []
    started = asyncio.Event()

    async def service(stop: asyncio.Event) -> None:
        try:
            started.set()
            await asyncio.Event().wait()  # a service busy with the store, never looking at ``stop``
        finally:
            await asyncio.sleep(0)  # its clean-up takes a turn of the loop
            ended.append("service")

    supervisor.spawn("service", service)
    await asyncio.wait_for(started.wait(), timeout=5)

    await supervisor.abort()

    assert ended == ["service"]
    assert supervisor.stop.is_set()
