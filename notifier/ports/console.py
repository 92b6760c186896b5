"""The ports of the operations console (SPEC §16): staff accounts and sessions, and the reads its
pages make. Every read is bounded (indexed ranges, ``LIMIT``): a page costs what it shows, never
what the history holds."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

from notifier.domain.manual import ManualRecord
from notifier.domain.notices import Notice
from notifier.domain.report_acks import is_manual_source


class Role(enum.StrEnum):
    VIEWER = "viewer"  # reads
    OPERATOR = "operator"  # records and retries
    ADMIN = "admin"  # and manages users


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    username: str
    role: Role
    password_hash: str
    disabled: bool = False
    language: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    username: str
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class UserEvent:
    """A change to a staff account: ``action`` is added, role, disabled, enabled or password."""

    at: datetime
    actor: str  # console:NAME, or cli
    username: str
    action: str
    detail: str | None = None  # the new role, for added and role


@dataclass(frozen=True, slots=True, kw_only=True)
class Cutoffs:
    """One platform's windows for the overview, as ``delivered_at`` limits (computed by the service
    from the platform's bounds and the clock): a delivered notice is breached when delivered before
    ``delivered_breached``, due soon when delivered before ``delivered_due``; the same for
    acknowledged notices against the removal bound."""

    delivered_breached: datetime
    delivered_due: datetime
    acknowledged_breached: datetime
    acknowledged_due: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class PlatformFigures:
    breached: int = 0
    due_soon: int = 0
    delivered_today: int = 0
    receipts_today: int = 0
    acks_today: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class AckRecord:
    """One row of a notice's acknowledgement history: who said what, and what it changed."""

    source: str
    status: str
    items: str  # JSON list of {"request_id", "status"}
    ticket: str | None
    received_at: datetime  # the time it claims, the time that counts
    note: str | None
    outcome: str
    by: str | None = None  # who entered it by hand; None for the platform's own
    entered_at: datetime | None = None  # when it was entered by hand
    dkim: str | None = None  # an email reply's DKIM results

    @property
    def manual(self) -> bool:
        """Entered by hand: it names who entered it, or (older rows) came from the CLI or console."""
        return is_manual_source(self.source, self.by)


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchHit:
    kind: str  # "request" or "notice"
    id: str
    platform: str
    state: str
    notice_id: str | None


class UserStore(Protocol):
    async def add_user(self, user: User, *, now: datetime) -> bool:
        """Store a new user; False when the name is taken."""
        ...

    async def get_user(self, username: str) -> User | None: ...

    async def list_users(self) -> list[User]:
        """Every user, by name."""
        ...

    async def update_user(
        self,
        username: str,
        *,
        now: datetime,
        password_hash: str | None = None,
        disabled: bool | None = None,
        language: str | None = None,
        role: Role | None = None,
    ) -> bool:
        """Change what is given; False when there is no such user. Disabling, a new password or a
        new role ends its sessions."""
        ...

    async def record_user_event(self, event: UserEvent) -> None: ...

    async def user_events(self, *, limit: int) -> list[UserEvent]:
        """The latest changes to accounts, newest first."""
        ...

    async def login_locked(self, keys: Sequence[str], *, now: datetime) -> bool:
        """Whether any of ``keys`` (``user:NAME``, ``addr:IP``) is locked out at ``now``."""
        ...

    async def login_failed(
        self, keys: Sequence[str], *, now: datetime, window: timedelta, max_failures: int, lockout: timedelta
    ) -> bool:
        """Count a wrong password against every key; a key with more than ``max_failures`` within
        ``window`` is locked until ``now + lockout``. True when that locked one of them. Counted in
        the store: every process sharing it sees the same failures and lockouts."""
        ...

    async def login_succeeded(self, keys: Sequence[str]) -> None:
        """Forget the wrong passwords counted against ``keys``."""
        ...

    async def create_session(
        self, token_hash: str, *, username: str, csrf_token: str, now: datetime, expires_at: datetime
    ) -> None: ...

    async def get_session(self, token_hash: str, *, now: datetime) -> Session | None:
        """The session, while it has not expired."""
        ...

    async def delete_session(self, token_hash: str) -> None: ...


class ConsoleStore(Protocol):
    async def console_figures(
        self, cutoffs: Mapping[str, Cutoffs], *, day_start: datetime
    ) -> dict[str, PlatformFigures]:
        """Per platform of ``cutoffs``: breached and soon-due notices, and the deliveries, receipts
        and acknowledgements since ``day_start``."""
        ...

    async def breached_notices(self, platform: str, cut: Cutoffs, *, limit: int) -> list[Notice]:
        """The platform's notices past a bound (as :meth:`console_figures` counts them), longest
        delivered first."""
        ...

    async def notices_in_state(self, state: str, *, limit: int) -> list[Notice]:
        """Notices in ``state``, oldest first (the work queue)."""
        ...

    async def ack_history(self, notice_id: str, *, limit: int) -> list[AckRecord]:
        """The acknowledgements received for a notice, in the order received."""
        ...

    async def manual_records(
        self, notice_ids: Sequence[str], *, of: Literal["notice", "request"] = "notice", limit: int = 500
    ) -> dict[str, list[ManualRecord]]:
        """Each notice's manual records other than acknowledgements, oldest first (with
        ``of="request"``, each request's, by request id)."""
        ...

    async def search(self, term: str, *, limit: int) -> list[SearchHit]:
        """Requests and notices whose id or ticket is ``term``, or whose URLs or case reference
        contain it."""
        ...
