"""The 1,000-message intake scenario through each way in: AMQP, `notifier submit`, HTTP.

925 stored (1000 - 50 invalid - 20 duplicates - 5 conflicts), 50 dead letters each with a reason,
5 conflicts — checked through `notifier status --json`, as an operator reads it.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import pytest

from notifier.app import Daemon
from notifier.settings import load_settings
from tests.acceptance.dataset import (
    EXPECTED_CONFLICTS,
    EXPECTED_DEAD,
    EXPECTED_STORED,
    Message,
    scenario,
)
from tests.acceptance.harness import notifier, status_json, stored_total, wait_for, write_config

pytestmark = pytest.mark.timeout(300)


def _check_status(config: Path, *, dead_letters: int) -> dict[str, Any]:
    document = status_json(config)
    assert stored_total(document) == EXPECTED_STORED
    assert len(document["conflicts"]) == EXPECTED_CONFLICTS
    assert document["dead_letters_total"] == dead_letters
    assert len(document["dead_letters"]) == dead_letters
    assert all(letter["reason"] for letter in document["dead_letters"])
    for platform in ("telegram", "videohost", "clipshare"):
        assert set(document["notices"][platform]) >= {"queued", "sending", "delivered", "failed"}
    return document


@pytest.mark.postgres
@pytest.mark.rabbitmq
async def test_raw_amqp_bodies_end_stored_once_or_dead_lettered(
    tmp_path: Path, postgres_url: str, amqp_server: str, queue_name: str, amqp_cleanup: list[str]
) -> None:
    amqp_cleanup.extend([queue_name, f"{queue_name}.acks"])
    config = write_config(
        tmp_path,
        store_url=postgres_url,
        queue_url=amqp_server,
        requests_queue=queue_name,
        acks_queue=f"{queue_name}.acks",
    )
    settings = load_settings(config)
    daemon = Daemon(settings)
    await daemon.start()
    try:
        connection = await aio_pika.connect(amqp_server)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            for message in scenario():
                await channel.default_exchange.publish(
                    aio_pika.Message(body=message.body), routing_key=queue_name
                )

        async def settled() -> bool:
            assert daemon.store is not None
            counts = await daemon.store.status_counts()
            stored = sum(sum(s.values()) for s in counts.requests.values())
            return stored == EXPECTED_STORED and counts.dead_letters_total == EXPECTED_DEAD

        await wait_for(settled, within=120, what="925 stored and 50 dead letters")
    finally:
        daemon.stop()
        assert await daemon.wait() == 0

    document = _check_status(config, dead_letters=EXPECTED_DEAD)
    reasons = " | ".join(str(letter["reason"]) for letter in document["dead_letters"])
    assert "urls[0]: scheme 'javascript' is not allowed" in reasons
    assert "'myspace' is not a configured platform" in reasons
    assert "over the 262144-byte limit" in reasons

    # The broker side keeps every rejected message too, with its reason in a header.
    connection = await aio_pika.connect(amqp_server)
    async with connection:
        channel = await connection.channel()
        dead = await channel.declare_queue(f"{queue_name}.dead", passive=True)
        headers = []
        while (incoming := await dead.get(fail=False, no_ack=True)) is not None:
            headers.append(incoming.headers.get("x-notifier-reason"))
    assert len(headers) == EXPECTED_DEAD
    assert all(headers)


async def test_submit_reports_invalid_records_and_publishes_the_rest(tmp_path: Path) -> None:
    database = tmp_path / "var" / "notifier.db"
    config = write_config(tmp_path, store_url=f"sqlite:///{database}", queue_url=f"sqlite:///{database}")
    messages = scenario()
    requests_file = tmp_path / "requests.jsonl"
    requests_file.write_bytes(b"\n".join(m.body for m in messages) + b"\n")

    result = notifier("submit", "-c", str(config), str(requests_file))
    assert result.returncode == 1
    report = result.stderr.decode()
    invalid_lines = [line for line in report.splitlines() if line.startswith(f"{requests_file}:")]
    assert len(invalid_lines) == EXPECTED_DEAD
    expected_positions = {f"{requests_file}:{i + 1}" for i, m in enumerate(messages) if _invalid(m)}
    assert {line.split(": ", 1)[0] for line in invalid_lines} == expected_positions
    assert all(line.split(": ", 1)[1].strip() for line in invalid_lines)
    # The 20 exact copies are published once; the 5 conflicting ones go on for the daemon to record.
    summary = result.stdout.decode()
    assert "published 930 request(s)" in summary, summary
    assert "20 repeated in the input, published once" in summary, summary

    settings = load_settings(config)
    daemon = Daemon(settings)
    await daemon.start()
    try:

        async def settled() -> bool:
            assert daemon.store is not None
            counts = await daemon.store.status_counts()
            stored = sum(sum(s.values()) for s in counts.requests.values())
            return stored == EXPECTED_STORED and len(await daemon.store.conflicts()) == EXPECTED_CONFLICTS

        await wait_for(settled, within=120, what="925 stored and 5 conflicts")
    finally:
        daemon.stop()
        assert await daemon.wait() == 0
    _check_status(config, dead_letters=0)


def _invalid(message: Message) -> bool:
    return message.kind not in ("valid", "duplicate", "conflict")


async def test_http_intake_answers_each_message_as_the_spec_says(tmp_path: Path) -> None:
    database = tmp_path / "var" / "notifier.db"
    config = write_config(tmp_path, store_url=f"sqlite:///{database}", queue_url=f"sqlite:///{database}")
    daemon = Daemon(load_settings(config))
    await daemon.start()
    assert daemon.http is not None
    url = f"http://127.0.0.1:{daemon.http.bound_port}/v1/requests"
    answers: dict[str, list[int]] = {}
    try:
        async with aiohttp.ClientSession() as session:
            for message in scenario():
                async with session.post(url, data=io.BytesIO(message.body)) as response:
                    payload = await response.json()
                    answers.setdefault(message.kind, []).append(response.status)
                    if response.status in (400, 413):
                        assert payload["error"], message.kind
                    if response.status == 202:
                        expected = "accepted" if message.kind == "valid" else "duplicate"
                        assert payload == {"request_id": message.request_id, "outcome": expected}
    finally:
        daemon.stop()
        assert await daemon.wait() == 0

    assert answers.pop("valid") == [202] * 925
    assert answers.pop("duplicate") == [202] * 20
    assert answers.pop("conflict") == [409] * 5
    megabyte = answers.pop("one_megabyte")
    assert megabyte and set(megabyte) == {413}
    assert all(status == 400 for statuses in answers.values() for status in statuses), answers
    _check_status(config, dead_letters=0)
