"""A helper process of the daemon's (the urgent lane): started with it, restarted if it dies,
stopped with it, and its metrics served by the daemon's ``/metrics`` as the daemon's own.

The helper runs ``target(*args, reports, log_level)`` in a fresh interpreter (the ``spawn`` start
method: nothing of the daemon's event loop, connections or threads is inherited). ``reports`` is
the writing end of a pipe over which it sends its counters now and then
(:func:`notifier.metrics.lane_samples`). It ends on SIGTERM after draining, and on its own when
the daemon's process is gone, however that ended (``kill -9`` included).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import sys
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import structlog

from notifier.errors import StoreUnavailable
from notifier.metrics import LaneSamples
from notifier.ports import EvidenceStore

log = structlog.get_logger("notifier.runtime")

# A helper that dies is started again after this long, doubling while it keeps dying young.
FIRST_RESTART = 1.0
LAST_RESTART = 30.0
# A helper that ran this long before it died was healthy: the next restart waits FIRST_RESTART.
HEALTHY_AFTER = 60.0


class HelperProcess:
    def __init__(
        self,
        name: str,
        target: Callable[..., None],
        args: tuple[Any, ...],
        *,
        grace: float,
        samples: LaneSamples,
    ) -> None:
        self.name = name
        self._target = target
        self._args = args
        self._grace = grace
        self._samples = samples
        self._process: BaseProcess | None = None
        # The helper is started from a thread of its own, made now: a process takes the priority
        # of the thread that starts it, and the daemon's own thread may lower its priority after
        # this (lower_priority) without the helper's restarts inheriting that.
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name} spawner")
        self._spawner.submit(lambda: None).result()

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.is_alive() else None

    async def run(self, stop: asyncio.Event) -> None:
        """The supervisor's task: keep one helper running until ``stop``, then stop it."""
        restart = FIRST_RESTART
        loop = asyncio.get_running_loop()
        try:
            while not stop.is_set():
                began = loop.time()
                code = await self._run_once(stop)
                if stop.is_set():
                    break
                restart = FIRST_RESTART if loop.time() - began >= HEALTHY_AFTER else restart
                log.error("helper.exited", helper=self.name, exit_code=code, restart_in_s=restart)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=restart)
                restart = min(LAST_RESTART, restart * 2)
        finally:
            self._spawner.shutdown(wait=False)

    async def _run_once(self, stop: asyncio.Event) -> int | None:
        context = multiprocessing.get_context("spawn")
        reading, writing = context.Pipe(duplex=False)
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()
        process = context.Process(
            target=self._target, args=(*self._args, writing, level), name=f"notifier {self.name}", daemon=True
        )
        try:
            await asyncio.get_running_loop().run_in_executor(self._spawner, process.start)
        except BaseException:
            writing.close()
            reading.close()
            raise
        writing.close()  # the helper holds the only writing end: its exit ends the reports
        self._process = process
        log.info("helper.started", helper=self.name, pid=process.pid)
        relay = asyncio.create_task(self._relay(reading), name=f"{self.name} reports")
        exited = _exit_of(process)
        stopping = asyncio.create_task(stop.wait())
        either: set[asyncio.Future[Any]] = {exited, stopping}
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if not exited.done():
                process.terminate()  # SIGTERM: the helper drains within the same grace as the daemon
                await asyncio.wait({exited}, timeout=self._grace + 5)
            if exited.done():
                await asyncio.to_thread(process.join, 5)  # reaped: its exit code is known
            return process.exitcode
        finally:
            stopping.cancel()
            if process.is_alive():
                process.kill()
                await asyncio.wait({exited}, timeout=5)
            exited.cancel()
            await asyncio.gather(relay, return_exceptions=True)
            reading.close()
            self._samples.retire()

    async def _relay(self, reading: Connection) -> None:
        """Keep the helper's latest counters until it closes its end of the pipe."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                samples = await loop.run_in_executor(None, _receive, reading)
            except (EOFError, OSError):
                return
            self._samples.report(samples)


def _receive(reading: Connection) -> Any:
    # A report is only read once it is wholly there, so a dead helper's half-written one is dropped.
    return reading.recv()


def _exit_of(process: BaseProcess) -> asyncio.Future[None]:
    """A future done when ``process`` has exited (its sentinel is readable)."""
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()
    sentinel = process.sentinel

    def readable() -> None:
        loop.remove_reader(sentinel)
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(sentinel, readable)
    exited.add_done_callback(lambda _: loop.remove_reader(sentinel))
    return exited


def lower_priority(nice: int) -> bool:
    """Lower the CPU priority of the calling thread (the daemon's event loop) by ``nice``, and so
    of the threads and processes it starts from now on. On Linux only, where a thread's priority
    is its own: a helper started from its own thread keeps the priority the daemon started with.
    Returns whether it was lowered."""
    if nice <= 0 or sys.platform != "linux":
        return False
    thread = threading.get_native_id()
    current = os.getpriority(os.PRIO_PROCESS, thread)
    os.setpriority(os.PRIO_PROCESS, thread, min(19, current + nice))
    return True


def chaining(store: EvidenceStore, *, every: float) -> Callable[[asyncio.Event], Awaitable[None]]:
    """A supervisor task that chains the evidence entries waiting in the store (the daemon's and
    its urgent lane's) every ``every`` seconds; any process that takes the ledger head chains them
    too, before its own."""

    async def chain() -> None:
        try:
            chained = await store.chain_pending_evidence()
        except StoreUnavailable as error:
            log.warning("store.unavailable", operation="chain_pending_evidence", error=str(error))
        else:
            if chained:
                log.debug("evidence.chained", entries=chained)

    async def run(stop: asyncio.Event) -> None:
        while not stop.is_set():
            await chain()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every)
        await chain()  # what the last moments wrote, before the store closes

    return run
