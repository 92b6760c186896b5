"""`notifier report` over a million requests (SPEC §11: ≤ 5 s on PostgreSQL).

Creates a PostgreSQL database of its own (schema through the migrations, as ``create_store`` does
it), bulk-loads requests and notices with COPY in a realistic mix of states and times (five
platforms; notices delivered, acknowledged, resolved, failed, still queued; requests removed,
rejected, acknowledged, open, failed, pending; one request in ten under one of two deadline
profiles, which the configuration defines, so each is judged by its profile's bounds; what
notifier's own checks found of the answered ones, with their rows in ``url_checks``), then times:

1. ``python -m notifier report -c CONFIG --format json`` as an operator runs it: wall time of the
   whole process (interpreter start, settings, migrations check, query, figures, JSON), best of
   ``--rounds``, and the peak RSS of those processes;
2. the in-process ``build_report`` call, best of ``--rounds``, and of it the store's
   ``report_figures`` (the grouped SQL statement PostgreSQL runs);
3. once, the reference path: the store's ``report_rows`` (SQL fetch into ``ReportRow`` objects) and
   the domain's Python ``tally``, whose figures must equal the SQL ones exactly on the whole dataset
   (the bench stops if they differ), and the same for the verification figures.

The database is dropped afterwards unless --keep-database. Usage:
.venv/bin/python bench/report.py [--rows N] [--rounds N] [--keep-database]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from notifier.domain.models import NoticeState, RequestState
from notifier.domain.notices import notice_id
from notifier.domain.report import platform_documents, tally
from notifier.domain.verification import CheckOutcome, verification_figures
from notifier.services.report import FiguresStore, build_report, platform_bounds, profile_bounds
from notifier.settings import load_settings
from notifier.store import create_store
from tests.acceptance.harness import cli_env, write_config

REPO = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
TARGET_S = 5.0

# Platform and its share of the requests; videohost answers slowly, streamhub has a 24 h ack bound.
PLATFORMS = {"telegram": 0.35, "videohost": 0.25, "clipshare": 0.2, "picboard": 0.12, "streamhub": 0.08}
# A notice's state and its share of the notices.
NOTICE_MIX = {
    NoticeState.RESOLVED: 0.55,
    NoticeState.ACKNOWLEDGED: 0.20,
    NoticeState.DELIVERED: 0.17,
    NoticeState.FAILED: 0.03,
    NoticeState.RETRYING: 0.02,
    NoticeState.QUEUED: 0.03,
}
# The deadline profiles a tenth of the requests are judged by (``platforms_toml`` defines them).
DEADLINES = {0: "tco_removal_order", 10: "netzdg_other"}
HOUR = 3600.0
DAY = 24 * HOUR

REQUEST_COLUMNS = [
    "request_id",
    "platform",
    "state",
    "priority",
    "content_hash",
    "body",
    "source",
    "ingested_at",
    "notice_id",
    "delivered_at",
    "acknowledged_at",
    "resolved_at",
    "notice_position",
    "deadline",
    "verified_removed_at",
    "reappeared_at",
    "false_claims",
]
NOTICE_COLUMNS = [
    "notice_id",
    "platform",
    "sequence",
    "request_count",
    "channel",
    "primary_channel",
    "fallback_used",
    "state",
    "created_at",
    "updated_at",
    "deliver_by",
    "next_attempt_at",
    "message_id",
    "delivered_at",
    "acknowledged_at",
    "resolved_at",
    "last_error",
    "alerted_at",
]
CHECK_COLUMNS = [
    "request_id",
    "platform",
    "url",
    "at",
    "outcome",
    "reason",
    "http_status",
    "final_url",
    "content_type",
    "bytes_read",
    "sha256",
    "rule",
]
DEAD_LETTER_COLUMNS = ["source", "reason", "request_id", "body", "body_size", "body_sha256", "at"]

# Roughly the canonical JSON of a request (about 600 bytes): the report never reads it, but the
# table's rows should be as wide as real ones for the scan to cost what it costs.
BODY = (
    '{{"case_ref":"2025-DF-{n:06d}","category":"deepfake_sexual_abuse",'
    '"decided_at":"2025-09-03T10:00:00+09:00","evidence":[{{"pdq":"{h}","sha256":"{h}"}}],'
    '"explanation":"Synthetic sexual imagery of an identifiable person made without consent.",'
    '"legal_basis":"Act on the Korea Communications Commission, Art. 21(4)",'
    '"platform":"{p}","priority":"{prio}","request_id":"{rid}","territorial_scope":["KR"],'
    '"urls":["https://{p}.example/c/{n}/0"]}}'
)


@dataclass(slots=True)
class Dataset:
    requests: list[tuple[Any, ...]] = field(default_factory=list)
    notices: list[tuple[Any, ...]] = field(default_factory=list)
    checks: list[tuple[Any, ...]] = field(default_factory=list)
    sequences: dict[str, int] = field(default_factory=dict)
    states: dict[str, int] = field(default_factory=dict)


def _capped(rng: random.Random, median_h: float, cap_h: float) -> timedelta:
    """A log-normal wait around ``median_h`` hours, at most ``cap_h`` hours."""
    return timedelta(seconds=min(cap_h * HOUR, median_h * HOUR * rng.lognormvariate(0.0, 1.0)))


def _weighted(rng: random.Random, mix: dict[Any, float]) -> Any:
    return rng.choices(list(mix), weights=list(mix.values()))[0]


class Generator:
    def __init__(self, now: datetime, seed: int) -> None:
        self.now = now
        self.rng = random.Random(seed)
        self.data = Dataset()
        self.index = 0

    def _request(
        self,
        platform: str,
        state: RequestState,
        ingested: datetime,
        *,
        notice: str | None = None,
        position: int | None = None,
        delivered: datetime | None = None,
        acknowledged: datetime | None = None,
        resolved: datetime | None = None,
    ) -> None:
        self.index += 1
        n = self.index
        rid = f"kcsc-2025-{n:07d}"
        claimed = resolved if state is RequestState.REMOVED else None
        verified, reappeared, false_claims = self._verification(platform, rid, n, claimed)
        prio = "urgent" if n % 97 == 0 else "normal"
        # One request in ten under a deadline profile (SPEC §14), as a regulator's mix would be.
        deadline = DEADLINES[n % 20] if n % 10 == 0 else None
        body = BODY.format(n=n, h=f"{self.rng.getrandbits(256):064x}", p=platform, prio=prio, rid=rid)
        digest = hashlib.sha256(body.encode()).hexdigest()
        self.data.requests.append(
            (rid, platform, state.value, prio, digest, body, "amqp:takedown.requests", ingested,
             notice, delivered, acknowledged, resolved, position, deadline, verified, reappeared,
             false_claims)
        )  # fmt: skip
        self.data.states[state.value] = self.data.states.get(state.value, 0) + 1

    def _verification(
        self, platform: str, rid: str, n: int, resolved: datetime | None
    ) -> tuple[datetime | None, datetime | None, int]:
        """What notifier's own checks found (SPEC §13) for a request the platform said it removed
        at ``resolved``: most seen gone by a check hours later, some claims false (the URL still
        up, seen gone at a later check or not yet), a few back after removal, a few checks that
        concluded nothing; each check a row of ``url_checks``, as the verifier writes them."""
        if resolved is None:
            return None, None, 0
        rng, url = self.rng, f"https://{platform}.example/c/{n}/0"
        at = resolved + timedelta(seconds=rng.uniform(0.25 * HOUR, 6 * HOUR))
        false_claims, verified, reappeared = 0, None, None
        if rng.random() < 0.03:
            false_claims = 1
            self._check(rid, platform, url, at, CheckOutcome.LIVE)
            at += timedelta(hours=24)
        if rng.random() < 0.02:
            self._check(rid, platform, url, at, CheckOutcome.INCONCLUSIVE)
            at += timedelta(hours=6)
        if at < self.now and rng.random() < 0.95:
            verified = at
            self._check(rid, platform, url, at, CheckOutcome.REMOVED)
            if rng.random() < 0.01:
                reappeared = at + timedelta(days=rng.uniform(1, 6))
        return verified, reappeared, false_claims

    def _check(self, rid: str, platform: str, url: str, at: datetime, outcome: CheckOutcome) -> None:
        status = {CheckOutcome.REMOVED: 404, CheckOutcome.LIVE: 200, CheckOutcome.INCONCLUSIVE: None}[outcome]
        reason = {CheckOutcome.REMOVED: "status_404", CheckOutcome.LIVE: "status_200"}.get(outcome, "timeout")
        digest = f"{self.rng.getrandbits(256):064x}"
        self.data.checks.append(
            (rid, platform, url, at, outcome.value, reason, status, url, "text/html", 2048, digest, "")
        )

    def notice(self, platform: str, size: int) -> None:
        rng, now = self.rng, self.now
        state: NoticeState = _weighted(rng, NOTICE_MIX)
        # Answered notices are old enough to have been answered; open ones are recent, so that
        # some are past their bound and some are not.
        if state in (NoticeState.RESOLVED, NoticeState.ACKNOWLEDGED):
            created = now - timedelta(seconds=rng.uniform(3 * DAY, 90 * DAY))
        elif state in (NoticeState.DELIVERED, NoticeState.FAILED):
            created = now - timedelta(seconds=rng.uniform(0.5 * HOUR, 4 * DAY))
        else:
            created = now - timedelta(seconds=rng.uniform(60, 30 * 60))
        sequence = self.data.sequences.get(platform, 0) + 1
        self.data.sequences[platform] = sequence
        nid = notice_id(platform, created, sequence)
        slow = 3.0 if platform == "videohost" else 1.0
        delivered = None
        if state not in (NoticeState.FAILED, NoticeState.RETRYING, NoticeState.QUEUED):
            delivered = created + timedelta(seconds=rng.expovariate(1 / 45))
        acks: list[datetime] = []
        resolutions: list[datetime] = []
        for position in range(size):
            ingested = created - timedelta(seconds=rng.uniform(1, 600))
            if delivered is None:
                request_state = RequestState.FAILED if state is NoticeState.FAILED else RequestState.BATCHED
                self._request(platform, request_state, ingested, notice=nid, position=position)
                continue
            if state is NoticeState.DELIVERED:
                self._request(
                    platform,
                    RequestState.DELIVERED,
                    ingested,
                    notice=nid,
                    position=position,
                    delivered=delivered,
                )
                continue
            ack = delivered + _capped(rng, 6 * slow, 60)
            draw = rng.random()
            if state is NoticeState.ACKNOWLEDGED and draw < 0.6:
                acks.append(ack)
                self._request(
                    platform,
                    RequestState.ACKNOWLEDGED,
                    ingested,
                    notice=nid,
                    position=position,
                    delivered=delivered,
                    acknowledged=ack,
                )
                continue
            done = ack + _capped(rng, 4 * slow, 48)
            outcome = RequestState.REJECTED if rng.random() < 0.07 else RequestState.REMOVED
            # Some platforms remove without acknowledging first: no acknowledgement time.
            answered = None if rng.random() < 0.15 else ack
            acks.append(answered or done)
            resolutions.append(done)
            self._request(
                platform,
                outcome,
                ingested,
                notice=nid,
                position=position,
                delivered=delivered,
                acknowledged=answered,
                resolved=done,
            )
        resolved = max(resolutions) if state is NoticeState.RESOLVED and resolutions else None
        acknowledged = min(acks) if acks else None
        updated = max(t for t in (created, delivered, acknowledged, resolved) if t is not None)
        failed = state is NoticeState.FAILED
        self.data.notices.append(
            (nid, platform, sequence, size, "email", "email", False, state.value, created, updated,
             created + timedelta(hours=6),
             created + timedelta(minutes=5) if state in (NoticeState.RETRYING, NoticeState.QUEUED) else None,
             None if delivered is None else f"<{nid}@authority.example>",
             delivered, acknowledged, resolved,
             "550 5.1.1 mailbox unavailable" if failed else None,
             created + timedelta(hours=6, minutes=1) if failed else None)
        )  # fmt: skip

    def pending(self, platform: str) -> None:
        ingested = self.now - timedelta(seconds=self.rng.uniform(1, 600))
        self._request(platform, RequestState.PENDING, ingested)


def generate(rows: int, notices: int, now: datetime) -> Dataset:
    """``rows`` requests: ``notices`` notices of equal size (at most 50) and the rest pending."""
    per_notice = max(1, min(50, int(rows * 0.98) // notices))
    gen = Generator(now, seed=8)
    platforms = list(PLATFORMS)
    weights = list(PLATFORMS.values())
    for platform in gen.rng.choices(platforms, weights=weights, k=notices):
        gen.notice(platform, per_notice)
    while gen.index < rows:
        gen.pending(gen.rng.choices(platforms, weights=weights)[0])
    return gen.data


def dead_letter_records(count: int, now: datetime) -> Iterator[tuple[Any, ...]]:
    platforms = list(PLATFORMS)
    for i in range(count):
        body = json.dumps({"platform": platforms[i % len(platforms)], "urls": []}).encode()
        at = now - timedelta(hours=i % 2000)
        reason = "urls: at least one URL is required"
        yield ("amqp:takedown.requests", reason, None, body, len(body), hashlib.sha256(body).hexdigest(), at)


def platforms_toml() -> str:
    """Five email platforms (streamhub with a 24 h acknowledgement bound) and two deadline profiles,
    so that the report judges the requests of a profile by the profile's bounds."""
    parts = [
        '[deadlines.tco_removal_order]\nlabel = "TCO removal order: one hour"\n'
        'ack_within = "1h"\nremoval_within = "1h"\n',
        '[deadlines.netzdg_other]\nlabel = "NetzDG, other unlawful content: 7 days"\n'
        'ack_within = "24h"\nremoval_within = "7d"\n',
    ]
    for p in PLATFORMS:
        parts.append(
            f'[platforms.{p}]\nname = "{p.title()}"\nchannel = "email"\n'
            f'[platforms.{p}.email]\nto = ["abuse@{p}.example"]\n'
        )
        if p == "streamhub":
            parts.append('[platforms.streamhub.sla]\nack_within = "24h"\n')
    return "\n".join(parts)


@dataclass(frozen=True, slots=True)
class CliRun:
    best_s: float
    runs: list[float]
    peak_rss_mib: float
    document: dict[str, Any]


# Linux keeps a process's high-water RSS across fork and exec, so a report started straight from
# this process (which holds the generated million rows) would be charged with this process's
# size. It is started from this small launcher instead, which times it and reports its own peak.
_LAUNCHER = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
result = subprocess.run(sys.argv[1:], capture_output=True, check=False)
print(json.dumps({
    "seconds": time.perf_counter() - started,
    "returncode": result.returncode,
    "peak_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    "stdout": result.stdout.decode(),
    "stderr": result.stderr.decode(),
}))
"""


def time_cli(config: Path, rounds: int) -> CliRun:
    runs: list[float] = []
    peaks: list[int] = []
    document: dict[str, Any] = {}
    command = [sys.executable, "-m", "notifier", "report", "-c", str(config), "--format", "json"]
    for _ in range(rounds):
        launched = subprocess.run(
            [sys.executable, "-c", _LAUNCHER, *command],
            capture_output=True,
            env=cli_env(),
            cwd=REPO,
            check=True,
        )
        result = json.loads(launched.stdout)
        if result["returncode"] != 0:
            raise SystemExit(f"notifier report failed ({result['returncode']}): {result['stderr']}")
        runs.append(result["seconds"])
        peaks.append(result["peak_kib"])  # KiB on Linux
        document = json.loads(result["stdout"])
    return CliRun(min(runs), runs, max(peaks) / 1024, document)


async def load(url: str, data: Dataset, now: datetime) -> float:
    started = time.perf_counter()
    conn = await asyncpg.connect(url)
    try:
        await conn.copy_records_to_table("requests", records=data.requests, columns=REQUEST_COLUMNS)
        await conn.copy_records_to_table("notices", records=data.notices, columns=NOTICE_COLUMNS)
        await conn.copy_records_to_table("url_checks", records=data.checks, columns=CHECK_COLUMNS)
        await conn.copy_records_to_table(
            "dead_letters", records=list(dead_letter_records(500, now)), columns=DEAD_LETTER_COLUMNS
        )
        await conn.executemany(
            "INSERT INTO platform_sequences (platform, last_value) VALUES ($1, $2)",
            sorted(data.sequences.items()),
        )
        # What autovacuum would have done on a database that grew to this size over months.
        await conn.execute("VACUUM ANALYZE requests, notices, url_checks, dead_letters")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--notices", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each measurement; the best is kept")
    parser.add_argument(
        "--keep-database", action="store_true", help="leave the loaded database in place and print its URL"
    )
    args = parser.parse_args()

    now = datetime.now(UTC)
    started = time.perf_counter()
    data = generate(args.rows, args.notices, now)
    generated_s = time.perf_counter() - started
    mix = ", ".join(f"{state} {count:,}" for state, count in sorted(data.states.items()))
    print(f"{len(data.requests):,} requests over {len(PLATFORMS)} platforms, {len(data.notices):,} notices")
    print(f"request states: {mix}")
    verified = sum(1 for r in data.requests if r[REQUEST_COLUMNS.index("verified_removed_at")] is not None)
    print(f"verification: {verified:,} requests verified removed, {len(data.checks):,} checks")

    database = f"notifier_bench_{uuid.uuid4().hex[:8]}"
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{database}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{database}"')
    try:
        store = await create_store(url)  # the migrations create the schema
        try:
            load_s = await load(url, data, now)
            rows = len(data.requests)
            del data
            print(f"generated in {generated_s:.1f} s, loaded with COPY + VACUUM ANALYZE in {load_s:.1f} s")

            with tempfile.TemporaryDirectory() as folder:
                config = write_config(
                    Path(folder),
                    store_url=url,
                    queue_url=f"sqlite:///{Path(folder) / 'queue.db'}",
                    http_listen="",
                    platforms=platforms_toml(),
                )
                cli = time_cli(config, args.rounds)
                settings = load_settings(config, environ={})
            counted = sum(p["requests"] for p in cli.document["platforms"])
            if counted != rows:
                raise SystemExit(f"the report counts {counted:,} requests, not {rows:,}")

            bounds = platform_bounds(settings)
            profiles = profile_bounds(settings)
            reporting: FiguresStore = store
            build_s, figures_s = [], []
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                await build_report(reporting, bounds, now=datetime.now(UTC), profiles=profiles)
                build_s.append(time.perf_counter() - t0)
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                await reporting.report_figures(
                    bounds=bounds,
                    now=datetime.now(UTC),
                    since=None,
                    until=None,
                    profiles=profiles.on_platform,
                )
                figures_s.append(time.perf_counter() - t0)
            now = datetime.now(UTC)
            computed = await reporting.report_figures(
                bounds=bounds, now=now, since=None, until=None, profiles=profiles.on_platform
            )
            t0 = time.perf_counter()
            fetched = await reporting.report_rows(since=None, until=None, platforms=list(bounds))
            t1 = time.perf_counter()
            reference = tally(fetched, bounds=bounds, now=now, profiles=profiles.on_platform)
            t2 = time.perf_counter()
            del fetched
            fetch_s, tally_s = t1 - t0, t2 - t1
            if platform_documents(computed, bounds=bounds) != platform_documents(reference, bounds=bounds):
                raise SystemExit("the SQL figures differ from the reference tally of the same rows")
            platforms = list(bounds)
            checked = await store.verification_figures(since=None, until=None, platforms=platforms)
            rows_read = await store.verification_rows(since=None, until=None, platforms=platforms)
            if checked != verification_figures(rows_read):
                raise SystemExit("the SQL verification figures differ from the reference tally")
            del rows_read
        finally:
            await store.close()
    finally:
        if args.keep_database:
            print(f"database kept: {url}")
        else:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()

    verdict = "met" if cli.best_s <= TARGET_S else "NOT met"
    runs = ", ".join(f"{s:.2f}" for s in cli.runs)
    print(f"notifier report --format json (subprocess), {rows:,} rows: {cli.best_s:6.2f} s best of [{runs}]")
    print(f"  peak RSS of the report process:                 {cli.peak_rss_mib:6.0f} MiB")
    print(f"build_report in process:                          {min(build_s):6.2f} s")
    print(f"  report_figures (grouped SQL on PostgreSQL):     {min(figures_s):6.2f} s")
    print("reference path, once (figures equal to the SQL ones):")
    print(f"  report_rows (SQL fetch into ReportRow):         {fetch_s:6.2f} s")
    print(f"  tally (Python, nearest-rank percentiles):       {tally_s:6.2f} s")
    print(f"SPEC §11 target: ≤ {TARGET_S:.0f} s on PostgreSQL: {verdict}")


if __name__ == "__main__":
    asyncio.run(main())
