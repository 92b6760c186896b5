"""Dispatch's ports: the channels a notice goes out on, and the store's side of batching and sending."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

from notifier.domain.batching import Pending, PendingGroup
from notifier.domain.evidence import EvidenceRecord
from notifier.domain.manual import Entry
from notifier.domain.models import TakedownRequest
from notifier.domain.notices import Attempt, Notice, NoticeContent, SendResult
from notifier.domain.withdrawal import WithdrawalStep


class Channel(Protocol):
    """One way of sending to one platform: its email address, its API endpoint, or its portal.

    ``send`` returns when the platform (or the outbox, for a portal) has taken the message, and
    raises :class:`notifier.failures.DeliveryError` otherwise, classified transient or permanent.
    Sending the same notice again is safe: it carries the same notice id, ``Message-ID`` and
    ``Idempotency-Key``.
    """

    name: str  # "email", "api" or "manual"

    async def send(self, content: NoticeContent) -> SendResult: ...

    async def close(self) -> None: ...


class NoticeStore(Protocol):
    """The store's side of batching and dispatch. Every method is one short transaction; none is
    held open across network I/O. Work is claimed with leases judged by the store's own clock.
    Every change of a notice's or its requests' state appends a ``state`` entry to the evidence
    ledger in its transaction, with the attempt and what the channel sent (``Attempt.evidence``)."""

    async def pending_summary(self, platform: str) -> Pending:
        """Count, oldest ``ingested_at`` and urgent count of the platform's ``pending`` requests."""
        ...

    async def pending_groups(self, platform: str) -> list[PendingGroup]:
        """The platform's ``pending`` requests per deadline profile (None first: the platform's
        bounds), each with its count, oldest ``ingested_at`` and urgent count."""
        ...

    async def form_notice(
        self,
        platform: str,
        *,
        max_items: int,
        channel: str,
        now: datetime,
        deliver_by: datetime,
        deadline: str | None = None,
        urgent: bool = False,
        urgent_only: bool = False,
    ) -> Notice | None:
        """Atomically turn up to ``max_items`` pending requests of the deadline profile ``deadline``
        (None: those judged by the platform's bounds; urgent first, then oldest; with
        ``urgent_only`` the urgent ones only) into a notice of that profile: allocate the
        platform's next sequence number, insert the notice (``queued``, ``next_attempt_at = now``,
        urgent when ``urgent`` is given or it holds an urgent request), move the requests to
        ``batched`` with its id. Every request ends in exactly one notice, also with several
        processes (SKIP LOCKED on PostgreSQL, BEGIN IMMEDIATE on SQLite). None when nothing is
        pending."""
        ...

    async def form_claimed(
        self,
        platform: str,
        *,
        max_items: int,
        channel: str,
        now: datetime,
        deliver_by: datetime,
        owner: str,
        lease: timedelta,
        deadline: str | None = None,
        urgent: bool = False,
        urgent_only: bool = False,
    ) -> tuple[Notice, list[TakedownRequest]] | None:
        """:meth:`form_notice`, the notice claimed as it is formed (``sending`` under ``owner``'s
        lease, as :meth:`claim_due` would leave it), returned with its requests in batch order:
        its maker sends it at once, with no claim and no read in between."""
        ...

    async def withdraw(
        self,
        request_ids: Sequence[str],
        *,
        at: datetime,
        reason: str,
        entry: Entry | None = None,
        evidence: Sequence[EvidenceRecord] = (),
    ) -> list[WithdrawalStep]:
        """Withdraw each request (SPEC §14) as :func:`notifier.domain.withdrawal.plan_withdrawal`
        says, each a compare-and-set on its state: an unsent one leaves its notice (a notice left
        empty is settled and never sent), a sent one becomes ``withdrawn`` in it (a notice with none
        left open is resolved). The steps taken and refused; unknown ids left out. ``evidence`` (the
        staff action) is appended to the ledger with the new states, in the same transaction."""
        ...

    async def claim_due(
        self, *, owner: str, now: datetime, lease: timedelta, limit: int, urgent_only: bool = False
    ) -> list[Notice]:
        """Claim notices to send: ``queued``/``retrying`` ones whose ``next_attempt_at <= now``
        (business time), and ``sending`` ones whose lease has expired by the store's clock (a
        process died mid-send); urgent ones before any other (only urgent ones with
        ``urgent_only``). They become ``sending`` with ``owner`` and a lease of ``lease``;
        returned urgent first, then in due order."""
        ...

    async def next_attempt_due(self) -> datetime | None:
        """The earliest ``next_attempt_at`` of any ``queued`` or ``retrying`` notice (business time),
        so the dispatcher can sleep on the clock until a durable retry falls due."""
        ...

    async def notice_requests(self, notice_id: str) -> list[TakedownRequest]:
        """The requests of a notice, in the order they were batched; withdrawn ones left out."""
        ...

    async def record_delivery(
        self,
        notice_id: str,
        *,
        owner: str,
        attempt: Attempt,
        result: SendResult,
        channel: str,
        delivered_at: datetime | None = None,
        first_check_at: datetime | None = None,
    ) -> bool:
        """``sending`` → ``delivered`` (requests → ``delivered``, ``delivered_at``: the instant the notice
        stated its deadlines from, else ``attempt.at``; their URL-check timer ``first_check_at``, else
        the delivery time) or,
        when ``result.awaiting_submission``, → ``awaiting_submission`` (requests stay ``batched``).
        Keeps the Message-ID, the ticket (and ``receipt_at``) and the attempt. False, changing
        nothing, when ``owner`` no longer holds the lease."""
        ...

    async def record_failure(
        self,
        notice_id: str,
        *,
        owner: str,
        attempt: Attempt,
        channel: str,
        next_attempt_at: datetime | None,
        deliver_by: datetime,
        fallback_used: bool,
    ) -> bool:
        """Keep the attempt; then ``retrying`` at ``next_attempt_at`` on ``channel`` (which may now be
        the fallback, with its own ``deliver_by``), or, when ``next_attempt_at`` is None,
        ``failed`` with its requests. False, changing nothing, when the lease is lost."""
        ...

    async def record_attempt(self, notice_id: str, *, owner: str, attempt: Attempt) -> None:
        """Keep an attempt that changes no state (a short in-call retry that failed)."""
        ...

    async def renew_lease(self, notice_id: str, *, owner: str, lease: timedelta) -> bool:
        """Extend ``owner``'s claim to ``lease`` from now (the store's clock) while its send runs;
        False when the claim is no longer ``owner``'s (it ran out and another process took it)."""
        ...

    async def release(self, notice_id: str, *, owner: str, until: datetime | None = None) -> None:
        """Give a claimed notice back: its lease ends now and it is due again at once (shutdown)
        or at ``until`` (waiting for a rate-limit slot without holding a lease or a send slot)."""
        ...

    async def get_notices(self, notice_ids: Sequence[str]) -> list[Notice]:
        """Notices with their request ids and attempts (unknown ids are left out)."""
        ...

    async def retry_failed(
        self,
        notice_id: str,
        *,
        now: datetime,
        deliver_by: datetime,
        entry: Entry | None = None,
        evidence: Sequence[EvidenceRecord] = (),
    ) -> Notice | None:
        """``failed`` → ``queued`` on its primary channel, due now, requests back to ``batched``;
        None when the notice is unknown or not failed. With ``entry``, a manual record of it in the
        same transaction."""
        ...

    async def mark_submitted(
        self,
        notice_id: str,
        *,
        at: datetime,
        ticket: str | None,
        entry: Entry | None = None,
        evidence: Sequence[EvidenceRecord] = (),
    ) -> Notice | None:
        """Staff submitted a portal notice: ``awaiting_submission`` → ``delivered`` at ``at``,
        requests → ``delivered``. None when the notice is unknown or not awaiting submission.
        With ``entry``, a manual record of it in the same transaction."""
        ...

    async def unalerted_failures(self, *, limit: int) -> list[Notice]:
        """Failed notices whose operations alert has not been sent yet (durable alerting)."""
        ...

    async def mark_alerted(self, notice_id: str, *, at: datetime) -> None: ...

    async def take_rate_slot(self, platform: str, *, per_minute: int) -> float:
        """A token bucket shared by every process: 0 when a notice may go now (the slot is taken),
        else the seconds to wait before asking again. Judged by the store's clock."""
        ...
