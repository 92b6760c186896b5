"""One ``notifier run`` per SQLite file.

Two daemons on one SQLite file would both take in and dispatch the same work; SQLite's own locks
keep the file consistent but cannot say "someone else is already running". The daemon therefore
holds an exclusive ``flock`` on ``<database>.run-lock`` for as long as it runs. The kernel drops
the lock when the process dies, however it dies (``kill -9`` included), so a crash never leaves a
stale lock to clean up by hand. The file itself stays; only the lock on it matters. The CLI does
not take this lock: it shares the database with a running daemon by design.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType

from notifier.errors import AlreadyRunning


class RunLock:
    """A held run lock; :meth:`close` releases it (so does the end of the process)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def close(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def lock_path(db_path: Path) -> Path:
    """The lock beside the real database file: a symbolic link to it, or a path through a linked
    folder, leads to the same lock."""
    real = db_path.resolve()
    return real.with_name(real.name + ".run-lock")


def acquire_run_lock(db_path: Path) -> RunLock:
    """Take the run lock of the SQLite database ``db_path`` or raise :class:`AlreadyRunning`.

    Never waits: a second daemon should say at once that it is not needed, naming the process
    that holds the database.
    """
    path = lock_path(db_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # os.open makes the descriptor non-inheritable, so a child process never keeps the lock alive.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_pid(fd)
        os.close(fd)
        who = f"process {holder}" if holder else "another process"
        raise AlreadyRunning(
            f"notifier is already running on {db_path} ({who} holds {path}); "
            "stop it first, or give this one another database"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return RunLock(path, fd)


def _read_pid(fd: int) -> int | None:
    """The pid the holder wrote, if it has written it yet."""
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(fd, 32, 0).decode().strip())
    return None
