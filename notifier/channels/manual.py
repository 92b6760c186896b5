"""The manual channel: notices for platforms that only take requests through a web portal (SPEC §6.3).

The notice is rendered into ``<outbox>/<notice_id>/``: ``notice.html`` and ``notice.txt`` to paste
or upload, ``<notice_id>.csv`` and ``<notice_id>.json`` for portals that take a file, and a
``README.txt`` telling staff what to do. The notice then waits in ``awaiting_submission`` until staff
record ``notifier ack <notice_id> --status submitted [--ticket T]``, which counts as delivery.

Every file is written to a temporary name and moved into place, so a crash or a full disk never
leaves half a file, and ``README.txt`` is written last: a folder with a README is complete. Sending
the same notice again rewrites the same files. The files hold victims' data (URLs, explanations),
so folders are private to notifier's user (0700) and files readable by it alone (0600).

Reminders and escalations about a portal notice are written beside it as ``reminder.txt`` and
``escalation.txt``, for staff to follow up by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final, Protocol

from notifier.channels.formatting import within_text
from notifier.domain.evidence import EvidenceKind, EvidenceRecord
from notifier.domain.notices import MessageKind, NoticeContent, SendResult, parse_notice_id
from notifier.failures import DeliveryError
from notifier.logging import get_logger

__all__ = ["ManualChannel", "NoticeRenderer", "outbox_error"]

_DIR_MODE: Final = 0o700
_FILE_MODE: Final = 0o600

# Local conditions that a retry cannot cure: the outbox is not writable by notifier's user, is on a
# read-only file system, or is not a folder at all. Operators must fix these, so they go straight to
# the fallback channel (or fail the notice, with an alert). Anything else (a full disk, a quota, an
# interrupted call, a busy network file system) may pass and is retried within sla.deliver_within.
_PERMANENT_ERRNOS: Final = frozenset(
    {
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.ENAMETOOLONG,
        errno.ELOOP,
        errno.EEXIST,
    }
)

log = get_logger(__name__)


class NoticeRenderer(Protocol):
    """What this channel needs from :class:`notifier.channels.rendering.Renderer`."""

    def subject(self, content: NoticeContent) -> str: ...

    def text(self, content: NoticeContent) -> str: ...

    def html(self, content: NoticeContent) -> str: ...

    def csv(self, content: NoticeContent) -> bytes: ...

    def xarf_json(self, content: NoticeContent) -> bytes: ...


def outbox_error(error: OSError, path: Path) -> DeliveryError:
    """An OSError met while writing to the outbox, classified: permanent when the outbox cannot be
    written to at all (permissions, read-only file system), transient otherwise (disk full)."""
    code = error.errno
    name = errno.errorcode.get(code, "unknown error") if code is not None else "unknown error"
    reason = error.strerror or type(error).__name__
    return DeliveryError(f"outbox {path}: {name} {reason}"[:500], transient=code not in _PERMANENT_ERRNOS)


@dataclass(frozen=True, slots=True)
class _File:
    name: str
    data: bytes


class ManualChannel:
    """Renders notices into an outbox folder for staff to submit on the platform's portal."""

    name = "manual"

    def __init__(self, *, outbox: Path, renderer: NoticeRenderer) -> None:
        self._outbox = outbox
        self._renderer = renderer

    async def send(self, content: NoticeContent) -> SendResult:
        if parse_notice_id(content.notice_id) is None:
            # The id becomes a folder name: never let anything else near the file system.
            raise DeliveryError("not a notice id; nothing written", transient=False)
        folder = self._outbox / content.notice_id
        if content.kind is MessageKind.NOTICE:
            files = self._notice_files(content)
        else:
            files = [_File(f"{content.message_tag}.txt", self._follow_up(content).encode())]
        try:
            await asyncio.to_thread(_write_all, folder, files)
        except OSError as error:
            raise outbox_error(error, folder) from error
        written = tuple(
            EvidenceRecord(
                kind=EvidenceKind.PORTAL_FILE,
                notice_id=content.notice_id,
                payload=file.data,
                meta={"path": str(folder / file.name), "message_kind": content.message_tag},
            )
            for file in files
        )
        if content.kind is MessageKind.NOTICE:
            log.info(
                "manual.rendered",
                notice_id=content.notice_id,
                platform=content.platform,
                folder=str(folder),
            )
            return SendResult(awaiting_submission=True, detail=str(folder), evidence=written)
        path = folder / files[0].name
        log.info(
            "manual.follow_up_written",
            notice_id=content.notice_id,
            platform=content.platform,
            kind=content.kind.value,
            path=str(path),
        )
        return SendResult(awaiting_submission=False, detail=str(path), evidence=written)

    async def close(self) -> None:
        """Nothing to release: every send opens and closes its own files."""

    def _notice_files(self, content: NoticeContent) -> list[_File]:
        # Received when staff file it on the portal: the files state the bounds from filing.
        content = replace(content, from_filing=True)
        renderer = self._renderer
        return [
            _File("notice.html", renderer.html(content).encode()),
            _File("notice.txt", renderer.text(content).encode()),
            _File(f"{content.notice_id}.csv", renderer.csv(content)),
            _File(f"{content.notice_id}.json", renderer.xarf_json(content)),
            # Last: a folder with a README holds the whole notice.
            _File("README.txt", self._readme(content).encode()),
        ]

    def _readme(self, content: NoticeContent) -> str:
        notice_id = content.notice_id
        requests = len(content.requests)
        return "\n".join(
            [
                f"Notice {notice_id} to {content.platform_name} ({content.platform})",
                f"{content.url_count} URL(s) in {requests} request(s)",
                "",
                "This platform takes takedown notices only through its web portal.",
                "",
                "1. Submit the notice on the platform's portal. Use this subject or title:",
                f"     {_one_line(self._renderer.subject(content))}",
                "   and paste notice.txt (or upload notice.html) as the notice. If the portal takes",
                f"   files, attach {notice_id}.csv (one row per URL) and {notice_id}.json",
                "   (machine-readable reports, one per URL).",
                "",
                "2. Then record the submission, with the reference the portal gave you, if any:",
                f"     notifier ack {notice_id} --status submitted --ticket REFERENCE",
                "   or, when the portal gave no reference:",
                f"     notifier ack {notice_id} --status submitted",
                "   Until then the notice counts as not delivered.",
                "",
                "Deadlines asked of the platform, from the moment the notice is filed:",
                f"  acknowledge within  {within_text(content.ack_within, 'en')}",
                f"  remove within       {within_text(content.removal_within, 'en')}",
                "   notifier measures them from the time you record with --status submitted.",
                "",
                "These files identify victims' material. Do not copy them anywhere else;",
                "submit them only on the platform's own portal.",
                "",
            ]
        )

    def _follow_up(self, content: NoticeContent) -> str:
        what = {
            MessageKind.REMINDER: "Reminder",
            MessageKind.FOLLOWUP: "Follow-up",
            MessageKind.CLARIFICATION: "Clarification",
            MessageKind.WITHDRAWAL: "Withdrawal",
        }.get(content.kind, "Escalation")
        return "\n".join(
            [
                f"{what} about notice {content.notice_id} to {content.platform_name}, to be sent by hand",
                "(on the platform's portal, or to its contact for escalations).",
                "",
                f"Subject: {_one_line(self._renderer.subject(content))}",
                "",
                self._renderer.text(content),
            ]
        )


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _write_all(folder: Path, files: list[_File]) -> None:
    folder.parent.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
    folder.mkdir(mode=_DIR_MODE, exist_ok=True)
    # mkdir leaves an existing folder's mode alone, and the umask may have narrowed a new one's.
    folder.chmod(_DIR_MODE)
    for file in files:
        _write_atomically(folder / file.name, file.data)
    _fsync_dir(folder)


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` holds either its old content or all of ``data``."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), _FILE_MODE)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _fsync_dir(folder: Path) -> None:
    """Make the renames durable: a notice reported awaiting submission is on disk."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
