"""Batching: the pending requests of each platform and deadline profile become notices (SPEC §6, §14).

A notice closes when it is full, when its oldest request has waited long enough, or at once when an
urgent request waits (then it holds the urgent requests only, so that it is a small, quick send).
Each notice is committed with its membership before anything is sent: the store is the outbox.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta

import structlog

from notifier.clock import Clock
from notifier.domain.batching import decide
from notifier.domain.deadlines import batch_wait
from notifier.domain.models import TakedownRequest
from notifier.domain.notices import Notice
from notifier.metrics import Metrics
from notifier.ports import Store
from notifier.services.routes import Route
from notifier.waiting import earliest

log = structlog.get_logger("notifier.dispatch")


class UrgentSlots:
    """The dispatcher's send slots that only urgent notices may use: while one is ``free()``, the
    batcher forms urgent notices claimed by ``owner`` for ``lease`` and hands each over, with its
    requests, to ``start``."""

    def __init__(
        self,
        *,
        owner: str,
        lease: timedelta,
        slots: int,
        start: Callable[[Notice, Sequence[TakedownRequest]], None],
    ) -> None:
        self.owner = owner
        self.lease = lease
        self.in_flight: set[asyncio.Task[None]] = set()
        self._slots = slots
        self.start = start

    def free(self) -> int:
        return self._slots - len(self.in_flight)


class Batcher:
    def __init__(
        self,
        *,
        store: Store,
        routes: Mapping[str, Route],
        clock: Clock,
        metrics: Metrics,
        deliver_within: timedelta,
    ) -> None:
        self._store = store
        self._routes = routes
        self._clock = clock
        self._metrics = metrics
        self._deliver_within = deliver_within

    async def form_notices(self) -> datetime | None:
        """Close every notice that is due now; return the earliest time one will be due.

        A notice holds requests of one deadline profile (SPEC §14): each profile's pending requests
        batch on their own, waiting at most 5 % of the profile's acknowledgement bound (an urgent
        profile not at all)."""
        wake_at, _ = await self.form_some(None)
        return wake_at

    async def form_some(self, budget: int | None) -> tuple[datetime | None, bool]:
        """Close up to ``budget`` notices that are due now (None: all of them), so that sending
        can start while a backlog is still being batched. Returns when the next one will be due
        and whether more are due already (the budget ran out)."""
        wake_at: datetime | None = None
        left = budget
        for route in self._routes.values():
            for group in await self._store.pending_groups(route.platform):
                if left is not None and left <= 0:
                    return None, True
                next_at, formed, more = await self._form(route, group.deadline, left)
                if more:
                    return None, True
                if left is not None:
                    left -= formed
                wake_at = earliest(wake_at, next_at)
        return wake_at, False

    async def _form(
        self, route: Route, deadline: str | None, budget: int | None
    ) -> tuple[datetime | None, int, bool]:
        """Close up to ``budget`` due notices of one platform and profile: when the next one will
        be due, how many were closed, and whether more are due already (past the budget)."""
        profile = route.profile(deadline)
        max_wait = batch_wait(route.max_wait, profile)
        urgent_profile = profile is not None and profile.urgent
        formed = 0
        while True:
            if budget is not None and formed >= budget:
                return None, formed, True
            now = self._clock.now()
            groups = {g.deadline: g.pending for g in await self._store.pending_groups(route.platform)}
            summary = groups.get(deadline)
            if summary is None:
                return None, formed, False
            decision = decide(summary, now=now, max_items=route.max_items, max_wait=max_wait)
            if not decision.close:
                return decision.wake_at, formed, False
            # Full notices close whatever the time: as many as the count holds close one after
            # the other, without counting the pending requests again before each.
            full = summary.count // route.max_items if decision.reason == "full" else 1
            for _ in range(full):  # at least one: a full count holds max_items or more
                if budget is not None and formed >= budget:
                    return None, formed, True
                # Urgent requests of a normal profile leave at once in a notice of their own:
                # taking the others along would make the urgent notice wait for a bigger send.
                notice = await self._close(
                    route,
                    deadline,
                    urgent=urgent_profile,
                    urgent_only=decision.reason == "urgent" and not urgent_profile,
                )
                if notice is None:
                    return None, formed, False  # another process took them
                formed += 1
                if len(notice.request_ids) < route.max_items:
                    break  # another process took some: count again

    async def form_urgent(
        self, groups: Iterable[tuple[str, str | None]] | None = None, sends: UrgentSlots | None = None
    ) -> None:
        """Close at once the notices of the waiting urgent requests: of the (platform, deadline
        profile) ``groups`` named (where intake has just stored some), else of every platform and
        profile (a query per platform to find them). While ``sends`` has a free slot, each notice
        is formed claimed by it and handed to it, with no claim in between."""
        if groups is None:
            groups = [
                (route.platform, group.deadline)
                for route in self._routes.values()
                for group in await self._store.pending_groups(route.platform)
                if group.pending.urgent or self._urgent_profile(route, group.deadline)
            ]
        for platform, deadline in sorted(groups, key=lambda g: (g[0], g[1] or "")):
            route = self._routes.get(platform)
            if route is None:
                continue
            urgent_profile = self._urgent_profile(route, deadline)
            while True:
                if sends is not None and sends.free() > 0:
                    formed = await self._claimed(route, deadline, urgent_profile, sends)
                    notice = formed[0] if formed is not None else None
                    if formed is not None:
                        sends.start(*formed)
                else:
                    notice = await self._close(
                        route, deadline, urgent=urgent_profile, urgent_only=not urgent_profile
                    )
                if notice is None or len(notice.request_ids) < route.max_items:
                    break

    @staticmethod
    def _urgent_profile(route: Route, deadline: str | None) -> bool:
        profile = route.profile(deadline)
        return profile is not None and profile.urgent

    async def _claimed(
        self, route: Route, deadline: str | None, urgent_profile: bool, sends: UrgentSlots
    ) -> tuple[Notice, list[TakedownRequest]] | None:
        """Form one urgent notice claimed for ``sends``, with its requests; None when none waits."""
        now = self._clock.now()
        formed = await self._store.form_claimed(
            route.platform,
            max_items=route.max_items,
            channel=route.primary.name,
            now=now,
            deliver_by=now + self._deliver_within,
            owner=sends.owner,
            lease=sends.lease,
            deadline=deadline,
            urgent=urgent_profile,
            urgent_only=not urgent_profile,
        )
        if formed is not None:
            self._created(route, formed[0], deadline)
        return formed

    async def _close(
        self, route: Route, deadline: str | None, *, urgent: bool, urgent_only: bool
    ) -> Notice | None:
        """Form one notice of ``route``'s pending requests of profile ``deadline`` (see
        :meth:`notifier.ports.NoticeStore.form_notice`); None when another process took them."""
        now = self._clock.now()
        notice = await self._store.form_notice(
            route.platform,
            max_items=route.max_items,
            channel=route.primary.name,
            now=now,
            deliver_by=now + self._deliver_within,
            deadline=deadline,
            urgent=urgent,
            urgent_only=urgent_only,
        )
        if notice is not None:
            self._created(route, notice, deadline)
        return notice

    def _created(self, route: Route, notice: Notice, deadline: str | None) -> None:
        """Count and log a notice formed."""
        reason = (
            "urgent"
            if notice.urgent
            else ("full" if len(notice.request_ids) >= route.max_items else "waited")
        )
        self._metrics.notices.labels(platform=route.platform, reason=reason).inc()
        log.info(
            "notice.created",
            notice_id=notice.notice_id,
            platform=route.platform,
            channel=notice.channel,
            requests=len(notice.request_ids),
            reason=reason,
            deadline=deadline,
        )
