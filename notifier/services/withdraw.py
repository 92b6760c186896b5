"""Withdrawal (SPEC §14): requests decided in error are withdrawn; a request not sent yet leaves its
batch and is never sent, one already sent is withdrawn from its notice and the platform gets one
withdrawal notice per notice (in the notice's thread, ``<notice_id>.withdrawal`` over the API, a
file beside a portal notice). Withdrawn requests stop counting in the SLA figures.

The store moves the states first (compare-and-set); then the notices are sent. Their ids derive
from the notice id, so a re-send after a failure carries the same Message-ID or API id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

import structlog

from notifier.domain.evidence import EvidenceRecord, staff_record
from notifier.domain.manual import Entry
from notifier.domain.models import StoredRequest
from notifier.domain.notices import Authority, MessageKind, Notice
from notifier.domain.withdrawal import WithdrawalKind, WithdrawalStep
from notifier.errors import NotifierError
from notifier.failures import DeliveryError
from notifier.services.routes import Route, notice_content

log = structlog.get_logger("notifier.withdraw")


class WithdrawStore(Protocol):
    async def withdraw(
        self,
        request_ids: Sequence[str],
        *,
        at: datetime,
        reason: str,
        entry: Entry | None = None,
        evidence: Sequence[EvidenceRecord] = (),
    ) -> list[WithdrawalStep]: ...

    async def record_evidence(self, records: Sequence[EvidenceRecord], *, at: datetime) -> None: ...

    async def get_notices(self, notice_ids: Sequence[str]) -> list[Notice]: ...

    async def get_requests(self, request_ids: Sequence[str]) -> list[StoredRequest]: ...


@dataclass(slots=True)
class Withdrawn:
    steps: list[WithdrawalStep]
    notified: list[str] = field(default_factory=list)  # notices a withdrawal notice went out for
    not_sent: dict[str, str] = field(default_factory=dict)  # notice id → why its notice failed


async def withdraw_requests(
    store: WithdrawStore,
    routes: Mapping[str, Route],
    *,
    request_ids: Sequence[str],
    reason: str,
    now: datetime,
    authority: Authority,
    labels: Mapping[str, str],
    entry: Entry | None = None,
) -> Withdrawn:
    """Withdraw ``request_ids`` at ``now`` and tell the platforms of the sent ones; ``reason`` is
    the staff's note, sent to the platform and never logged."""
    if not reason.strip():
        raise NotifierError("the reason is empty: say why the requests are withdrawn")
    by = entry.by if entry is not None else "cli"
    staff = staff_record("withdraw", by=by, request_ids=list(dict.fromkeys(request_ids)), at=now)
    steps = await store.withdraw(request_ids, at=now, reason=reason, entry=entry, evidence=[staff])
    done = Withdrawn(steps=steps)
    sent: dict[str, list[str]] = {}
    for step in steps:
        if step.kind is None:
            continue
        log.info(
            "request.withdrawn", request_id=step.request_id, notice_id=step.notice_id, kind=step.kind.value
        )
        if step.kind is WithdrawalKind.SENT and step.notice_id is not None:
            sent.setdefault(step.notice_id, []).append(step.request_id)
    notices = {n.notice_id: n for n in await store.get_notices(list(sent))}
    for notice_id, withdrawn in sent.items():
        notice = notices.get(notice_id)
        route = routes.get(notice.platform) if notice is not None else None
        if notice is None or route is None:
            done.not_sent[notice_id] = "its platform is not configured"
            continue
        requests = [s.request for s in await store.get_requests(withdrawn)]
        content = notice_content(
            notice, route, requests, authority=authority, labels=labels, kind=MessageKind.WITHDRAWAL
        )
        try:
            result = await route.channel(notice.channel).send(replace(content, note=reason))
        except Exception as error:  # reported to staff, who run it again
            if isinstance(error, DeliveryError):
                await store.record_evidence(error.evidence, at=now)
            detail = getattr(error, "detail", type(error).__name__)
            done.not_sent[notice_id] = str(detail)
            log.warning("notice.withdrawal_not_sent", notice_id=notice_id, detail=str(detail))
            continue
        await store.record_evidence(result.evidence, at=now)
        done.notified.append(notice_id)
        log.info("notice.withdrawal_sent", notice_id=notice_id, requests=len(withdrawn))
    return done
