"""The receive loop of the queue consumers (requests and acknowledgements), and how it rides out outages.

Both consumers take a batch, hand it to their handler, and go on until the stop event is set. What
they survive, they survive the same way:

* The broker restarting or dropping the connection: :class:`~notifier.intake.amqp.AmqpQueue`'s
  robust connection reconnects and restores the consumer by itself. Deliveries of the lost channel
  are never settled (the broker hands them over again and the store absorbs the repeat). What can
  still fail while the broker is away is a publish (the copy of a dead letter on ``<queue>.dead``)
  or starting to consume: the handler hands back what it has not settled and raises
  :class:`~notifier.errors.QueueUnavailable`; the loop logs ``queue.unavailable``, waits and
  receives again.
* The store restarting: the handler waits it out with its deliveries in hand and unacknowledged
  (:func:`notifier.backoff.while_store_unavailable`), and hands them back only if the
  daemon stops meanwhile (:class:`~notifier.backoff.Stopped`). Handing them back at every
  failed try instead would count a delivery each time against the quorum queue's
  ``x-delivery-limit``, after which the broker dead-letters a message rather than deliver it again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import structlog

from notifier.backoff import Backoff, Stopped, pause
from notifier.errors import QueueUnavailable
from notifier.ports import Delivery, IntakeQueue

log = structlog.get_logger("notifier.intake")

# How long an idle receive waits before checking the stop event again.
RECEIVE_WAIT_SECONDS = 0.2

# A batch handler settles (acks or dead-letters) every delivery it is given, or hands back
# (releases) those it has not settled before it raises.
BatchHandler = Callable[[Sequence[Delivery], asyncio.Event], Awaitable[object]]


async def consume(
    *,
    queue: IntakeQueue,
    queue_name: str,
    batch_size: int,
    handle: BatchHandler,
    stop: asyncio.Event,
    wait: float = RECEIVE_WAIT_SECONDS,
    backoff: Backoff | None = None,
) -> None:
    """Receive from ``queue_name`` and hand each batch to ``handle`` until ``stop`` is set.

    Stops consuming on the way out (also when cancelled), so the broker gives what is still
    buffered to another consumer.
    """
    backoff = backoff if backoff is not None else Backoff(first=0.5, cap=10.0)
    loop = asyncio.get_running_loop()
    try:
        while not stop.is_set():
            try:
                asked = loop.time()
                deliveries = await queue.receive(queue_name, max_messages=batch_size, wait=wait)
                if deliveries:
                    await handle(deliveries, stop)
                elif (rest := wait - (loop.time() - asked)) > 0 and await pause(stop, rest):
                    # Empty before its wait was over: the queue has stopped consuming (the other
                    # consumer of the same connection stopped it on its way out). Without the
                    # wait this loop would never give the event loop back, and the daemon would
                    # hang, busy, instead of stopping.
                    break
            except Stopped:
                break
            except QueueUnavailable as error:
                delay = backoff.failed()
                log.warning(
                    "queue.unavailable",
                    queue=queue_name,
                    error=str(error),
                    failures=backoff.failures,
                    retry_in_s=round(delay, 2),
                )
                if await pause(stop, delay):
                    break
                continue
            backoff.succeeded()
    finally:
        await queue.stop_consuming()
