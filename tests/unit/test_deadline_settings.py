"""Deadline profiles in the configuration and in requests (SPEC §14): what is accepted, what is
refused, and each refusal naming the key or field at fault."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from notifier.clock import SimulatedClock
from notifier.domain.errors import InvalidRequest
from notifier.domain.models import RequestState, TakedownRequest
from notifier.domain.validation import parse_request
from notifier.errors import ConfigError
from notifier.intake.memory import MemoryQueue
from notifier.intake.service import IntakeService
from notifier.metrics import Metrics
from notifier.opening import profile_bounds, vocabulary
from notifier.ports import Incoming
from notifier.settings import Settings, load_settings
from notifier.store import SqlStore, create_store

REPO = Path(__file__).resolve().parents[2]
BASE = """
[authority]
name = "Authority"
email = "takedown@authority.example"

[categories]
deepfake_sexual_abuse = "Deepfake sexual abuse material"
[categories.terrorist_content]
label = "Terrorist content"
deadline = "tco_removal_order"

[deadlines.tco_removal_order]
label = "Regulation (EU) 2021/784, Art. 3(3): one hour"
ack_within = "1h"
removal_within = "1h"
urgent = true

[deadlines.take_it_down]
label = "TAKE IT DOWN Act: 48 hours"
ack_within = "48h"
removal_within = "48h"
remind_at = 0.5

[platforms.telegram]
name = "Telegram"
channel = "email"
[platforms.telegram.email]
to = ["abuse@telegram.example"]
"""


def write(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "notifier.toml"
    path.write_text(BASE + extra, encoding="utf-8")
    return path


def load(tmp_path: Path, extra: str = "") -> Settings:
    return load_settings(write(tmp_path, extra), {})


def refusal(tmp_path: Path, extra: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, extra)
    return str(info.value)


def test_profiles_and_both_forms_of_category_are_read(tmp_path: Path) -> None:
    settings = load(tmp_path)
    assert settings.category_labels == {
        "deepfake_sexual_abuse": "Deepfake sexual abuse material",
        "terrorist_content": "Terrorist content",
    }
    assert settings.category_deadlines == {"terrorist_content": "tco_removal_order"}
    order = settings.profile("tco_removal_order", "telegram")
    assert (order.ack_within, order.removal_within, order.urgent) == (timedelta(hours=1),) * 2 + (True,)
    bounds = profile_bounds(settings)
    assert bounds[("telegram", "take_it_down")].removal_within == timedelta(hours=48)
    assert bounds[("telegram", "take_it_down")].remind_at == 0.5


def test_a_platform_may_tighten_a_profile_but_loosen_it_only_when_it_says_so(tmp_path: Path) -> None:
    tighter = load(
        tmp_path, '[platforms.telegram.deadlines.take_it_down]\nack_within = "12h"\nremoval_within = "24h"\n'
    )
    assert tighter.profile("take_it_down", "telegram").removal_within == timedelta(hours=24)
    assert tighter.profile("take_it_down").removal_within == timedelta(hours=48)

    message = refusal(tmp_path, '[platforms.telegram.deadlines.take_it_down]\nremoval_within = "72h"\n')
    assert "platforms.telegram.deadlines.take_it_down.removal_within" in message
    assert "loosen = true" in message

    looser = load(
        tmp_path, '[platforms.telegram.deadlines.take_it_down]\nremoval_within = "72h"\nloosen = true\n'
    )
    assert looser.profile("take_it_down", "telegram").removal_within == timedelta(hours=72)


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        (
            '[deadlines.bad]\nlabel = "x"\nack_within = "2h"\nremoval_within = "1h"\n',
            "deadlines.bad.removal_within",
        ),
        (
            '[deadlines.bad]\nlabel = "x"\nack_within = "1h"\nremoval_within = "1h"\nremind_at = 1.0\n',
            "deadlines.bad.remind_at",
        ),
        (
            '[deadlines.bad]\nlabel = "x"\nack_within = "1h"\nremoval_within = "1h"\nremind_at = 0\n',
            "deadlines.bad.remind_at",
        ),
        ('[categories.csam]\nlabel = "x"\ndeadline = "nope"\n', "categories.csam.deadline"),
        ('[platforms.telegram.deadlines.nope]\nack_within = "1h"\n', "platforms.telegram.deadlines.nope"),
    ],
)
def test_a_bad_profile_is_refused_naming_its_key(tmp_path: Path, extra: str, key: str) -> None:
    assert key in refusal(tmp_path, extra)


def test_check_config_names_a_bad_profile_key_and_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path, '[deadlines.bad]\nlabel = "x"\nack_within = "2h"\nremoval_within = "1h"\n')
    result = subprocess.run(
        [sys.executable, "-m", "notifier", "check-config", "-c", str(path)],
        capture_output=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "deadlines.bad.removal_within" in result.stderr.decode()


def test_a_request_names_its_profile_or_takes_its_categorys(tmp_path: Path) -> None:
    words = vocabulary(load(tmp_path))

    def parsed(**fields: str) -> str | None:
        body = {"request_id": "r-1", "platform": "telegram", "urls": ["https://t.me/c/1"]}
        return parse_request(json.dumps(body | fields), words).deadline

    assert parsed(category="deepfake_sexual_abuse") is None  # the platform's own bounds
    assert parsed(category="terrorist_content") == "tco_removal_order"
    assert parsed(category="terrorist_content", deadline="take_it_down") == "take_it_down"
    with pytest.raises(InvalidRequest) as info:
        parsed(category="deepfake_sexual_abuse", deadline="no_such_profile")
    assert str(info.value).startswith("deadline: 'no_such_profile' is not a configured deadline profile")


async def test_a_request_with_an_unknown_profile_is_dead_lettered_with_the_field_named(
    tmp_path: Path, store: SqlStore
) -> None:
    queue = MemoryQueue()
    body = {
        "request_id": "r-1",
        "platform": "telegram",
        "urls": ["https://t.me/c/1"],
        "category": "deepfake_sexual_abuse",
        "deadline": "no_such_profile",
    }
    await queue.publish("takedown.requests", [json.dumps(body).encode()])
    service = IntakeService(
        store=store,
        queue=queue,
        queue_name="takedown.requests",
        vocabulary=vocabulary(load(tmp_path)),
        clock=SimulatedClock(),
        metrics=Metrics(),
        batch_size=10,
    )
    assert await service.process(await queue.receive("takedown.requests", max_messages=10, wait=0)) == [None]
    (letter,) = await store.dead_letters()
    assert letter.reason.startswith("deadline: ")
    assert "no_such_profile" in letter.reason
    assert letter.request_id == "r-1"
    assert await store.get_requests(["r-1"]) == []


def test_the_shipped_configuration_still_loads() -> None:
    settings = load_settings(REPO / "config" / "notifier.toml", {})
    assert settings.category_labels


def test_the_laws_shipped_commented_out_are_valid_profiles(tmp_path: Path) -> None:
    shipped = (REPO / "config" / "notifier.toml").read_text(encoding="utf-8")
    start = shipped.index("# Deadline profiles")
    block = shipped[start : shipped.index("# A platform may tighten", start)]
    toml = "\n".join(
        line.removeprefix("# ")
        for line in block.splitlines()
        if line.startswith("# [deadlines.") or re.match(r"# [a-z_]+ = ", line)
    )
    # Renamed where the base configuration has a profile of the same name.
    toml = toml.replace("[deadlines.tco_removal_order]", "[deadlines.tco_shipped]")
    profiles = load(
        tmp_path, "\n" + toml.replace("[deadlines.take_it_down]", "[deadlines.take_it_down_shipped]")
    )
    hours = {name: p.removal_within / timedelta(hours=1) for name, p in profiles.deadlines.items()}
    assert hours == {
        "tco_removal_order": 1,
        "take_it_down": 48,
        "take_it_down_shipped": 48,
        "tco_shipped": 1,
        "netzdg_manifest": 24,
        "netzdg_other": 168,
        "esafety_removal_notice": 24,
        "kcsc_36h": 36,
    }
    assert profiles.deadlines["tco_shipped"].urgent


async def test_notifier_withdraw_takes_an_unsent_request_out_and_names_an_unknown_one(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/store.db"
    extra = f'\n[store]\nurl = "{url}"\n'
    path = write(tmp_path, extra)
    store = await create_store(url)
    try:
        request = TakedownRequest(
            request_id="r-1",
            platform="telegram",
            urls=("https://t.me/c/1",),
            category="deepfake_sexual_abuse",
        )
        await store.ingest([Incoming(request=request, source="test")], [], now=datetime.now(UTC))
    finally:
        await store.close()
    reason = tmp_path / "why.txt"
    reason.write_text("Decided in error.", encoding="utf-8")
    result = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "notifier",
            "withdraw",
            "r-1",
            "r-9",
            "--reason-file",
            str(reason),
            "-c",
            str(path),
        ],
        capture_output=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr.decode()
    assert "r-1: withdrawn (unsent)" in result.stdout.decode()
    assert "r-9: unknown request" in result.stderr.decode()
    store = await create_store(url)
    try:
        [stored] = await store.get_requests(["r-1"])
        assert stored.state is RequestState.WITHDRAWN
    finally:
        await store.close()
