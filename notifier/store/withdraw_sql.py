"""The store's side of withdrawal (SPEC §14) in SQL: each request moved to ``withdrawn`` by a
compare-and-set on the state it was planned from, in one transaction with what follows for its
notice (an unsent one loses it; one left with no request is settled)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.domain.evidence import EvidenceRecord
from notifier.domain.manual import Entry, ManualAction
from notifier.domain.models import NoticeState, RequestState
from notifier.domain.withdrawal import (
    UNSENT_NOTICE_STATES,
    WithdrawalKind,
    WithdrawalStep,
    plan_withdrawal,
)
from notifier.store.evidence_writer import EvidenceWriter
from notifier.store.ingest import as_utc
from notifier.store.manual_sql import record_manual
from notifier.store.tables import notices, requests

_FINAL = [
    RequestState.REMOVED.value,
    RequestState.REJECTED.value,
    RequestState.FAILED.value,
    RequestState.WITHDRAWN.value,
]


class WithdrawSqlMixin:
    """:meth:`withdraw` for :class:`notifier.store.sql.SqlStore`."""

    if TYPE_CHECKING:

        def _write(self, action: str) -> AbstractAsyncContextManager[AsyncConnection]: ...

        _evidence: EvidenceWriter

    async def withdraw(
        self,
        request_ids: Sequence[str],
        *,
        at: datetime,
        reason: str,
        entry: Entry | None = None,
        evidence: Sequence[EvidenceRecord] = (),
    ) -> list[WithdrawalStep]:
        """Withdraw each request as :func:`notifier.domain.withdrawal.plan_withdrawal` says, one
        compare-and-set each; the steps taken and refused, in the order asked (unknown ids left
        out). ``reason`` is kept with each withdrawn request; never logged."""
        at = as_utc(at)
        steps: list[WithdrawalStep] = []
        async with self._write("withdraw") as conn:
            for request_id in dict.fromkeys(request_ids):
                row = (
                    await conn.execute(
                        select(requests.c.state, requests.c.notice_id, notices.c.state.label("notice_state"))
                        .select_from(requests.outerjoin(notices, notices.c.notice_id == requests.c.notice_id))
                        .where(requests.c.request_id == request_id)
                    )
                ).first()
                if row is None:
                    continue
                notice_state = NoticeState(row.notice_state) if row.notice_state else None
                step = plan_withdrawal(request_id, RequestState(row.state), row.notice_id, notice_state)
                if step.kind is not None and not await _apply(conn, step, at, reason):
                    step = WithdrawalStep(
                        request_id=request_id,
                        before=step.before,
                        notice_id=step.notice_id,
                        kind=None,
                        refusal="it changed meanwhile: try again",
                    )
                elif step.kind is not None:
                    withdrawn = ManualAction.WITHDRAW
                    notice_id, ids = step.notice_id, [request_id]
                    await record_manual(conn, entry, withdrawn, at=at, notice_id=notice_id, request_ids=ids)
                steps.append(step)
            taken = [step for step in steps if step.kind is not None]
            await self._evidence.record(
                conn,
                at,
                evidence,
                notices_moved=[step.notice_id for step in taken if step.notice_id is not None],
                requests_moved=[step.request_id for step in taken],
            )
        return steps


async def _apply(conn: AsyncConnection, step: WithdrawalStep, at: datetime, reason: str) -> bool:
    values = {"state": RequestState.WITHDRAWN.value, "resolved_at": at, "withdrawal_reason": reason}
    where = [requests.c.request_id == step.request_id, requests.c.state == step.before.value]
    unsent = step.kind is WithdrawalKind.UNSENT
    if unsent and step.notice_id is not None:
        # Out of its batch: only while the notice is still unsent (queued or waiting to retry).
        still_unsent = exists().where(
            notices.c.notice_id == step.notice_id,
            notices.c.state.in_([s.value for s in UNSENT_NOTICE_STATES]),
        )
        where += [requests.c.notice_id == step.notice_id, still_unsent]
    moved = await conn.execute(
        update(requests)
        .where(*where)
        .values(values | ({"notice_id": None, "notice_position": None} if unsent else {}))
        .returning(requests.c.request_id)
    )
    if moved.first() is None:
        return False
    if step.notice_id is not None:
        await _settle_notice(conn, step.notice_id, at, unsent=unsent)
    return True


async def _settle_notice(conn: AsyncConnection, notice_id: str, at: datetime, *, unsent: bool) -> None:
    """Count the notice's requests again; one left with none open is settled (``resolved``): an
    unsent one is then never sent, a sent one owes the SLA nothing more."""
    members = select(func.count()).where(requests.c.notice_id == notice_id).scalar_subquery()
    open_members = (
        select(func.count())
        .where(requests.c.notice_id == notice_id, requests.c.state.not_in(_FINAL))
        .scalar_subquery()
    )
    await conn.execute(update(notices).where(notices.c.notice_id == notice_id).values(request_count=members))
    before = UNSENT_NOTICE_STATES if unsent else {NoticeState.DELIVERED, NoticeState.ACKNOWLEDGED}
    await conn.execute(
        update(notices)
        .where(
            and_(
                notices.c.notice_id == notice_id,
                notices.c.state.in_([s.value for s in before]),
                open_members == 0,
            )
        )
        .values(state=NoticeState.RESOLVED.value, resolved_at=at, updated_at=at, next_attempt_at=None)
    )
