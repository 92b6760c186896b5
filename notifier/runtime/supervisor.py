"""Supervised background tasks with a graceful stop.

Every long-running part of the daemon is a named task that takes the shared stop event. On
SIGTERM/SIGINT the event is set: tasks stop taking work and finish what is in flight; whatever is
still running after the grace period is cancelled (tasks hand their unfinished work back when
cancelled). A task that dies on its own stops the daemon loudly rather than leaving it half alive.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger("notifier.runtime")

TaskFactory = Callable[[asyncio.Event], Awaitable[None]]


class Supervisor:
    def __init__(self, *, grace: float) -> None:
        self.stop = asyncio.Event()
        self._grace = grace
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._failed: list[str] = []

    def spawn(self, name: str, factory: TaskFactory) -> None:
        task = asyncio.create_task(self._guard(name, factory), name=name)
        self._tasks[name] = task

    async def _guard(self, name: str, factory: TaskFactory) -> None:
        try:
            await factory(self.stop)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("task.crashed", task=name)
            self._failed.append(name)
            self.stop.set()
            return
        if not self.stop.is_set():
            log.error("task.exited", task=name)
            self._failed.append(name)
            self.stop.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def remove_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.stop.is_set():
            return
        log.info("shutdown.requested", signal=sig.name, grace_s=self._grace)
        self.stop.set()

    async def abort(self) -> None:
        """Stop at once, for a start that failed half-way: every task spawned so far is cancelled
        and awaited, so none is left using a store or queue that is about to be closed."""
        self.stop.set()
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def wait(self) -> bool:
        """Run until stopped, then drain. Returns True when every task ended cleanly."""
        await self.stop.wait()
        tasks = list(self._tasks.values())
        done, pending = await asyncio.wait(tasks, timeout=self._grace) if tasks else (set(), set())
        for task in pending:
            log.warning("task.cancelled_after_grace", task=task.get_name())
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=max(5.0, self._grace))
        log.info("shutdown.complete", finished=len(done), cancelled=len(pending))
        return not self._failed
