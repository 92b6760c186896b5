"""Checking the evidence record (SPEC §15): the chain, the kept payloads, and the store's states.

:func:`verify_ledger` reads the head together with every notice's and request's current state and
times, walks the chain up to that head (naming the first entry that fails: edited, deleted,
reordered, or a tail cut off), decrypts and hashes every kept payload again (naming the first entry
whose payload changed), and replays the ``state`` entries to compare with the store, naming every
notice and request that differs. Nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from notifier.domain.evidence import ChainWalk, Head, Replay, Snapshot, StateFinding, compare
from notifier.domain.models import NoticeState
from notifier.ports import EvidenceStore

# A notice in ``sending`` is claimed by a process for one attempt: a lease, not a step of its
# history. The record has the state it was claimed from (queued or retrying).
_CLAIMED_FROM = frozenset({NoticeState.QUEUED.value, NoticeState.RETRYING.value})


@dataclass(slots=True, kw_only=True)
class LedgerVerdict:
    head: Head
    entries: int = 0
    chain_failure: str | None = None
    payload_failure: str | None = None
    payloads_checked: int = 0
    payloads_unchecked: int = 0  # kept, but no key to read them
    payloads_not_kept: int = 0  # purged past retention (or recorded without a key): hashes only
    pending: int = 0  # entries a daemon wrote that wait for their place in the chain
    findings: list[StateFinding] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return self.chain_failure is None and self.payload_failure is None and not self.findings


async def verify_ledger(store: EvidenceStore) -> LedgerVerdict:
    stored = await store.stored_states()
    verdict = LedgerVerdict(head=stored.head)
    walk = ChainWalk()
    replay = Replay()
    first_use: dict[str, tuple[int, str]] = {}
    async for entry in store.iter_ledger(upto=stored.head.seq):
        if not walk.feed(entry):
            break
        replay.apply(entry)
        if entry.payload_sha256 is not None:
            first_use.setdefault(entry.payload_sha256, (entry.seq, entry.kind))
    walk.finish(stored.head)
    for entry in stored.pending:  # written by an urgent lane after the head, not chained yet
        replay.apply(entry)
        if entry.payload_sha256 is not None:
            first_use.setdefault(entry.payload_sha256, (entry.seq, entry.kind))
    verdict.pending = len(stored.pending)
    verdict.entries = walk.count
    verdict.chain_failure = walk.failure
    bad: list[tuple[int, str]] = []
    async for check in store.check_payloads():
        if not check.kept:
            verdict.payloads_not_kept += 1
            continue
        if not check.checked:
            verdict.payloads_unchecked += 1
            continue
        verdict.payloads_checked += 1
        if check.problem is not None:
            seq, kind = first_use.get(check.sha256, (0, "?"))
            bad.append((seq, f"entry {seq} ({kind}): its payload was changed ({check.problem})"))
    if bad:
        verdict.payload_failure = min(bad)[1]
    verdict.findings = compare("notice", _leased(replay, stored.notices), stored.notices)
    verdict.findings += compare("request", replay.requests, stored.requests)
    return verdict


def _leased(replay: Replay, stored: dict[str, Snapshot]) -> dict[str, Snapshot]:
    """The recorded notices, with a claim for sending (stored ``sending``, recorded as the state it
    was claimed from) taken as matching."""
    recorded = dict(replay.notices)
    for notice_id, snapshot in stored.items():
        mine = recorded.get(notice_id)
        if snapshot.state == NoticeState.SENDING.value and mine is not None and mine.state in _CLAIMED_FROM:
            recorded[notice_id] = Snapshot(
                snapshot.state, mine.delivered_at, mine.acknowledged_at, mine.resolved_at
            )
    return recorded
