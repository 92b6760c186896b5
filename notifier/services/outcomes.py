"""What a send's outcome changes: decided by :mod:`notifier.domain.delivery`, recorded here."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

import structlog

from notifier.clock import Clock
from notifier.domain.delivery import Channels, DeliveryDecision, Step, after_send
from notifier.domain.notices import Attempt, AttemptOutcome, Notice
from notifier.metrics import Metrics
from notifier.ports import Store
from notifier.services.leases import persist
from notifier.services.routes import Route
from notifier.services.send_attempts import SendOutcome

log = structlog.get_logger("notifier.dispatch")


class Outcomes:
    """Records what became of a claimed notice, as the owner of its lease."""

    def __init__(
        self,
        *,
        store: Store,
        routes: Mapping[str, Route],
        clock: Clock,
        metrics: Metrics,
        deliver_within: timedelta,
        owner: str,
        lease: timedelta,
        rng: random.Random,
        kick: Callable[[], None],
    ) -> None:
        self._store = store
        self._routes = routes
        self._clock = clock
        self._metrics = metrics
        self._deliver_within = deliver_within
        self.owner = owner
        self._lease = lease
        self._rng = rng
        self._kick = kick
        # Called with the platform and the time after a delivery is recorded (the SLA monitor's
        # ``delivered``): a new notice's reminder is planned at once instead of at its next poll.
        self.on_delivered: Callable[[str, datetime], None] | None = None

    async def internal_failure(self, notice: Notice, detail: str) -> None:
        """A fault of notifier itself, not of the platform: backed off like a transient failure."""
        now = self._clock.now()
        attempt = Attempt(
            at=now, channel=notice.channel, outcome=AttemptOutcome.TRANSIENT_ERROR, detail=detail
        )
        route = self._routes.get(notice.platform)
        decision = after_send(
            notice,
            outcome=attempt.outcome,
            at=now,
            channels=route.channels if route is not None else Channels(primary=notice.channel),
            deliver_within=self._deliver_within,
            rng=self._rng,
            reason=detail,
        )
        await self._record_not_delivered(notice, attempt, decision)

    async def record(self, notice: Notice, route: Route, outcome: SendOutcome, sent_at: datetime) -> None:
        error = outcome.error
        decision = after_send(
            notice,
            outcome=outcome.attempt.outcome,
            at=self._clock.now(),
            channels=route.channels,
            deliver_within=self._deliver_within,
            rng=self._rng,
            awaiting_submission=outcome.result is not None and outcome.result.awaiting_submission,
            retry_after=error.retry_after if error is not None else None,
            reason=outcome.attempt.detail,
        )
        if decision.step in (Step.DELIVERED, Step.AWAITING_SUBMISSION):
            assert outcome.result is not None
            await self._delivered(notice, route, outcome, sent_at)
        else:
            await self._record_not_delivered(notice, outcome.attempt, decision)

    async def _delivered(self, notice: Notice, route: Route, outcome: SendOutcome, sent_at: datetime) -> None:
        attempt, result = outcome.attempt, outcome.result
        assert result is not None
        if not await persist(
            "record_delivery",
            lambda: self._store.record_delivery(
                notice.notice_id,
                owner=self.owner,
                attempt=attempt,
                result=result,
                channel=attempt.channel,
                delivered_at=sent_at,
                first_check_at=None if route.first_check_after is None else sent_at + route.first_check_after,
            ),
            lease=self._lease,
        ):
            log.warning("notice.lease_lost", channel=attempt.channel)
            return
        if result.awaiting_submission:
            self._metrics.notice_outcomes.labels(platform=route.platform, outcome="awaiting_submission").inc()
            log.info("notice.awaiting_submission", channel=attempt.channel, outbox=result.detail)
            return
        self._metrics.notice_outcomes.labels(platform=route.platform, outcome="delivered").inc()
        log.info(
            "notice.delivered",
            channel=attempt.channel,
            code=attempt.code,
            message_id=result.message_id,
            ticket=result.ticket,
            requests=len(notice.request_ids),
        )
        if result.ticket:
            log.info("receipt.received", source=attempt.channel, ticket=result.ticket)
        if self.on_delivered is not None:
            self.on_delivered(notice.platform, sent_at)

    async def _record_not_delivered(
        self, notice: Notice, attempt: Attempt, decision: DeliveryDecision
    ) -> None:
        """Keep the failed attempt and carry out the decision: a durable retry, the fallback
        channel, or failure (alerted about at the loop's next turn)."""
        recorded = await persist(
            "record_failure",
            lambda: self._store.record_failure(
                notice.notice_id,
                owner=self.owner,
                attempt=attempt,
                channel=decision.channel,
                next_attempt_at=decision.next_attempt_at if decision.step is not Step.FAIL else None,
                deliver_by=decision.deliver_by,
                fallback_used=decision.fallback_used,
            ),
            lease=self._lease,
        )
        if not recorded:
            log.warning("notice.lease_lost", channel=attempt.channel)
            return
        platform = notice.platform
        if decision.step is Step.RETRY:
            assert decision.next_attempt_at is not None
            log.info(
                "notice.retry_scheduled",
                channel=decision.channel,
                retry_at=decision.next_attempt_at.isoformat(),
            )
        elif decision.step is Step.FALLBACK:
            self._metrics.notice_outcomes.labels(platform=platform, outcome="fallback").inc()
            log.warning(
                "notice.fallback", channel=notice.channel, fallback=decision.channel, detail=attempt.detail
            )
            self._kick()
        elif decision.step is Step.FAIL:
            self._metrics.notice_outcomes.labels(platform=platform, outcome="failed").inc()
            log.error(
                "notice.failed",
                channel=notice.channel,
                detail=attempt.detail,
                requests=len(notice.request_ids),
            )
            self._kick()
