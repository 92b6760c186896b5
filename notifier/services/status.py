"""What ``notifier status`` reports (SPEC §3): counts, conflicts, dead letters, or single records."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from notifier.domain.manual import ManualRecord
from notifier.domain.models import NoticeState, RequestState, StoredRequest, format_timestamp
from notifier.domain.notices import Notice
from notifier.domain.sla import SlaFacts, paused
from notifier.ports import AckRecord, Store

DEAD_LETTERS_LISTED = 100
HISTORY_LISTED = 500  # acknowledgements and manual records shown per notice


def _filled(
    counts: dict[str, dict[str, int]], platforms: Iterable[str], states: Iterable[str]
) -> dict[str, Any]:
    """Every configured platform and every state present, 0 when empty; unconfigured platforms
    still found in the store are kept so nothing stored goes unreported."""
    names = list(platforms) + sorted(set(counts) - set(platforms))
    state_list = list(states)
    return {p: {s: counts.get(p, {}).get(s, 0) for s in state_list} for p in names}


def _ts(value: Any) -> str | None:
    return format_timestamp(value) if value is not None else None


async def overview(store: Store, platforms: Sequence[str]) -> dict[str, Any]:
    counts = await store.status_counts()
    conflicts = await store.conflicts(limit=DEAD_LETTERS_LISTED)
    dead_letters = await store.dead_letters(limit=DEAD_LETTERS_LISTED)
    return {
        "requests": _filled(counts.requests, platforms, (s.value for s in RequestState)),
        "notices": _filled(counts.notices, platforms, (s.value for s in NoticeState)),
        "conflicts": [{"request_id": c.request_id, "at": _ts(c.at), "source": c.source} for c in conflicts],
        "dead_letters_total": counts.dead_letters_total,
        "dead_letters": [
            {"source": d.source, "reason": d.reason, "at": _ts(d.at), "request_id": d.request_id}
            for d in dead_letters
        ],
    }


def paused_seconds(notice: Notice | None, now: datetime) -> int:
    """How long the removal clock of a notice's requests stood still for clarifications, every
    pause summed (whole seconds; the current one up to ``now`` while it is unanswered)."""
    if notice is None:
        return 0
    facts = SlaFacts(
        delivered_at=notice.delivered_at,
        acknowledged_at=notice.acknowledged_at,
        open_requests=0,
        clarification_requested_at=notice.clarification_requested_at,
        clarified_at=notice.clarified_at,
        earlier_paused=timedelta(seconds=notice.earlier_paused_s),
    )
    return int(paused(facts, now=now).total_seconds())


def request_view(stored: StoredRequest, notice: Notice | None, *, now: datetime) -> dict[str, Any]:
    """One request; ``deadline`` is its deadline profile (None: its platform's bounds) and
    ``paused_s`` how long a clarification stopped its removal clock (SPEC §14)."""
    request = stored.request
    return {
        "request_id": request.request_id,
        "platform": request.platform,
        "state": stored.state.value,
        "notice_id": stored.notice_id,
        "priority": request.priority.value,
        "category": request.category,
        "urls": list(request.urls),
        "ingested_at": _ts(stored.ingested_at),
        "delivered_at": _ts(stored.delivered_at),
        "acknowledged_at": _ts(stored.acknowledged_at),
        "resolved_at": _ts(stored.resolved_at),
        "deadline": request.deadline,
        "paused_s": paused_seconds(notice, now),
    }


def notice_view(notice: Notice) -> dict[str, Any]:
    return {
        "notice_id": notice.notice_id,
        "platform": notice.platform,
        "channel": notice.channel,
        "state": notice.state.value,
        "request_ids": list(notice.request_ids),
        "ticket": notice.ticket,
        "message_id": notice.message_id,
        "attempts": [
            {
                "at": _ts(a.at),
                "channel": a.channel,
                "outcome": a.outcome.value,
                "code": a.code,
                "detail": a.detail,
                "duration_ms": a.duration_ms,
            }
            for a in notice.attempts
        ],
        "created_at": _ts(notice.created_at),
        "next_attempt_at": _ts(notice.next_attempt_at)
        if notice.state in (NoticeState.QUEUED, NoticeState.RETRYING)
        else None,
        "delivered_at": _ts(notice.delivered_at),
        "receipt_at": _ts(notice.receipt_at),
        "acknowledged_at": _ts(notice.acknowledged_at),
        "last_error": notice.last_error,
    }


async def lookup(store: Store, ids: Sequence[str], *, now: datetime) -> dict[str, Any]:
    """Requests and notices by id; ids found nowhere are listed as unknown."""
    requests = await store.get_requests(ids)
    notices = await store.get_notices(ids)
    found = {r.request.request_id for r in requests} | {n.notice_id for n in notices}
    theirs = {n.notice_id: n for n in await store.get_notices([r.notice_id for r in requests if r.notice_id])}
    by_request = await store.manual_records([r.request.request_id for r in requests], of="request")
    views = []
    for stored in requests:
        view = request_view(stored, theirs.get(stored.notice_id or ""), now=now)
        view.update(await verification_view(store, stored.request.request_id))
        view["manual_records"] = [manual_view(m) for m in by_request.get(stored.request.request_id, [])]
        views.append(view)
    by_notice = await store.manual_records([n.notice_id for n in notices], limit=HISTORY_LISTED)
    notice_views = []
    for notice in notices:
        view = notice_view(notice)
        history = await store.ack_history(notice.notice_id, limit=HISTORY_LISTED)
        view["acknowledgements"] = [ack_view(a) for a in history]
        view["manual_records"] = [manual_view(m) for m in by_notice.get(notice.notice_id, [])]
        notice_views.append(view)
    return {
        "requests": views,
        "notices": notice_views,
        "unknown": [i for i in ids if i not in found],
    }


def ack_view(ack: AckRecord) -> dict[str, Any]:
    """One acknowledgement as received or entered (SPEC §15): ``at`` is the time it claims (the
    one that counts), ``entered_at`` and ``by`` who typed it in and when (None for the platform's
    own), ``dkim`` what the receiving server said of an email reply's signature. The operator's
    note is not shown: it may name a victim."""
    return {
        "source": ack.source,
        "status": ack.status,
        "outcome": ack.outcome,
        "at": _ts(ack.received_at),
        "entered_at": _ts(ack.entered_at),
        "by": ack.by,
        "manual": ack.manual,
        "ticket": ack.ticket,
        "items": json.loads(ack.items) if ack.items else [],
        "dkim": ack.dkim,
    }


def manual_view(record: ManualRecord) -> dict[str, Any]:
    """A retry, portal submission, clarification answer or withdrawal entered by hand."""
    return {
        "action": record.action.value,
        "source": record.source.value,
        "notice_id": record.notice_id,
        "request_id": record.request_id,
        "at": _ts(record.at),
        "entered_at": _ts(record.entered_at),
        "by": record.by,
    }


async def verification_view(store: Store, request_id: str) -> dict[str, Any]:
    """What the checks found (SPEC §13): verified removal, re-appearance (and the new notices that
    re-listed it), false claims, the newest checks and the earlier requests of the same URL or
    evidence on the platform."""
    found = await store.request_verification(request_id)
    if found is None:
        return {}
    return {
        "verified_removed_at": _at(found.verified_removed_at),
        "reappeared_at": _at(found.reappeared_at),
        "false_claims": found.false_claims,
        "checks": [check.as_dict() for check in found.checks],
        "linked_requests": found.linked_requests,
        # Later notices that listed it again: content back after a verified removal.
        "renotices": found.renotices,
    }


def _at(moment: datetime | None) -> str | None:
    return format_timestamp(moment) if moment is not None else None
