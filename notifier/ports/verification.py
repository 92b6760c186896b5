"""The verification service's port (SPEC §13): requests whose checks are due, what the checks saw,
and the follow-ups owed to platforms."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from notifier.domain.verification import UrlCheck, VerifyFacts, VerifyRules


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyClaim:
    """A request whose check timer has come (or named by ``notifier verify``), with its URLs."""

    request_id: str
    platform: str
    notice_id: str | None
    urls: tuple[str, ...]
    facts: VerifyFacts
    reappeared_at: datetime | None
    verify_last: str | None  # ``removed`` / ``live``: the last round that concluded
    contradicted_at: datetime | None
    false_claims: int
    # The timer as the claim set it: :meth:`VerificationStore.record_rounds` moves it on only if it
    # still holds this value (None: not claimed by timer, the timer is set regardless).
    claimed_until: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyUpdate:
    """What one round of checks changes on a request, and where its timer goes next."""

    request_id: str
    platform: str
    checks: tuple[UrlCheck, ...]
    checked_at: datetime | None  # None: no check this time, the timer only moves
    next_at: datetime | None
    claimed_until: datetime | None
    verified_removed_at: datetime | None = None  # set only when this round verified it first
    verify_base: datetime | None = None  # a new phase starts
    verify_last: str | None = None
    reappeared_at: datetime | None = None
    contradicted_at: datetime | None = None  # a false claim: counted once per claim


@dataclass(frozen=True, slots=True, kw_only=True)
class Followup:
    """A message owed to a platform after checks: the URLs still (or again) up."""

    notice_id: str
    seq: int
    kind: str  # ``contradicted`` | ``reappeared``
    request_ids: tuple[str, ...]
    urls: tuple[str, ...]
    decided_at: datetime
    sent_at: datetime | None = None
    message_ref: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Renotice:
    """A new notice owed for content back after a verified removal: the requests of one earlier
    notice found live again, each with only the URLs found live."""

    of_notice: str
    requests: tuple[tuple[str, tuple[str, ...]], ...]  # (request_id, its URLs found live)
    decided_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestVerification:
    """What ``status --json`` shows of a request's verification."""

    verified_removed_at: datetime | None
    reappeared_at: datetime | None
    false_claims: int
    checks: list[UrlCheck] = field(default_factory=list)
    linked_requests: list[str] = field(default_factory=list)
    renotices: list[str] = field(default_factory=list)  # the later notices that re-listed it


class VerificationStore(Protocol):
    """The store's side of verification: durable check timers (``requests.verify_due_at``), the
    checks (never a body), and follow-ups decided once and sent at least once."""

    async def claim_verify_due(self, *, now: datetime, lease: timedelta, limit: int) -> list[VerifyClaim]:
        """Up to ``limit`` requests whose timer is at or before ``now``, earliest first, each
        claimed by pushing its timer to ``now + lease`` in the same transaction."""
        ...

    async def verify_targets(self, ids: Sequence[str]) -> list[VerifyClaim]:
        """The requests named by ``ids`` (request ids, or notice ids for all their requests),
        unclaimed: ``notifier verify`` checks them now."""
        ...

    async def record_rounds(
        self,
        updates: Sequence[VerifyUpdate],
        followups: Sequence[Followup] = (),
        renotices: Sequence[Renotice] = (),
    ) -> list[int]:
        """Keep the checks and each request's new facts and decide the follow-ups and re-notices
        they owe, all in one transaction (a false claim or a re-appearance is never counted
        without its message, nor the other way round); move each timer to ``next_at`` (only where
        it still holds ``claimed_until``, when given). Each follow-up's ``seq`` is ignored: the next
        number of its notice is given, and the numbers are returned in order. Each re-notice is a
        new notice, queued for the dispatcher, whose members are its requests."""
        ...

    async def next_verify_due(self) -> datetime | None:
        """The earliest check timer, or None."""
        ...

    async def add_followup(
        self,
        notice_id: str,
        *,
        kind: str,
        request_ids: Sequence[str],
        urls: Sequence[str],
        at: datetime,
    ) -> int:
        """Record a follow-up owed on ``notice_id``; its number (1, 2, …)."""
        ...

    async def followups(self, *, unsent_only: bool, limit: int = 100) -> list[Followup]:
        """Follow-ups, oldest first (the unsent ones only, when asked)."""
        ...

    async def mark_followup_sent(
        self, notice_id: str, seq: int, *, at: datetime, message_ref: str | None
    ) -> None:
        """Keep when (first) and as what a follow-up went out."""
        ...

    async def renoticed(self, request_id: str) -> bool:
        """Whether a re-appearance of this request was already notified (a re-notice decided)."""
        ...

    async def request_verification(self, request_id: str, *, checks: int = 20) -> RequestVerification | None:
        """The request's verification facts, its newest ``checks`` and its linked earlier requests."""
        ...


class Checker(Protocol):
    """Checks one URL (the prober): what was observed and what it means, never the body."""

    async def check(self, url: str, rules: VerifyRules, *, at: datetime) -> UrlCheck: ...
