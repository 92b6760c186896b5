"""Alerts to the authority's operations staff about notifier's own failures (SPEC §6.4).

A failed notice is alerted once, durably: the store remembers which failures were alerted, so a
restart neither loses nor repeats an alert. Alerts go by email to ``authority.operations_email``.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import structlog

from notifier.clock import Clock
from notifier.errors import TransientError
from notifier.failures import DeliveryError
from notifier.metrics import Metrics
from notifier.ports import Store

log = structlog.get_logger("notifier.dispatch")


class OperationsAlerts(Protocol):
    """Where alerts about notifier's own failures go (the authority's operations staff)."""

    async def alert(self, *, subject: str, text: str, key: str) -> str: ...


class FailureAlerter:
    def __init__(
        self, *, store: Store, alerts: OperationsAlerts | None, clock: Clock, metrics: Metrics
    ) -> None:
        self._store = store
        self._alerts = alerts
        self._clock = clock
        self._metrics = metrics
        self._alert_failures = 0
        self._alerts_paused_until = 0.0

    async def send_pending(self) -> None:
        """Tell the operations staff about failed notices, once each, durably.

        An alert that cannot go out (the mail server is down too) is tried again after a pause
        that doubles up to ten minutes; the failure stays in the store and in the logs meanwhile.
        """
        loop_time = asyncio.get_running_loop().time()
        if loop_time < self._alerts_paused_until:
            return
        failures = await self._store.unalerted_failures(limit=20)
        for notice in failures:
            if self._alerts is None:
                log.error("alert.not_configured", notice_id=notice.notice_id, platform=notice.platform)
                await self._store.mark_alerted(notice.notice_id, at=self._clock.now())
                continue
            subject = f"notifier: notice {notice.notice_id} to {notice.platform} failed"
            text = (
                f"Notice {notice.notice_id} to {notice.platform} could not be delivered and has failed.\n"
                f"Requests: {len(notice.request_ids)}\n"
                f"Last channel: {notice.channel}\n"
                f"Last error: {notice.last_error or '-'}\n\n"
                f"After fixing the cause (address, credentials, platform endpoint), send it again with:\n"
                f"    notifier retry {notice.notice_id}\n"
            )
            try:
                await self._alerts.alert(subject=subject, text=text, key=f"{notice.notice_id}.failed")
            except (DeliveryError, TransientError) as error:
                self._alert_failures += 1
                pause = min(600.0, 5.0 * 2 ** (self._alert_failures - 1))
                self._alerts_paused_until = loop_time + pause
                log.error("alert.failed", notice_id=notice.notice_id, detail=str(error), retry_in_s=pause)
                return
            self._alert_failures = 0
            await self._store.mark_alerted(notice.notice_id, at=self._clock.now())
            self._metrics.alerts.labels(kind="notice_failed").inc()
            log.info("alert.sent", notice_id=notice.notice_id, platform=notice.platform)
