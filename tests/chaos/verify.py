"""The verifier of a chaos run: what the sandbox received and what the store holds, checked against
SPEC §12. Each check holds or not; :func:`report` prints the checklist.

- nothing lost: every request published is stored, or dead-lettered with a reason;
- every request in exactly one notice, of its platform, within the batch size;
- every notice the store calls delivered reached its platform (filed, for the portal);
- duplicate deliveries only for sends interrupted after the platform took them (a kill -9, a
  PostgreSQL restart, the server going down, a SIGTERM) and then with the same notice id and
  Message-ID (Idempotency-Key on the API);
- no notice stuck: all delivered (and on), or failed with a reason;
- every reminder and breach that fell due decided once, sent (or dropped: acknowledged first), and
  no reminder or escalation reached a platform without its decision;
- each daemon ready again (``/readyz`` 200) within 30 s of each restart, of itself or a service;
- SIGTERM under load: a clean exit within the grace period; no task of a daemon died.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.parser import BytesHeaderParser as HeaderParser
from typing import Any

from sqlalchemy import select

from notifier.sandbox.smtp import Received
from notifier.store import SqlStore
from notifier.store.tables import acks, dead_letters, notices, request_conflicts, requests, sla_decisions
from tests.chaos.driver import Record
from tests.chaos.plan import PLATFORMS

# A send interrupted after the platform took it: the copy arrived at most this long before the
# interruption began (the time from the server's acceptance to the recorded delivery, under load).
ACCEPTED_BEFORE = 10.0
# An acknowledgement this close to a bound may have been judged on either side of it.
EDGE = 1.5
INTERRUPTIONS = ("kill -9", "PostgreSQL restart", "SIGTERM")
MESSAGE_ID = re.compile(r"<(TD-[a-z0-9_]+-\d{8}-\d{6,})\.([a-z0-9-]+)@")
SETTLED = {"delivered", "acknowledged", "resolved"}
REMINDER, ACK_BREACH, REMOVAL_BREACH = "reminder", "ack_breach", "removal_breach"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    holds: bool
    detail: str


def _ts(value: datetime | None) -> float | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


async def _rows(store: SqlStore, *columns: Any) -> list[Any]:
    async with store.engine.connect() as conn:
        return list((await conn.execute(select(*columns))).all())


async def verify(record: Record, store: SqlStore) -> list[Check]:
    plan = record.plan
    reqs = await _rows(
        store, requests.c.request_id, requests.c.platform, requests.c.state, requests.c.notice_id
    )
    ns = await _rows(
        store,
        notices.c.notice_id,
        notices.c.platform,
        notices.c.channel,
        notices.c.state,
        notices.c.request_count,
        notices.c.message_id,
        notices.c.delivered_at,
        notices.c.acknowledged_at,
        notices.c.resolved_at,
        notices.c.last_error,
    )
    dead = await _rows(store, dead_letters.c.reason, dead_letters.c.body_sha256)
    conflicts = await _rows(store, request_conflicts.c.request_id)
    decisions = await _rows(
        store,
        sla_decisions.c.notice_id,
        sla_decisions.c.kind,
        sla_decisions.c.sent_at,
        sla_decisions.c.dropped_at,
        sla_decisions.c.decided_at,
        sla_decisions.c.due_at,
    )
    ack_rows = await _rows(store, acks.c.notice_id, acks.c.outcome)
    by_notice = {n.notice_id: n for n in ns}
    checks = [
        _nothing_lost(record, reqs, dead, conflicts),
        _one_notice_each(record, reqs, ns),
        _delivered_reached(record, ns),
        _duplicates(record, by_notice),
        _nothing_stuck(reqs, ns),
        _sla(record, ns, decisions, ack_rows, plan.ack_within, plan.removal_within, plan.remind_at),
        _ready(record),
        _clean_stops(record),
    ]
    return checks


def _nothing_lost(record: Record, reqs: list[Any], dead: list[Any], conflicts: list[Any]) -> Check:
    valid, invalid = record.bodies.valid, record.bodies.invalid
    stored = {r.request_id for r in reqs}
    dead_by_hash = {d.body_sha256: d.reason for d in dead}
    broker_dead = {hashlib.sha256(body).hexdigest(): headers for body, headers in record.broker_dead}
    missing, dead_valid = [], []
    for request_id, body in valid.items():
        if request_id in stored:
            continue
        digest = hashlib.sha256(body).hexdigest()
        if dead_by_hash.get(digest) or broker_dead.get(digest, {}).get("x-death"):
            dead_valid.append(request_id)
        else:
            missing.append(request_id)
    unreasoned = [b for b in invalid if not dead_by_hash.get(hashlib.sha256(b).hexdigest())]
    strangers = sorted(stored - set(valid))
    holds = not missing and not unreasoned and not strangers and not conflicts and not dead_valid
    detail = (
        f"{len(valid) + len(invalid)} published: {len(stored & set(valid))}/{len(valid)} valid requests "
        f"stored, {len(invalid) - len(unreasoned)}/{len(invalid)} malformed ones dead-lettered with a reason"
    )
    if missing or dead_valid or unreasoned or strangers or conflicts:
        detail += (
            f"; LOST {missing[:5]} ({len(missing)}), valid but dead-lettered {dead_valid[:5]}, "
            f"malformed without a reason {len(unreasoned)}, never published {strangers[:5]}, "
            f"conflicts {len(conflicts)}"
        )
    return Check("nothing lost", holds, detail)


def _one_notice_each(record: Record, reqs: list[Any], ns: list[Any]) -> Check:
    members = Counter(r.notice_id for r in reqs)
    loose = [r.request_id for r in reqs if r.notice_id is None]
    by_notice = {n.notice_id: n for n in ns}
    wrong_count = [n.notice_id for n in ns if members.get(n.notice_id, 0) != n.request_count]
    wrong_platform = [
        r.request_id for r in reqs if r.notice_id and by_notice[r.notice_id].platform != r.platform
    ]
    max_items = {p.id: p.max_items for p in PLATFORMS}
    oversized = [n.notice_id for n in ns if n.request_count > max_items[n.platform]]
    holds = not (loose or wrong_count or wrong_platform or oversized) and bool(ns)
    detail = f"{len(reqs)} requests in {len(ns)} notices"
    if not holds:
        detail += (
            f"; in no notice {loose[:5]} ({len(loose)}), counts differ {wrong_count[:5]}, "
            f"wrong platform {wrong_platform[:5]}, over the batch size {oversized[:5]}"
        )
    return Check("every request in exactly one notice", holds, detail)


def _notice_emails(record: Record) -> dict[str, list[tuple[float, str, tuple[str, ...]]]]:
    """The notices' own emails (not reminders or escalations) by notice id: (time, Message-ID, to)."""
    found: dict[str, list[tuple[float, str, tuple[str, ...]]]] = defaultdict(list)
    for at, received in record.emails:
        message_id = _message_id(received)
        match = MESSAGE_ID.search(message_id)
        if match is not None and match.group(2) == "notice":
            found[match.group(1)].append((at, message_id, received.recipients))
    return found


def _message_id(received: Received) -> str:
    """The Message-ID, from the headers alone (parsing whole notices of 240 KB is slow)."""
    return str(HeaderParser().parsebytes(received.data).get("Message-ID", ""))


def _api_notices(record: Record) -> dict[str, list[tuple[float, str]]]:
    """The notices' own POSTs by notice id: (time, Idempotency-Key)."""
    found: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for at, post in record.api_posts:
        key = post.headers.get("Idempotency-Key", "")
        if key == post.payload.get("notice_id"):
            found[key].append((at, key))
    return found


def _delivered_reached(record: Record, ns: list[Any]) -> Check:
    emails, posts = _notice_emails(record), _api_notices(record)
    unseen = []
    for n in ns:
        if n.state not in SETTLED:
            continue
        seen = {
            "email": n.notice_id in emails,
            "api": n.notice_id in posts,
            "manual": n.notice_id in record.filed,
        }
        if not seen.get(n.channel, False):
            unseen.append(n.notice_id)
    channels = Counter(n.channel for n in ns)
    detail = (
        f"{channels.get('email', 0)} by email, {channels.get('api', 0)} by API, "
        f"{channels.get('manual', 0)} filed on the portal"
    )
    if unseen:
        detail += f"; delivered in the store, never received: {unseen[:5]} ({len(unseen)})"
    return Check("every delivered notice reached its platform", not unseen, detail)


def _duplicates(record: Record, by_notice: dict[str, Any]) -> Check:
    emails, posts = _notice_emails(record), _api_notices(record)
    interruptions = [d for d in record.disturbances if d.kind in INTERRUPTIONS]
    smtp_down = [d for d in record.disturbances if d.kind == "SMTP sink down"]
    api_down = [d for d in record.disturbances if d.kind == "platform API down"]
    problems: list[str] = []
    excused_by: Counter[str] = Counter()
    duplicates = 0
    copies: dict[str, list[float]] = {}
    for notice_id, got in emails.items():
        ids = {message_id for _, message_id, _ in got}
        stored = by_notice.get(notice_id)
        if stored is None or ids != {f"{stored.message_id}"} or len({to for _, _, to in got}) != 1:
            problems.append(
                f"{notice_id}: Message-IDs {sorted(ids)}, stored {getattr(stored, 'message_id', None)}"
            )
        copies[notice_id] = sorted(at for at, _, _ in got)
    for notice_id, posted in posts.items():
        copies[notice_id] = sorted(at for at, _ in posted)
    for notice_id, times in copies.items():
        channel_down = smtp_down if notice_id in emails else api_down
        for first, following in itertools.pairwise(times):
            duplicates += 1
            cause = _interrupted(first, following, [*interruptions, *channel_down])
            if cause is None:
                problems.append(f"{notice_id}: sent again at +{following - first:.1f} s with no interruption")
            else:
                excused_by[cause] += 1
    detail = f"{duplicates} duplicate deliveries"
    if duplicates:
        detail += " (" + ", ".join(f"{n} after a {cause}" for cause, n in sorted(excused_by.items())) + ")"
    detail += ", each with its notice's id and Message-ID / Idempotency-Key"
    if problems:
        detail += f"; {len(problems)} not excused: {problems[:5]}"
    return Check("duplicates only for sends interrupted after acceptance", not problems, detail)


def _interrupted(first: float, following: float, disturbances: Iterable[Any]) -> str | None:
    for d in disturbances:
        until = d.until if d.until is not None else d.at
        if d.at - ACCEPTED_BEFORE <= first <= until and d.at <= following:
            return str(d.kind)
    return None


def _nothing_stuck(reqs: list[Any], ns: list[Any]) -> Check:
    states = Counter(n.state for n in ns)
    stuck = [n.notice_id for n in ns if n.state not in SETTLED and not (n.state == "failed" and n.last_error)]
    undelivered = [r.request_id for r in reqs if r.state in ("pending", "batched")]
    detail = "notices " + ", ".join(f"{s} {c}" for s, c in sorted(states.items()))
    if stuck or undelivered:
        detail += f"; STUCK {stuck[:5]} ({len(stuck)}), requests undelivered {len(undelivered)}"
    return Check("no notice stuck", not stuck and not undelivered, detail)


def _expected(delivered: float, acked: float | None, removed: float | None, bound: float) -> bool | None:
    """Whether a decision at ``delivered + bound`` was due: True, False, or None when the answer came
    too close to the bound to say on which side it was judged."""
    due = delivered + bound
    answer = acked if acked is not None else removed
    if answer is None:
        return True
    if abs(answer - due) <= EDGE:
        return None
    return answer > due


def _sla(
    record: Record,
    ns: list[Any],
    decisions: list[Any],
    ack_rows: list[Any],
    ack_within: float,
    removal_within: float,
    remind_at: float,
) -> Check:
    decided: dict[str, set[str]] = defaultdict(set)
    for d in decisions:
        decided[d.notice_id].add(d.kind)
    unsent = [f"{d.notice_id}/{d.kind}" for d in decisions if d.sent_at is None and d.dropped_at is None]
    problems: list[str] = []
    overtaken = unseen = 0
    counts: Counter[str] = Counter(d.kind for d in decisions)
    late = sorted((_ts(d.decided_at) or 0.0) - (_ts(d.due_at) or 0.0) for d in decisions)
    slowest = late[-1] if late else 0.0
    for n in ns:
        wrong, skipped = _judge(
            n, decided.get(n.notice_id, set()), (ack_within, removal_within, remind_at), slowest
        )
        problems += wrong
        overtaken += skipped.count("overtaken")
        unseen += skipped.count("unseen")
    logged = Counter(
        (e["notice_id"], e.get("kind", "")) for e in _events(record, "sla.reminder", "sla.breach")
    )
    twice = [key for key, count in logged.items() if count > 1]
    sandbox = _sla_messages(record)
    strays = [
        f"{notice_id}/{tag}"
        for notice_id, tag in sandbox
        if not _decision_for(tag, decided.get(notice_id, set()))
    ]
    unreceived = _unreceived(ns, decisions, sandbox)
    holds = not problems and not twice and not unsent and not strays and not unreceived and bool(decisions)
    detail = (
        f"{counts[REMINDER]} reminders, {counts[ACK_BREACH]} acknowledgement breaches, "
        f"{counts[REMOVAL_BREACH]} removal breaches decided once each; "
        f"{sum(1 for d in decisions if d.sent_at is not None)} sent, "
        f"{sum(1 for d in decisions if d.dropped_at is not None)} dropped (acknowledged first); "
        f"{sum(sandbox.values())} reminder/escalation messages received for {len(sandbox)} decisions"
    )
    if late:
        detail += f"; decided {late[len(late) // 2]:.1f} s after due at the median, {late[-1]:.1f} s at most"
    if overtaken:
        detail += f"; {overtaken} reminders overtaken by their breach"
    if unseen:
        detail += f"; {unseen} not decided: answered after the bound but before a monitor looked"
    if not holds:
        detail += (
            f"; WRONG {problems[:5]} ({len(problems)}), logged twice {twice[:5]}, unsent {unsent[:5]}, "
            f"sent without a decision {strays[:5]}, sent and never received {unreceived[:5]}"
        )
    return Check("every reminder and breach decided once", holds, detail)


def _judge(
    n: Any, have: set[str], limits: tuple[float, float, float], slowest: float
) -> tuple[list[str], list[str]]:
    """What is wrong with one notice's decisions, and which missing ones the rules excuse."""
    ack_within, removal_within, remind_at = limits
    problems: list[str] = []
    skipped: list[str] = []
    delivered = _ts(n.delivered_at)
    if delivered is None:
        return problems, skipped
    acked, resolved = _ts(n.acknowledged_at), _ts(n.resolved_at)
    bounds = {REMINDER: ack_within * remind_at, ACK_BREACH: ack_within, REMOVAL_BREACH: removal_within}
    answers = {REMINDER: acked, ACK_BREACH: acked, REMOVAL_BREACH: resolved}
    want = {
        REMINDER: _expected(delivered, acked, None, bounds[REMINDER]),
        ACK_BREACH: _expected(delivered, acked, None, bounds[ACK_BREACH]),
        REMOVAL_BREACH: _expected(delivered, None, resolved, bounds[REMOVAL_BREACH]),
    }
    for kind, due in want.items():
        if due is None or (kind in have) == due:
            continue
        if kind == REMINDER and due and ACK_BREACH in have:
            skipped.append("overtaken")  # not decided before the ack bound passed: the breach says more
            continue
        answer = answers[kind]
        if due and answer is not None and answer <= delivered + bounds[kind] + slowest + EDGE:
            # Answered after the bound, but before any monitor had looked (they were as late as
            # this at worst): the rules judge what a monitor sees, and it saw the answer.
            skipped.append("unseen")
            continue
        problems.append(f"{n.notice_id}: {kind} {'missing' if due else 'decided, not due'}")
    unexpected = have - set(want)
    if unexpected:
        problems.append(f"{n.notice_id}: unexpected {sorted(unexpected)}")
    return problems, skipped


def _unreceived(ns: list[Any], decisions: list[Any], sandbox: Counter[tuple[str, str]]) -> list[str]:
    """Decisions marked sent that no platform received."""
    channel_of = {n.notice_id: n.channel for n in ns}
    sent_kinds: dict[str, set[str]] = defaultdict(set)
    for d in decisions:
        if d.sent_at is not None:
            sent_kinds[d.notice_id].add(d.kind)
    received_tags: dict[str, set[str]] = defaultdict(set)
    for notice_id, tag in sandbox:
        received_tags[notice_id].add(tag)
    # Sent, so received: a reminder by the notice's own channel (a portal's is a file in the outbox),
    # an escalation by email to the escalation contacts.
    return [
        f"{notice_id}/{kind}"
        for notice_id, kinds in sent_kinds.items()
        for kind in kinds
        if (
            kind == REMINDER
            and channel_of.get(notice_id) != "manual"
            and "reminder" not in received_tags[notice_id]
        )
        or (kind != REMINDER and not any(t.startswith("escalation") for t in received_tags[notice_id]))
    ]


def _decision_for(tag: str, have: set[str]) -> bool:
    if tag == "reminder":
        return REMINDER in have
    return bool(have & {ACK_BREACH, REMOVAL_BREACH})


def _sla_messages(record: Record) -> Counter[tuple[str, str]]:
    """Reminders and escalations the platforms received, by notice and kind (copies counted)."""
    found: Counter[tuple[str, str]] = Counter()
    for _, received in record.emails:
        match = MESSAGE_ID.search(_message_id(received))
        if match is not None and match.group(2) != "notice":
            found[(match.group(1), match.group(2))] += 1
    for _, post in record.api_posts:
        key = post.headers.get("Idempotency-Key", "")
        notice_id, _, tag = key.partition(".")
        if tag:
            found[(notice_id, tag)] += 1
    return found


def _events(record: Record, *names: str) -> list[dict[str, Any]]:
    found = []
    for log in record.logs:
        if not log.exists():
            continue
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    event = json.loads(line)
                except ValueError:
                    continue  # a line cut short by kill -9
                if event.get("event") in names:
                    found.append(event)
    return found


def _ready_after(r: Any, outages: list[Any]) -> float | None:
    """Seconds from the restart, or from the end of a broker or database outage it fell in (a
    daemon cannot be ready while a service it needs is away), to ready."""
    if r.ready_at is None:
        return None
    start = r.since
    for d in outages:
        if d.until is not None and d.at <= r.ready_at and d.until > start:
            start = d.until
    return max(0.0, float(r.ready_at) - float(start))


def _ready(record: Record) -> Check:
    limit = record.plan.ready_within
    outages = [d for d in record.disturbances if d.kind.startswith(("RabbitMQ", "PostgreSQL"))]
    restarts = [r for r in record.readiness if r.cause != "end"]
    after = {id(r): _ready_after(r, outages) for r in restarts}
    late = [r for r in restarts if after[id(r)] is None or (after[id(r)] or 0.0) > limit]
    end = [r for r in record.readiness if r.cause == "end"]
    by_cause: dict[str, list[float]] = defaultdict(list)
    for r in restarts:
        seconds = after[id(r)]
        if seconds is not None:
            by_cause[r.cause].append(seconds)
    parts = [f"{cause} {len(v)}× (max {max(v):.1f} s)" for cause, v in sorted(by_cause.items())]
    holds = not late and len(end) == 2 and all(r.seconds is not None for r in end)
    detail = f"{len(restarts)} restarts within {limit:.0f} s: " + ", ".join(parts)
    if not holds:
        detail += f"; LATE {late[:5]}, at the end {end}"
    return Check(f"ready (/readyz 200) within {limit:.0f} s of each restart", holds, detail)


def _clean_stops(record: Record) -> Check:
    grace = record.plan.grace
    bad_term = [(code, s) for code, s in record.sigterm_exits if code != 0 or s > grace + 5]
    crashed = _events(record, "task.crashed", "task.exited")
    holds = not bad_term and all(code == 0 for code in record.final_exits) and not crashed
    terms = ", ".join(f"exit {code} after {s:.1f} s" for code, s in record.sigterm_exits) or "none"
    detail = f"SIGTERM under load: {terms} (grace {grace:.0f} s); at the end: exits {record.final_exits}"
    if crashed:
        detail += f"; tasks died: {[e.get('task') for e in crashed][:5]}"
    return Check("SIGTERM: clean stop within the grace period, no task died", holds, detail)


def report(record: Record, checks: list[Check]) -> str:
    """The checklist, with what the run did."""
    plan = record.plan
    lines = [f"chaos run: {plan.short}, seed {plan.seed}"]
    took = (record.settled_at or record.published_at_end) - record.started
    lines.append(
        f"published in {record.published_at_end - record.started:.0f} s; settled after {took:.0f} s"
        + ("" if record.settled_at else " (NOT settled within the limit)")
    )
    kinds = Counter(d.kind for d in record.disturbances)
    lines.append("disturbances: " + ", ".join(f"{kind} ×{n}" for kind, n in sorted(kinds.items())))
    lines.extend(f"note: {note}" for note in record.notes)
    for check in checks:
        lines.append(f"[{'ok' if check.holds else 'FAIL'}] {check.name}: {check.detail}")
    lines.append("ALL CHECKS HOLD" if all(c.holds for c in checks) else "SOME CHECKS FAILED")
    return "\n".join(lines)
