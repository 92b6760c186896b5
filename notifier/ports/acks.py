"""The ports of what comes back: where inbound mail goes, and the store's side of acknowledgements,
receipts and bounces (SPEC §7)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from notifier.domain.acks import Ack, AckPlan
from notifier.domain.delivery import DeliveryDecision
from notifier.domain.evidence import EvidenceRecord
from notifier.domain.manual import Entry
from notifier.domain.models import RequestState
from notifier.domain.notices import Attempt, Notice


class MailSink(Protocol):
    """Where inbound mail goes (IMAP reader, inbound SMTP listener): classified, matched, applied."""

    async def handle_mail(
        self, raw: bytes, *, source: str, envelope_recipients: Sequence[str] = ()
    ) -> None: ...


class AckStore(Protocol):
    """The store's side of acknowledgements, receipts and bounces (SPEC §7)."""

    async def ack_context(self, notice_id: str) -> tuple[Notice, dict[str, RequestState]] | None:
        """The notice and the state of each of its requests, or None for an unknown notice."""
        ...

    async def apply_ack(self, ack: Ack, plan: AckPlan) -> bool:
        """Carry out ``plan`` atomically, only if the notice is still in ``plan.notice_before`` and
        every changed request still in its ``before`` state; else change nothing and return False
        (the caller plans again). Sets the notice's ``acknowledged_at``/``resolved_at`` and each
        request's ``acknowledged_at``/``resolved_at`` from the plan, keeps ``ack.ticket`` as the
        notice's ticket when it has none, and records the acknowledgement in the history."""
        ...

    async def record_clarification(
        self,
        notice_id: str,
        *,
        at: datetime,
        entry: Entry | None = None,
        evidence: Sequence[EvidenceRecord] = (),
    ) -> tuple[Notice, bool] | None:
        """Record the authority's answer to a clarification asked about an open notice (SPEC §14):
        ``clarified_at = at`` only while one is asked and unanswered (compare-and-set), its SLA
        timer at ``at`` at the latest. (notice, True) when answered now, (notice, False) when
        answered before, None when none is asked."""
        ...

    async def record_ack_history(self, ack: Ack, *, outcome: str) -> None:
        """Keep an acknowledgement that changed nothing (late, repeated, unknown items), with why."""
        ...

    async def record_receipt(self, notice_id: str, *, at: datetime, ticket: str | None, source: str) -> bool:
        """An automated confirmation (auto-reply, API ticket): set ``receipt_at`` if unset, the
        ticket if the notice has none. False when the notice is unknown."""
        ...

    async def record_bounce(self, notice_id: str, *, attempt: Attempt, delivery: DeliveryDecision) -> bool:
        """A bounce of the notice itself, decided by :func:`notifier.domain.delivery.after_bounce`
        (``retrying`` or ``failed``): only from ``delivery.before`` and only while the notice is still
        on ``attempt.channel``. Its delivered requests go back to ``batched`` (or to ``failed``) with
        ``delivered_at`` cleared, the notice's too: not delivered after all, its SLA clock restarts at
        the next delivery. The bounce is kept as an attempt. False, changing nothing, otherwise."""
        ...

    async def remember_webhook(self, platform: str, webhook_id: str, *, at: datetime) -> bool:
        """True the first time a platform's ``webhook-id`` is seen, False for a replay."""
        ...

    async def webhook_seen(self, platform: str, webhook_id: str) -> bool:
        """Whether a platform's ``webhook-id`` was taken in before (an acknowledgement carrying one,
        ``source = "callback:<platform>"``, is remembered by :meth:`apply_ack` and
        :meth:`record_ack_history` in their own transaction: a replay is refused by either)."""
        ...

    async def remember_mail(self, mailbox: str, uidvalidity: int, uid: int, *, at: datetime) -> bool:
        """True the first time an IMAP message (mailbox, UIDVALIDITY, UID) is seen."""
        ...

    async def remembered_mail(self, mailbox: str, uidvalidity: int, uids: Sequence[int]) -> set[int]:
        """The UIDs among ``uids`` already remembered for that mailbox and UIDVALIDITY (a read)."""
        ...

    async def notice_by_ticket(self, ticket: str, *, platform: str | None = None) -> str | None:
        """The notice a platform's ticket was recorded on (receipts, acknowledgements), if any."""
        ...
