"""The urgent lane: a process of the daemon's own that takes urgent requests in from their queue,
closes their notices and sends them, and does nothing else.

An urgent request handled by the daemon's process waits for every turn of its event loop, which
under load is busy composing, sending and recording big notices: a dozen such waits on the way
from the queue to the platform. In a process of its own, mostly idle, each step runs as soon as its
answer arrives. The lane shares the store with the daemon as any second daemon process would: the
same claims with leases, the same outcomes; the daemon's own process still sends urgent notices
formed from its main queue, retries and the work of lanes that died.

Started by :class:`notifier.app.Daemon` (``runtime.urgent_process``) through
:class:`notifier.runtime.lane.HelperProcess`; never by hand.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
import sys
from contextlib import AsyncExitStack
from multiprocessing.connection import Connection

import structlog

from notifier.clock import SystemClock
from notifier.logging import configure_logging
from notifier.metrics import Metrics, lane_samples
from notifier.opening import open_store
from notifier.runtime.lane import chaining
from notifier.runtime.supervisor import Supervisor
from notifier.settings import Settings
from notifier.wiring import Channels, create_queue, dispatcher, intake_services

log = structlog.get_logger("notifier.lane")

# How often the lane reports its counters to the daemon's process.
REPORT_EVERY = 1.0
# How often the lane chains the evidence entries it wrote.
CHAIN_EVERY = 0.25


def run_urgent_lane(settings: Settings, reports: Connection, log_level: str) -> None:
    """The lane process's entry point."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the daemon, which stops the lane
    configure_logging(json=True, level=log_level)
    structlog.contextvars.bind_contextvars(lane="urgent")
    sys.exit(asyncio.run(_serve(settings, reports)))


async def _serve(settings: Settings, reports: Connection) -> int:
    clock = SystemClock()
    metrics = Metrics()
    supervisor = Supervisor(grace=settings.runtime.grace.total_seconds())
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, supervisor.stop.set)
    parent = multiprocessing.parent_process()
    if parent is not None:  # the daemon is gone (kill -9 included): drain and end
        loop.add_reader(parent.sentinel, supervisor.stop.set)
    async with AsyncExitStack() as resources:
        try:
            # Its evidence entries wait for a chainer (its own, a quarter of a second later at
            # most, or a daemon's): an urgent request never waits for the ledger head's lock.
            store = await open_store(settings, existing=True, deferred_evidence=True)
            resources.push_async_callback(store.close)
            queue = create_queue(settings)
            resources.push_async_callback(queue.close)
            await queue.connect()
            channels = Channels(settings, clock, compose_processes=0)
            resources.push_async_callback(channels.close)
            sender = dispatcher(
                settings,
                store=store,
                channels=channels,
                routes=channels.routes(),
                clock=clock,
                metrics=metrics,
            )
            _, intake = intake_services(settings, store, queue, clock, metrics)
            # Requests that are not urgent (published to this queue all the same) are stored and
            # left to the daemon's batcher, which looks at its next poll.
            intake.on_accepted = None
            intake.on_urgent = sender.kick_urgent
        except BaseException:
            await supervisor.abort()
            raise
        supervisor.spawn("intake-urgent", intake.run)

        async def send(stop: asyncio.Event) -> None:
            try:
                await sender.run_urgent(stop)
            finally:
                await sender.drain()  # within the grace: past it, the sends hand their notices back

        supervisor.spawn("dispatch-urgent", send)
        supervisor.spawn("reports", lambda stop: _report(metrics, reports, stop))
        supervisor.spawn("evidence-chain", chaining(store, every=CHAIN_EVERY))
        log.info("lane.started", queue=settings.queue.urgent_requests, owner=sender.owner)
        clean = await supervisor.wait()
    log.info("lane.stopped", clean=clean)
    return 0 if clean else 1


async def _report(metrics: Metrics, reports: Connection, stop: asyncio.Event) -> None:
    while True:
        try:
            reports.send(lane_samples(metrics.registry))
        except (BrokenPipeError, OSError):
            stop.set()  # the daemon's end is closed (it is gone, kill -9 included): drain and end
            return
        if stop.is_set():
            return  # the last report went out above
        try:
            await asyncio.wait_for(stop.wait(), timeout=REPORT_EVERY)
        except TimeoutError:
            continue
