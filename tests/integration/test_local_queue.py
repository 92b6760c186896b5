"""The local SQLite queue shared by several processes: a ``notifier submit`` publishing while the
daemon consumes, and consumers that die with messages in hand."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections import Counter
from pathlib import Path

from notifier.intake.local import LocalQueue
from notifier.ports import Delivery

REPO = Path(__file__).resolve().parents[2]
QUEUE = "takedown.requests"

PUBLISHER = """
import asyncio, sys
from pathlib import Path
from notifier.intake.local import LocalQueue

async def main(path: str, prefix: str, count: int, batch: int) -> None:
    queue = LocalQueue(Path(path))
    await queue.connect()
    for start in range(0, count, batch):
        bodies = [f'{{"n": "{prefix}{i}"}}'.encode() for i in range(start, min(count, start + batch))]
        await queue.publish("takedown.requests", bodies)
    await queue.close()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
"""

CLAIMER = """
import asyncio, sys
from pathlib import Path
from notifier.intake.local import LocalQueue

async def main(path: str, lease: float) -> None:
    queue = LocalQueue(Path(path), lease_seconds=lease)
    await queue.connect()
    got = await queue.receive("takedown.requests", max_messages=100, wait=10)
    print(f"claimed {len(got)}", flush=True)
    await asyncio.sleep(600)

asyncio.run(main(sys.argv[1], float(sys.argv[2])))
"""


async def run_python(script: str, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        *args,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def receive_exactly(queue: LocalQueue, count: int, *, within: float) -> list[Delivery]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    got: list[Delivery] = []
    while len(got) < count and (remaining := deadline - loop.time()) > 0:
        got += await queue.receive(QUEUE, max_messages=count - len(got), wait=min(remaining, 1.0))
    return got


async def test_two_publishing_processes_and_two_consumers_share_one_file_without_lock_errors(
    tmp_path: Path,
) -> None:
    path = tmp_path / "notifier.db"
    per_publisher = 3000
    consumers = [LocalQueue(path, poll_interval=0.01) for _ in range(2)]
    for consumer in consumers:
        await consumer.connect()
    seen: Counter[bytes] = Counter()
    done = asyncio.Event()

    async def consume(queue: LocalQueue) -> None:
        while not done.is_set():
            batch = await queue.receive(QUEUE, max_messages=200, wait=0.2)
            seen.update(d.body for d in batch)
            await queue.ack(batch)
            if sum(seen.values()) >= 2 * per_publisher:
                done.set()

    try:
        consuming = [asyncio.create_task(consume(q)) for q in consumers]
        # Batches of 5: many small transactions, to make the processes contend for the write lock.
        publishers = [
            await run_python(PUBLISHER, str(path), prefix, str(per_publisher), "5") for prefix in "ab"
        ]
        outputs = [await p.communicate() for p in publishers]
        await asyncio.wait_for(done.wait(), 60)
        await asyncio.gather(*consuming)
    finally:
        for consumer in consumers:
            await consumer.close()

    for process, (_, stderr) in zip(publishers, outputs, strict=True):
        assert process.returncode == 0, stderr.decode()
        assert b"locked" not in stderr
    expected = {f'{{"n": "{p}{i}"}}'.encode() for p in "ab" for i in range(per_publisher)}
    assert set(seen) == expected
    assert max(seen.values()) == 1


async def test_a_claimed_but_unacknowledged_batch_returns_once_its_lease_runs_out(tmp_path: Path) -> None:
    path = tmp_path / "notifier.db"
    first, second = LocalQueue(path, lease_seconds=0.5), LocalQueue(path, lease_seconds=30)
    await first.connect()
    await second.connect()
    try:
        sent = [f'{{"n": {i}}}'.encode() for i in range(5)]
        await first.publish(QUEUE, sent)
        claimed = await receive_exactly(first, 5, within=5)
        assert [d.body for d in claimed] == sent

        assert await second.receive(QUEUE, max_messages=10, wait=0.1) == []  # leased to the first
        returned = await receive_exactly(second, 5, within=5)

        assert [d.body for d in returned] == sent
        assert all(d.redelivered for d in returned)
        await first.release(claimed)  # a release past its lease leaves the new holder's lease alone
        assert await first.receive(QUEUE, max_messages=10, wait=0.2) == []
        await second.ack(returned)
        assert await second.pending(QUEUE) == 0
    finally:
        await first.close()
        await second.close()


async def test_messages_held_by_a_killed_process_come_back_after_the_lease(tmp_path: Path) -> None:
    path = tmp_path / "notifier.db"
    queue = LocalQueue(path)
    await queue.connect()
    try:
        sent = [f'{{"n": {i}}}'.encode() for i in range(5)]
        await queue.publish(QUEUE, sent)
        claimer = await run_python(CLAIMER, str(path), "1.0")
        try:
            assert claimer.stdout is not None
            line = await asyncio.wait_for(claimer.stdout.readline(), 30)
            assert line.strip() == b"claimed 5"
            assert await queue.receive(QUEUE, max_messages=10, wait=0.1) == []
        finally:
            claimer.send_signal(signal.SIGKILL)
            await claimer.communicate()

        returned = await receive_exactly(queue, 5, within=10)
        assert [d.body for d in returned] == sent
        assert all(d.redelivered for d in returned)
        await queue.ack(returned)
    finally:
        await queue.close()
