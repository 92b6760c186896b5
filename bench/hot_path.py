"""Two steps of dispatch's hot path, each alone: composing a notice's email, and forming a notice.

1. composing a 50-request notice (:func:`notifier.channels.composer.compose`: render, build the
   MIME tree, flatten), and rendering it alone, per notice, on this process's core; and the
   pickling of its job to and from a worker process;
2. ``form_notice`` on PostgreSQL (a scratch database, 5,000 pending requests of one platform,
   notices of 50), per notice, with the time each kind of statement took (a SQLAlchemy event
   listener), which is where forming spends its round trips.

Usage: .venv/bin/python bench/hot_path.py [--notices 100]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import pickle
import re
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import Engine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.dispatch import store_pending
from bench.dkim_sign import notice
from bench.intake import PG_ADMIN
from notifier.channels.composer import compose
from notifier.channels.rendering import Renderer, default_templates_dir
from notifier.domain.validation import Vocabulary
from notifier.store import create_store
from tests.integration.test_composer import job_for

PENDING = 5_000


def per_call(action: Any, count: int) -> float:
    """Milliseconds per call of ``action``, after a few calls to warm up."""
    for _ in range(3):
        action()
    started = time.perf_counter()
    for _ in range(count):
        action()
    return (time.perf_counter() - started) * 1000 / count


def composing(count: int) -> None:
    renderer = Renderer(default_templates_dir())
    content = notice(50)
    job = job_for(content)  # the composer tests' job: one recipient, no Cc, no thread
    size = len(compose(job, renderer))
    print(f"composing one 50-request notice ({size:,} bytes), {count} times:")
    print(f"   render, build and flatten: {per_call(lambda: compose(job, renderer), count):6.2f} ms")
    print(f"   render alone:              {per_call(lambda: renderer.render(content), count):6.2f} ms")
    # The bytes are our own, as between the daemon and its worker.
    round_trip = per_call(lambda: pickle.loads(pickle.dumps(job)), count)  # noqa: S301
    print(f"   its job pickled and back:  {round_trip:6.2f} ms")


class StatementTimes:
    """Time spent in each kind of statement (its first 70 characters), over a run."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = collections.defaultdict(float)
        self.calls: collections.Counter[str] = collections.Counter()
        event.listen(Engine, "before_cursor_execute", self._before)
        event.listen(Engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        conn.info["bench_started"] = time.perf_counter()

    def _after(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        kind = re.sub(r"\s+", " ", statement)[:70]
        self.seconds[kind] += time.perf_counter() - conn.info.pop("bench_started")
        self.calls[kind] += 1

    def clear(self) -> None:
        self.seconds.clear()
        self.calls.clear()


async def forming(count: int) -> None:
    name = f"notifier_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    times = StatementTimes()
    try:
        url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
        vocabulary = Vocabulary(
            platforms=frozenset({"telegram"}), categories=frozenset({"deepfake_sexual_abuse"})
        )
        bodies = [
            json.dumps(
                {
                    "request_id": f"bench-{n}",
                    "platform": "telegram",
                    "urls": [f"https://t.me/c/{n}/1"],
                    "category": "deepfake_sexual_abuse",
                }
            ).encode()
            for n in range(PENDING)
        ]
        await store_pending(url, bodies, vocabulary)
        store = await create_store(url)
        try:
            now = datetime.now(UTC)
            times.clear()
            started = time.perf_counter()
            for _ in range(count):
                await store.form_notice(
                    "telegram", max_items=50, channel="email", now=now, deliver_by=now + timedelta(hours=6)
                )
            elapsed = (time.perf_counter() - started) * 1000 / count
        finally:
            await store.close()
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()
    print(
        f"\nform_notice on PostgreSQL, {count} notices of 50 from {PENDING:,} pending: "
        f"{elapsed:.2f} ms a notice"
    )
    for kind, seconds in sorted(times.seconds.items(), key=lambda item: -item[1]):
        print(f"   {seconds * 1000 / count:6.2f} ms  {times.calls[kind] / count:4.1f} a notice  {kind}")


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--notices", type=int, default=100)
    args = parser.parse_args()
    composing(args.notices)
    await forming(args.notices)


if __name__ == "__main__":
    asyncio.run(main())
