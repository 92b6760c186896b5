"""Withdrawal of a request decided in error (SPEC §14): which requests may be withdrawn, and how.

A request not sent yet (pending, or batched into a notice still queued or waiting to be retried)
leaves its batch and is never sent. One already delivered stays in its notice, and the platform is
told by one withdrawal notice. One in a notice being sent right now, or rendered for the portal and
not filed, cannot be withdrawn until that settles; a final one (removed, rejected, failed,
withdrawn) has nothing to withdraw. Pure: the states come in, the plan goes out.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from notifier.domain.models import NoticeState, RequestState

UNSENT_NOTICE_STATES = frozenset({NoticeState.QUEUED, NoticeState.RETRYING})
SENT_REQUEST_STATES = frozenset({RequestState.DELIVERED, RequestState.ACKNOWLEDGED})


class WithdrawalKind(enum.StrEnum):
    UNSENT = "unsent"  # leaves its batch: the platform never hears of it
    SENT = "sent"  # the platform is told by a withdrawal notice


@dataclass(frozen=True, slots=True, kw_only=True)
class WithdrawalStep:
    """What withdrawing one request does: ``kind`` None and a ``refusal`` when it may not."""

    request_id: str
    before: RequestState
    notice_id: str | None
    kind: WithdrawalKind | None
    refusal: str = ""


def plan_withdrawal(
    request_id: str, state: RequestState, notice_id: str | None, notice_state: NoticeState | None
) -> WithdrawalStep:
    """How ``request_id`` (in ``state``, in notice ``notice_id`` in ``notice_state``) is withdrawn."""

    def step(kind: WithdrawalKind | None, refusal: str = "") -> WithdrawalStep:
        return WithdrawalStep(
            request_id=request_id, before=state, notice_id=notice_id, kind=kind, refusal=refusal
        )

    if state is RequestState.PENDING:
        return step(WithdrawalKind.UNSENT)
    if state is RequestState.BATCHED:
        if notice_state in UNSENT_NOTICE_STATES:
            return step(WithdrawalKind.UNSENT)
        if notice_state is NoticeState.AWAITING_SUBMISSION:
            return step(None, f"its portal notice {notice_id} waits to be filed: record it first")
        return step(None, f"its notice {notice_id} is being sent: try again in a moment")
    if state in SENT_REQUEST_STATES:
        return step(WithdrawalKind.SENT)
    return step(None, f"it is already {state.value}")
