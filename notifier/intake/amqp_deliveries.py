"""Deliveries of the AMQP intake queue and how they are settled.

Delivery tags count up from 1 on each channel, and a robust reconnect opens a new channel, so what
has been settled is tracked per channel: a batch whose tags follow on from everything already
settled is acknowledged with one ``multiple`` frame, and deliveries of a channel that has gone are
skipped (the broker hands those messages over again). Each consumed queue has a channel of its own
and a buffer of the deliveries not yet handed over.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiormq.abc
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustChannel, AbstractRobustQueue, ConsumerTag
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError

# A settle that races a connection loss fails with one of these; the broker redelivers.
_GONE = (ChannelInvalidStateError, AMQPError, ConnectionError)


@dataclass(slots=True, eq=False)
class ChannelAcks:
    """What has been settled on one (underlying) channel: delivery tags count up from 1 per channel.

    Every tag up to ``settled_upto`` is settled, and so is every tag in ``settled_above``.
    """

    channel: aiormq.abc.AbstractChannel
    settled_upto: int = 0
    settled_above: set[int] = field(default_factory=set)

    def unsettled(self, tags: set[int]) -> list[int]:
        return sorted(t for t in tags if t > self.settled_upto and t not in self.settled_above)

    def covers_all_up_to(self, tags: list[int]) -> bool:
        """Whether settling ``tags[-1]`` with ``multiple`` settles exactly ``tags`` (and no other
        delivery still in the consumer's hands): every tag in between is in ``tags`` or settled."""
        last = tags[-1]
        settled_between = sum(1 for t in self.settled_above if t < last)
        return last - self.settled_upto == len(tags) + settled_between

    def mark(self, tags: list[int], *, multiple: bool) -> None:
        if multiple:
            last = tags[-1]
            self.settled_upto = last
            self.settled_above = {t for t in self.settled_above if t > last}
        else:
            self.settled_above.update(tags)
        while self.settled_upto + 1 in self.settled_above:
            self.settled_upto += 1
            self.settled_above.remove(self.settled_upto)


@dataclass(slots=True, eq=False)
class AmqpHandle:
    queue: str
    message: AbstractIncomingMessage
    acks: ChannelAcks
    tag: int


async def settle(handles: Sequence[AmqpHandle], *, requeue: bool | None) -> None:
    """Ack (``requeue=None``) or nack the deliveries, channel by channel, in as few frames as safe.

    Deliveries of a closed channel, and deliveries already settled, are skipped.
    """
    by_channel: dict[int, tuple[ChannelAcks, set[int]]] = {}
    for handle in handles:
        by_channel.setdefault(id(handle.acks), (handle.acks, set()))[1].add(handle.tag)
    for acks, tag_set in by_channel.values():
        channel = acks.channel
        if channel.is_closed:
            continue
        tags = acks.unsettled(tag_set)
        if not tags:
            continue
        multiple = len(tags) > 1 and acks.covers_all_up_to(tags)
        to_send = [tags[-1]] if multiple or len(tags) == 1 else tags
        try:
            for index, tag in enumerate(to_send):
                last = index == len(to_send) - 1  # wait for the socket once, after the last frame
                if requeue is None:
                    await channel.basic_ack(tag, multiple=multiple, wait=last)
                else:
                    await channel.basic_nack(tag, multiple=multiple, requeue=requeue, wait=last)
        except _GONE:
            continue
        acks.mark(tags, multiple=multiple)


@dataclass(slots=True, eq=False)
class Consumer:
    """One queue being consumed, on a channel of its own (delivery tags and prefetch are per channel)."""

    queue_name: str
    channel: AbstractRobustChannel
    buffer: asyncio.Queue[AmqpHandle] = field(default_factory=asyncio.Queue)
    acks: ChannelAcks | None = None
    queue: AbstractRobustQueue | None = None
    tag: ConsumerTag | None = None
    active: bool = True

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            channel = message.channel
        except ChannelInvalidStateError:
            return  # its channel is gone already: the broker hands the message over again
        acks = self.acks
        if acks is None or acks.channel is not channel:
            # A robust reconnect opened a new channel: its delivery tags start again from 1.
            acks = self.acks = ChannelAcks(channel)
        tag = message.delivery_tag
        if tag is None:  # only no-ack consumers get untagged deliveries; ours acknowledges
            return
        handle = AmqpHandle(queue=self.queue_name, message=message, acks=acks, tag=tag)
        if self.active:
            self.buffer.put_nowait(handle)
        else:
            # Arrived between basic.cancel and its answer: give it back to another consumer now.
            await settle([handle], requeue=True)

    def take(self, max_messages: int) -> list[AmqpHandle]:
        """Up to ``max_messages`` buffered deliveries, dropping those of a channel that has gone."""
        taken: list[AmqpHandle] = []
        while len(taken) < max_messages and not self.buffer.empty():
            handle = self.buffer.get_nowait()
            if not handle.acks.channel.is_closed:
                taken.append(handle)
        return taken
