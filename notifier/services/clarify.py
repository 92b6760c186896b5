"""A clarification's answer (SPEC §14): the platform asked the authority to clarify a notice, which
stopped its removal clock; staff answer, the clock runs again for the full bound from that moment,
and the answer goes to the platform the way the notice went (same thread, ``<notice_id>.clarification``
over the API, a file beside a portal notice).

The answer is recorded before it is sent, so a failed send changes no deadline twice: running it
again re-sends the same message (same Message-ID or API id) with the deadline of the first answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

import structlog

from notifier.domain.evidence import EvidenceRecord, staff_record
from notifier.domain.manual import Entry
from notifier.domain.models import TakedownRequest
from notifier.domain.notices import Authority, MessageKind, Notice, SendResult
from notifier.errors import NotifierError
from notifier.failures import DeliveryError
from notifier.services.routes import Route, notice_content

log = structlog.get_logger("notifier.clarify")


class ClarifyStore(Protocol):
    async def record_clarification(
        self,
        notice_id: str,
        *,
        at: datetime,
        entry: Entry | None = None,
        evidence: Sequence[EvidenceRecord] = (),
    ) -> tuple[Notice, bool] | None: ...

    async def record_evidence(self, records: Sequence[EvidenceRecord], *, at: datetime) -> None: ...

    async def notice_requests(self, notice_id: str) -> list[TakedownRequest]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Clarified:
    notice: Notice
    first: bool  # False: answered before; this was a re-send of the same answer
    remove_by: datetime
    result: SendResult


async def send_clarification(
    store: ClarifyStore,
    routes: Mapping[str, Route],
    *,
    notice_id: str,
    note: str,
    now: datetime,
    authority: Authority,
    labels: Mapping[str, str],
    entry: Entry | None = None,
) -> Clarified:
    """Record the answer to ``notice_id``'s clarification at ``now`` and send it; the note is the
    staff's text, sent to the platform and never logged."""
    if not note.strip():
        raise NotifierError("the note is empty: write the answer to the platform's question")
    staff = staff_record("clarify", by=entry.by if entry is not None else "cli", notice_id=notice_id, at=now)
    recorded = await store.record_clarification(notice_id, at=now, entry=entry, evidence=[staff])
    if recorded is None:
        raise NotifierError(f"{notice_id}: no clarification was asked, or the notice is not open")
    notice, first = recorded
    route = routes.get(notice.platform)
    if route is None:
        raise NotifierError(f"platform {notice.platform} is not configured")
    answered_at = notice.clarified_at or now
    requests = await store.notice_requests(notice_id)
    content = notice_content(
        notice,
        route,
        requests,
        authority=authority,
        labels=labels,
        kind=MessageKind.CLARIFICATION,
        sent_at=answered_at,  # the removal deadline runs again in full from the answer
    )
    content = replace(content, note=note)
    try:
        result = await route.channel(notice.channel).send(content)
    except DeliveryError as error:
        await store.record_evidence(error.evidence, at=now)
        raise
    await store.record_evidence(result.evidence, at=now)
    log.info(
        "notice.clarified",
        notice_id=notice_id,
        platform=notice.platform,
        first=first,
        remove_by=content.remove_by.isoformat(),
    )
    return Clarified(notice=notice, first=first, remove_by=content.remove_by, result=result)
