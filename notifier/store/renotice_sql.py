"""Re-notices (SPEC §13) in SQL: a request already in a delivered notice listed again in a new one.

A request belongs to its first notice (``requests.notice_id``): its delivery, acknowledgement and
removal times are that notice's and stay the SLA figures. Content found live again after a verified
removal is notified in a new notice, a row of ``notices`` like any other (queued, so the dispatcher
sends it with its retries, leases and ids), whose requests are rows of ``notice_members`` carrying
only the URLs found live. Delivering it moves no request (it holds none by ``notice_id``), and its
SLA timer judges only the acknowledgement of the re-notice: its removal is the checks' business.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.domain.models import NoticeState, RequestState, TakedownRequest
from notifier.domain.notices import notice_id as make_notice_id
from notifier.ports import Renotice
from notifier.store.ingest import as_utc
from notifier.store.tables import notice_members, notices, requests

NextSequence = Callable[[AsyncConnection, str], Awaitable[int]]


async def add_renotice(conn: AsyncConnection, renotice: Renotice, next_sequence: NextSequence) -> str | None:
    """Queue a new notice for ``renotice`` on the platform, channel and profile of the notice it
    repeats, with the same time to deliver it; its id (None: the earlier notice is unknown)."""
    original = (await conn.execute(select(notices).where(notices.c.notice_id == renotice.of_notice))).first()
    if original is None:
        return None
    now = as_utc(renotice.decided_at)
    sequence = await next_sequence(conn, original.platform)
    new_id = make_notice_id(original.platform, now, sequence)
    await conn.execute(
        notices.insert().values(
            notice_id=new_id,
            platform=original.platform,
            sequence=sequence,
            request_count=len(renotice.requests),
            channel=original.primary_channel,
            primary_channel=original.primary_channel,
            fallback_used=False,
            state=NoticeState.QUEUED.value,
            created_at=now,
            updated_at=now,
            deliver_by=now + (as_utc(original.deliver_by) - as_utc(original.created_at)),
            next_attempt_at=now,
            deadline=original.deadline,
        )
    )
    await conn.execute(
        notice_members.insert(),
        [
            {"notice_id": new_id, "request_id": request_id, "position": position, "urls": json.dumps(urls)}
            for position, (request_id, urls) in enumerate(renotice.requests)
        ],
    )
    return new_id


async def member_requests(conn: AsyncConnection, notice_id: str) -> list[TakedownRequest]:
    """The requests a re-notice lists, each with only the URLs it was re-noticed for."""
    stmt = (
        select(requests.c.body, notice_members.c.urls)
        .join(notice_members, notice_members.c.request_id == requests.c.request_id)
        .where(notice_members.c.notice_id == notice_id, requests.c.state != RequestState.WITHDRAWN.value)
        .order_by(notice_members.c.position)
    )
    listed: list[TakedownRequest] = []
    for body, urls in await conn.execute(stmt):
        request = TakedownRequest.from_canonical(json.loads(body))
        live = set(json.loads(urls))
        kept = tuple(url for url in request.urls if url in live) or request.urls
        listed.append(replace(request, urls=kept))
    return listed


async def members_of(conn: AsyncConnection, notice_ids: Sequence[str]) -> dict[str, list[str]]:
    """The member request ids of each of ``notice_ids`` that is a re-notice, in order."""
    stmt = (
        select(notice_members.c.notice_id, notice_members.c.request_id)
        .where(notice_members.c.notice_id.in_(list(notice_ids)))
        .order_by(notice_members.c.notice_id, notice_members.c.position)
    )
    members: dict[str, list[str]] = {}
    for notice_id, request_id in await conn.execute(stmt):
        members.setdefault(notice_id, []).append(request_id)
    return members


async def renotices_of(conn: AsyncConnection, request_id: str) -> list[str]:
    """The re-notices that listed ``request_id``, oldest first."""
    stmt = (
        select(notice_members.c.notice_id)
        .join(notices, notices.c.notice_id == notice_members.c.notice_id)
        .where(notice_members.c.request_id == request_id)
        .order_by(notices.c.created_at, notices.c.notice_id)
    )
    return list((await conn.execute(stmt)).scalars().all())
