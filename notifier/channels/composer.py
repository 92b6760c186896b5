"""Composing notice emails beside the event loop (``runtime.compose_processes``).

Rendering, building and flattening the email of a 50-request notice is some 15 ms of pure-Python
CPU. In a worker thread it still holds the interpreter's lock, so the event loop (claims, the
store's writes, SMTP, intake) waits while it runs: one process's dispatch was bounded by one core.
With ``compose_processes`` ≥ 1 the daemon composes in processes of its own, on the machine's other
cores, and gets back the bytes to send; a composition that needs the message object (8-bit text or
internationalised addresses, which the SMTP session decides how to flatten) comes back as the
message. Without (0, or on a one-core machine by default) it composes in a worker thread.

A worker process lost (killed, out of memory) costs nothing but time: that composition is done
again in a thread, and the next one starts a new pool. A composition's own error (a recipient
address the email package refuses) is raised as it would be in the daemon's process.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import types
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path

from notifier.channels.mime import MessageFields, build_notice_email, notice_email_bytes, plain
from notifier.channels.rendering import Renderer
from notifier.domain.notices import NoticeContent
from notifier.logging import get_logger

__all__ = ["Composer", "EmailJob", "compose"]

log = get_logger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class EmailJob:
    """Everything one email is made of, and its envelope (to tell whether it is 7-bit as is)."""

    content: NoticeContent
    from_addr: str
    reply_to: str | None
    to: tuple[str, ...]
    cc: tuple[str, ...]
    message_id: str
    in_reply_to: str | None
    date: datetime | None
    sender: str
    recipients: tuple[str, ...]


def compose(job: EmailJob, renderer: Renderer) -> bytes | EmailMessage:
    """The email of ``job``: flattened, when it travels as it is (7-bit, ASCII addresses), else
    the message, which the SMTP session flattens as the server's extensions allow."""
    fields: MessageFields = {
        "from_addr": job.from_addr,
        "reply_to": job.reply_to,
        "to": job.to,
        "cc": job.cc,
        "message_id": job.message_id,
        "in_reply_to": job.in_reply_to,
        "date": job.date,
    }
    # An internationalised envelope always needs the message object: not rendered twice for it.
    if job.sender.isascii() and all(r.isascii() for r in job.recipients):
        data = notice_email_bytes(job.content, renderer=renderer, **fields)
        if plain(data, job.sender, job.recipients):
            return data
    return build_notice_email(job.content, renderer=renderer, **fields)


# -- in a worker process ------------------------------------------------------------------------

_renderer: Renderer | None = None


def _start_worker(templates_dir: str) -> None:
    """A worker's start: the templates compiled once; Ctrl-C left to the daemon, which stops the
    pool itself (otherwise every worker would print its own interrupted traceback); and an exit
    as soon as the daemon's process is gone, however it ended (``kill -9`` included: an idle
    worker would otherwise wait for work forever)."""
    global _renderer  # noqa: PLW0603 - one renderer per worker process, made once
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), name="parent", daemon=True).start()
    _renderer = Renderer(Path(templates_dir))


def _exit_with(parent_sentinel: int) -> None:
    multiprocessing.connection.wait([parent_sentinel])
    os._exit(0)


def _compose_in_worker(job: EmailJob) -> bytes | EmailMessage:
    assert _renderer is not None, "the worker was started without its templates"
    return compose(job, _renderer)


def _ready() -> bool:
    return _renderer is not None


# -- in the daemon ------------------------------------------------------------------------------


class Composer:
    """Composes emails in ``processes`` worker processes (0: in a worker thread)."""

    def __init__(self, renderer: Renderer, *, processes: int = 0) -> None:
        if processes < 0:
            raise ValueError("processes must not be negative")
        self._renderer = renderer
        self._processes = processes
        self._pool: ProcessPoolExecutor | None = None
        self._started: list[Future[bool]] = []
        self._closed = False

    @property
    def processes(self) -> int:
        return self._processes

    async def start(self) -> None:
        """Start the worker processes and wait until they have compiled the templates, so the
        first notice does not wait for them."""
        if self._ensure_pool() is not None:
            await asyncio.gather(*(asyncio.wrap_future(started) for started in self._started))

    def warm(self) -> None:
        """Start the worker processes in the background (the daemon's start does not wait)."""
        self._ensure_pool()

    async def compose(self, job: EmailJob, *, inline: bool = False) -> bytes | EmailMessage:
        """Compose ``job``: in a worker process, or a thread; ``inline`` (a small, urgent notice) at
        once in this thread, which is quicker than handing it over."""
        if inline:
            return compose(job, self._renderer)
        pool = self._ensure_pool()
        # Until the workers have started (a second or two: a fresh interpreter each), notices are
        # composed in a thread rather than wait for them.
        if pool is not None and all(started.done() for started in self._started):
            try:
                return await asyncio.get_running_loop().run_in_executor(pool, _compose_in_worker, job)
            except BrokenProcessPool:
                log.warning("compose.worker_lost", processes=self._processes)
                if self._pool is pool:
                    self._pool = None
                    pool.shutdown(wait=False, cancel_futures=True)
        return await asyncio.to_thread(compose, job, self._renderer)

    def worker_pids(self) -> list[int]:
        """The process ids of the running workers (none before the first composition or start)."""
        pool = self._pool
        # The executor keeps its workers by pid; it has no public accessor.
        return sorted(getattr(pool, "_processes", None) or {}) if pool is not None else []

    def close(self) -> None:
        """Stop the worker processes: each ends once it has finished what it is doing (starting,
        at most); nothing waits for that."""
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _ensure_pool(self) -> ProcessPoolExecutor | None:
        if self._processes == 0 or self._closed:
            return None
        if self._pool is None:
            # "spawn": a fresh interpreter, not a fork of a process with threads and an event loop.
            # Every worker is started here, by the submissions (the executor starts one process a
            # submission while none is idle), so none starts with the main module's stand-in gone.
            with _main_module_left_out():
                self._pool = ProcessPoolExecutor(
                    max_workers=self._processes,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start_worker,
                    initargs=(str(self._renderer.folder),),
                )
                self._started = [self._pool.submit(_ready) for _ in range(self._processes)]
        return self._pool


@contextlib.contextmanager
def _main_module_left_out() -> Iterator[None]:
    """Start worker processes without running the main module again in each of them.

    A spawned worker runs the parent's main module (as ``__mp_main__``) before its first task,
    unless that is a package's ``__main__``. Under the ``notifier`` console script the main module
    is the script, which imports the whole CLI: some 2 s of CPU a worker, at every start of the
    daemon, for nothing (a worker needs this module alone, which it imports by name). While the
    workers start, the main module is a stand-in with no file or spec, so there is nothing to run.
    """
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main
