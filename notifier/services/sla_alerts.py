"""The operations staff's side of the SLA (SPEC §7, the authority's own clock): a portal notice
rendered and left unfiled past ``sla.file_within`` is an ``undelivered`` breach, and its reminder
goes to the operations staff through the operations alerts, never to the platform.

The breach is decided like the platform's (once, in the store); this module sends its reminder at
least once, under one Message-ID derived from the notice id (``<id>.unfiled``), so a re-send after a
failure is recognisably the same alert.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import structlog

from notifier.clock import Clock
from notifier.domain.notices import Notice
from notifier.domain.sla import SlaBounds
from notifier.errors import StoreUnavailable
from notifier.failures import DeliveryError
from notifier.metrics import Metrics
from notifier.ports import SlaDecision, SlaStore
from notifier.services.alerts import OperationsAlerts

log = structlog.get_logger("notifier.sla")


class UnfiledAlerts:
    """Reminds the operations staff of portal notices nobody has filed."""

    def __init__(
        self,
        *,
        store: SlaStore,
        alerts: OperationsAlerts | None,
        bounds: Mapping[str, SlaBounds],
        clock: Clock,
        metrics: Metrics,
        owner: str,
    ) -> None:
        self._store = store
        self._alerts = alerts
        self._bounds = dict(bounds)
        self._clock = clock
        self._metrics = metrics
        self._owner = owner

    async def alert(self, notice: Notice, platform_name: str, decisions: Sequence[SlaDecision]) -> bool:
        """Send the reminder of the undelivered breaches ``decisions`` (claimed by this monitor) and
        mark them sent; False, handing them back unsent, when the alert could not go out."""
        kinds = [d.kind.value for d in decisions]
        if self._alerts is None:
            # Nowhere to send it: said once in the log, and not tried again (the breach stands).
            log.error(
                "alert.not_configured", notice_id=notice.notice_id, platform=notice.platform, decisions=kinds
            )
            for decision in decisions:
                await self._store.drop_decision(
                    notice.notice_id, decision.kind, owner=self._owner, at=self._clock.now()
                )
            return True
        bound = self._bounds[notice.platform].file_within
        rendered = min(d.due_at for d in decisions) - bound
        subject = f"notifier: notice {notice.notice_id} to {platform_name} is not filed"
        text = (
            f"Notice {notice.notice_id} to {platform_name} ({len(notice.request_ids)} requests) was "
            f"rendered for the platform's portal at {rendered.isoformat(timespec='seconds')} and has "
            f"not been filed within {bound}. Its requests are not delivered until it is.\n\n"
            "Submit it on the portal, then record the submission with:\n"
            f"    notifier ack {notice.notice_id} --status submitted\n"
        )
        try:
            ref = await self._alerts.alert(subject=subject, text=text, key=f"{notice.notice_id}.unfiled")
        except StoreUnavailable:
            raise
        except Exception as error:
            # A delivery failure or a fault of notifier itself: tried again later, same Message-ID.
            detail = (
                error.detail
                if isinstance(error, DeliveryError)
                else f"internal error: {type(error).__name__}"
            )
            self._metrics.sla_sends.labels(platform=notice.platform, kind="alert", outcome="failed").inc()
            log.warning(
                "sla.send_failed",
                notice_id=notice.notice_id,
                platform=notice.platform,
                kind="alert",
                decisions=kinds,
                channel="operations",
                detail=detail,
            )
            for decision in decisions:
                await self._store.release_decision(decision.notice_id, decision.kind, owner=self._owner)
            return False
        at = self._clock.now()
        for decision in decisions:
            await self._store.mark_decision_sent(decision.notice_id, decision.kind, at=at, message_ref=ref)
        self._metrics.sla_sends.labels(platform=notice.platform, kind="alert", outcome="sent").inc()
        self._metrics.alerts.labels(kind="notice_unfiled").inc()
        log.info(
            "sla.unfiled_alerted",
            notice_id=notice.notice_id,
            platform=notice.platform,
            decisions=kinds,
            message_id=ref,
        )
        return True
