"""The manual channel on a real file system: portal notices rendered into the outbox (SPEC §6.3)."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from notifier.channels.manual import ManualChannel, NoticeRenderer, outbox_error
from notifier.channels.rendering import Renderer, default_templates_dir
from notifier.domain.models import Evidence, TakedownRequest
from notifier.domain.notices import Authority, MessageKind, NoticeContent, SendResult
from notifier.failures import DeliveryError

REPO = Path(__file__).resolve().parents[2]
NOTICE_ID = "TD-portalsite-20240903-000007"
EXPLANATION = "Synthetic sexual imagery of an identifiable person made without consent."
URLS = (
    "https://portalsite.example/p/1?ref=a&b=c",
    "https://portalsite.example/p/2",
    "https://portalsite.example/u/%ED%95%9C",
)
KST = timezone(timedelta(hours=9))
NOTICE_FILES = {"notice.html", "notice.txt", f"{NOTICE_ID}.csv", f"{NOTICE_ID}.json", "README.txt"}


def notice_content(kind: MessageKind = MessageKind.NOTICE, notice_id: str = NOTICE_ID) -> NoticeContent:
    return NoticeContent(
        notice_id=notice_id,
        platform="portalsite",
        platform_name="PortalSite",
        language="en",
        created_at=datetime(2024, 9, 3, 19, 30, tzinfo=KST),
        ack_by=datetime(2024, 9, 5, 7, 30, tzinfo=UTC),
        remove_by=datetime(2024, 9, 5, 7, 30, tzinfo=UTC),
        ack_within=timedelta(hours=36),
        removal_within=timedelta(days=7),
        authority=Authority(
            name="Korea Communications Standards Commission",
            email="takedown@authority.example",
            reply_to=None,
            timezone="Asia/Seoul",
        ),
        requests=(
            TakedownRequest(
                request_id="kcsc-2024-000150",
                platform="portalsite",
                urls=URLS[:2],
                category="deepfake_sexual_abuse",
                explanation=EXPLANATION,
                evidence=(Evidence(sha256="a" * 64),),
            ),
            TakedownRequest(
                request_id="kcsc-2024-000151",
                platform="portalsite",
                urls=URLS[2:],
                category="deepfake_sexual_abuse",
            ),
        ),
        kind=kind,
    )


class StubRenderer:
    """A renderer reduced to what the write mechanics need: every format names every URL."""

    def subject(self, content: NoticeContent) -> str:
        return f"[{content.notice_id}] Takedown {content.kind.value} to {content.platform_name}"

    def text(self, content: NoticeContent) -> str:
        urls = "\n".join(url for request in content.requests for url in request.urls)
        return f"{content.kind.value} {content.notice_id}\n{urls}\n"

    def html(self, content: NoticeContent) -> str:
        items = "".join(f"<li>{url}</li>" for request in content.requests for url in request.urls)
        return f"<html><body><ul>{items}</ul></body></html>"

    def csv(self, content: NoticeContent) -> bytes:
        rows = [f"{r.request_id},{url},{r.category}" for r in content.requests for url in r.urls]
        return ("request_id,url,category\r\n" + "\r\n".join(rows) + "\r\n").encode()

    def xarf_json(self, content: NoticeContent) -> bytes:
        reports = [
            {"source_identifier": url, "request_id": r.request_id} for r in content.requests for url in r.urls
        ]
        return json.dumps(reports).encode()


@pytest.fixture(scope="module")
def renderer() -> NoticeRenderer:
    """The real renderer with the shipped English templates."""
    return Renderer(default_templates_dir(), languages=("en",))


@pytest.fixture
def outbox(tmp_path: Path) -> Path:
    return tmp_path / "var" / "outbox"


@pytest.fixture
def channel(outbox: Path, renderer: NoticeRenderer) -> ManualChannel:
    return ManualChannel(outbox=outbox, renderer=renderer)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most permissive umask, so the modes seen are the channel's own choice."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def contents(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def tree(root: Path) -> list[Path]:
    """Everything under ``root`` (nothing when it does not exist)."""
    return sorted(root.rglob("*"))


def make_folder(path: Path, mode: int = 0o777) -> None:
    path.mkdir(parents=True, mode=mode)
    path.chmod(mode)


async def test_a_notice_is_rendered_into_its_own_folder_and_awaits_submission(
    channel: ManualChannel, outbox: Path
) -> None:
    result = await channel.send(notice_content())

    folder = outbox / NOTICE_ID
    assert result == SendResult(awaiting_submission=True, detail=str(folder))
    assert {path.name for path in folder.iterdir()} == NOTICE_FILES


async def test_folders_are_private_and_files_readable_by_notifier_alone(
    channel: ManualChannel, outbox: Path, open_umask: None
) -> None:
    await channel.send(notice_content())

    folder = outbox / NOTICE_ID
    assert mode(outbox) == 0o700
    assert mode(folder) == 0o700
    assert {name: mode(folder / name) for name in NOTICE_FILES} == dict.fromkeys(NOTICE_FILES, 0o600)


async def test_an_existing_notice_folder_is_made_private(
    channel: ManualChannel, outbox: Path, open_umask: None
) -> None:
    make_folder(outbox / NOTICE_ID)

    await channel.send(notice_content())

    assert mode(outbox / NOTICE_ID) == 0o700


async def test_every_url_is_in_every_rendered_file(channel: ManualChannel, outbox: Path) -> None:
    await channel.send(notice_content())

    folder = outbox / NOTICE_ID
    for name in ("notice.html", "notice.txt", f"{NOTICE_ID}.csv", f"{NOTICE_ID}.json"):
        text = (folder / name).read_text(encoding="utf-8")
        missing = [url for url in URLS if url not in text and url.replace("&", "&amp;") not in text]
        assert not missing, f"{name} lacks {missing}"


async def test_readme_tells_staff_to_submit_on_the_portal_and_record_it_with_notifier_ack(
    channel: ManualChannel, outbox: Path, renderer: NoticeRenderer
) -> None:
    await channel.send(notice_content())

    readme = (outbox / NOTICE_ID / "README.txt").read_text(encoding="utf-8")
    assert "portal" in readme
    assert f"notifier ack {NOTICE_ID} --status submitted --ticket" in readme
    assert f"notifier ack {NOTICE_ID} --status submitted\n" in readme
    assert renderer.subject(notice_content()) in readme  # the subject to use
    # Received when it is filed: the deadlines run from filing, which no file can date in advance.
    assert "acknowledge within  36 hours" in readme
    assert "remove within       7 days" in readme
    assert "2024-09-05" not in readme
    notice_text = (outbox / NOTICE_ID / "notice.txt").read_text(encoding="utf-8")
    assert "Acknowledge:     within 36 hours of filing" in notice_text
    assert "2024-09-05" not in notice_text
    assert f"{NOTICE_ID}.csv" in readme
    assert EXPLANATION not in readme


async def test_sending_the_same_notice_again_rewrites_the_same_files(
    channel: ManualChannel, outbox: Path
) -> None:
    first = await channel.send(notice_content())
    written = contents(outbox / NOTICE_ID)
    (outbox / NOTICE_ID / "notice.txt").write_text("edited by mistake")

    second = await channel.send(notice_content())

    assert second == first
    assert contents(outbox / NOTICE_ID) == written  # same names, same bytes, no temporary leftovers
    assert [path.name for path in tree(outbox) if path.parent == outbox] == [NOTICE_ID]


_READ_ONLY_CHILD = """
import asyncio, json, sys
from pathlib import Path
from notifier.channels.manual import ManualChannel
from notifier.channels.rendering import Renderer, default_templates_dir
from notifier.failures import DeliveryError
from tests.integration.test_manual_channel import notice_content

async def main() -> None:
    channel = ManualChannel(outbox=Path(sys.argv[1]), renderer=Renderer(default_templates_dir()))
    try:
        await channel.send(notice_content())
    except DeliveryError as error:
        print(json.dumps({"transient": error.transient, "detail": error.detail}))
    else:
        print(json.dumps({"written": True}))

asyncio.run(main())
"""


async def test_a_read_only_outbox_is_a_permanent_failure(tmp_path: Path) -> None:
    # Root writes into read-only folders whatever their mode (CAP_DAC_OVERRIDE), so when the tests
    # run as root, as CI does, the send runs in a child process with that capability dropped.
    outbox = tmp_path / "outbox"
    make_folder(outbox, 0o555)
    command = [sys.executable, "-c", _READ_ONLY_CHILD, str(outbox)]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv is not None, "util-linux setpriv is needed to drop root's CAP_DAC_OVERRIDE"
        caps = "-dac_override,-dac_read_search"
        command = [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}", *command]
    result = await asyncio.to_thread(
        subprocess.run,
        command,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer.get("transient") is False, answer
    assert "EACCES" in answer["detail"]
    assert list(outbox.iterdir()) == []


async def test_an_outbox_that_is_not_a_folder_is_a_permanent_failure(
    tmp_path: Path, renderer: NoticeRenderer
) -> None:
    # Runs as root too (unlike the read-only case): no permission bit lets a file hold a folder.
    blocker = tmp_path / "outbox"
    blocker.write_text("not a folder")
    channel = ManualChannel(outbox=blocker, renderer=renderer)

    with pytest.raises(DeliveryError) as caught:
        await channel.send(notice_content())

    assert not caught.value.transient
    assert blocker.read_text() == "not a folder"


async def test_a_file_where_the_notice_folder_should_be_is_a_permanent_failure(
    channel: ManualChannel, outbox: Path
) -> None:
    make_folder(outbox)
    (outbox / NOTICE_ID).write_text("stray file")

    with pytest.raises(DeliveryError) as caught:
        await channel.send(notice_content())

    assert not caught.value.transient


@pytest.mark.parametrize(
    ("code", "transient"),
    [
        (errno.ENOSPC, True),
        (errno.EDQUOT, True),
        (errno.EAGAIN, True),
        (errno.EINTR, True),
        (errno.EIO, True),
        (errno.EFBIG, True),
        (errno.EACCES, False),
        (errno.EPERM, False),
        (errno.EROFS, False),
        (errno.ENOTDIR, False),
    ],
)
def test_outbox_errors_are_classified_by_errno(code: int, transient: bool) -> None:
    error = outbox_error(OSError(code, os.strerror(code)), Path("/srv/outbox/x"))

    assert error.transient is transient
    assert error.detail.startswith(f"outbox /srv/outbox/x: {errno.errorcode[code]} ")


WRITE_WITH_A_FILE_SIZE_LIMIT = """
import asyncio, json, resource, signal, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from tests.integration.test_manual_channel import StubRenderer, notice_content
from notifier.channels.manual import ManualChannel
from notifier.failures import DeliveryError

class LongerNotice(StubRenderer):
    def html(self, content):
        return super().html(content) + "<p>" + "x" * 100_000 + "</p>"

async def main() -> None:
    outbox = Path(sys.argv[1])
    await ManualChannel(outbox=outbox, renderer=StubRenderer()).send(notice_content())
    # Files may now grow to 4 KiB only: the longer notice.html cannot be written whole.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
    try:
        await ManualChannel(outbox=outbox, renderer=LongerNotice()).send(notice_content())
    except DeliveryError as error:
        print(json.dumps({"transient": error.transient, "detail": error.detail}))

asyncio.run(main())
"""


def test_a_write_that_fails_midway_leaves_the_previous_files_whole(outbox: Path) -> None:
    # In a child process: the file size limit is process-wide and would hit pytest's own files.
    done = subprocess.run(
        [sys.executable, "-c", WRITE_WITH_A_FILE_SIZE_LIMIT, str(outbox), str(REPO)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    failure = json.loads(done.stdout.splitlines()[-1])  # after the log lines
    assert failure["transient"] is True
    assert "EFBIG" in failure["detail"]
    folder = outbox / NOTICE_ID
    assert {path.name for path in folder.iterdir()} == NOTICE_FILES  # no half-written temporaries
    assert (folder / "notice.html").read_text() == StubRenderer().html(notice_content())


async def test_a_renderer_failure_writes_nothing(outbox: Path) -> None:
    class BrokenJson(StubRenderer):
        def xarf_json(self, content: NoticeContent) -> bytes:
            raise RuntimeError("template bug")

    with pytest.raises(RuntimeError):
        await ManualChannel(outbox=outbox, renderer=BrokenJson()).send(notice_content())

    assert tree(outbox) == []


@pytest.mark.parametrize("notice_id", ["../../etc", "TD-portalsite-20240903-000007/../x", ""])
async def test_only_a_notice_id_becomes_a_folder_name(
    channel: ManualChannel, tmp_path: Path, notice_id: str
) -> None:
    before = tree(tmp_path)

    with pytest.raises(DeliveryError) as caught:
        await channel.send(notice_content(notice_id=notice_id))

    assert not caught.value.transient
    assert tree(tmp_path) == before


@pytest.mark.parametrize(
    ("kind", "follow_up", "name"),
    [
        (MessageKind.REMINDER, 1, "reminder.txt"),
        (MessageKind.ESCALATION, 1, "escalation.txt"),
        (MessageKind.ESCALATION, 2, "escalation-2.txt"),  # never over the first one
    ],
)
async def test_reminders_and_escalations_are_written_beside_the_notice_for_staff_to_follow_up(
    channel: ManualChannel,
    outbox: Path,
    renderer: NoticeRenderer,
    kind: MessageKind,
    follow_up: int,
    name: str,
    open_umask: None,
) -> None:
    await channel.send(notice_content())
    notice_files = contents(outbox / NOTICE_ID)

    result = await channel.send(replace(notice_content(kind), follow_up=follow_up))

    path = outbox / NOTICE_ID / name
    assert result == SendResult(awaiting_submission=False, detail=str(path))
    assert mode(path) == 0o600
    text = path.read_text(encoding="utf-8")
    assert f"Subject: {renderer.subject(notice_content(kind))}" in text
    assert all(url in text for url in URLS)
    assert {k: v for k, v in contents(outbox / NOTICE_ID).items() if k != path.name} == notice_files


async def test_logs_name_the_notice_and_never_the_explanation(channel: ManualChannel, outbox: Path) -> None:
    with capture_logs() as logs:
        await channel.send(notice_content())

    assert logs == [
        {
            "event": "manual.rendered",
            "log_level": "info",
            "notice_id": NOTICE_ID,
            "platform": "portalsite",
            "folder": str(outbox / NOTICE_ID),
        }
    ]
