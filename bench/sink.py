"""A minimal, fast SMTP sink for the benchmarks, run in a process of its own.

The sandbox sink (:mod:`notifier.sandbox.smtp`, aiosmtpd) parses every line of every message in
Python and manages about a hundred 160 KB messages a second on this machine: measured against it,
any client looks as slow as the sink. This one speaks just enough SMTP for a client that behaves
(EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT; PIPELINING, 8BITMIME, SMTPUTF8 and SIZE
advertised), answers 250 to everything, keeps nothing, and finds the end of a message with one
``bytes.find`` per chunk received. It counts messages and bytes.

Run as a child process (:class:`SinkProcess`), so that it takes the machine's other core rather
than the measured process's. The parent talks to it over its standard input and output:
the child prints ``port <n>`` once listening; each ``stats`` line written to it is answered with
``<messages> <bytes> <cpu seconds>``; end of input stops it. With ``--record`` it also keeps, per
message, the moment its end was received (``time.monotonic()``, the system-wide monotonic clock
on Linux, so comparable with the parent's) and its envelope sender; each ``arrivals`` line is
answered with those not yet reported, as one JSON line ``[[seconds, sender], ...]``.

Usage on its own: .venv/bin/python bench/sink.py [--port N] [--record]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

TERMINATOR: Final = b"\r\n.\r\n"
MAX_SIZE: Final = 50 * 1024 * 1024
EHLO_REPLY: Final = (
    b"250-sink.bench.example\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
    + f"250 SIZE {MAX_SIZE}\r\n".encode()
)
REPLIES: Final = {
    b"HELO": b"250 sink.bench.example\r\n",
    b"MAIL": b"250 2.1.0 OK\r\n",
    b"RCPT": b"250 2.1.5 OK\r\n",
    b"RSET": b"250 2.0.0 OK\r\n",
    b"NOOP": b"250 2.0.0 OK\r\n",
}
MAX_LINE: Final = 4096
SCRIPT: Final = str(Path(__file__).resolve())


class Counters:
    """What every connection of the sink has received, together."""

    def __init__(self, *, record: bool = False) -> None:
        self.messages = 0
        self.bytes = 0
        # (monotonic seconds at the message's end, envelope sender), when recording.
        self.arrivals: list[tuple[float, str]] | None = [] if record else None


class SinkProtocol(asyncio.Protocol):
    """One SMTP session. Commands are handled a whole line at a time (pipelined ones in one go);
    message data is never kept, only scanned for the terminating ``CRLF . CRLF``."""

    def __init__(self, counters: Counters) -> None:
        self._counters = counters
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._in_data = False
        self._tail = b""  # the last bytes of message data seen, for a terminator split across reads
        self._size = 0
        self._sender = b""  # the argument of the last MAIL command

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.write(b"220 sink.bench.example ESMTP ready\r\n")

    def data_received(self, data: bytes) -> None:
        out: list[bytes] = []
        while data:
            if self._in_data:
                data = self._message_data(data, out)
            else:
                data = self._commands(self._buffer + data, out)
        if out and self._transport is not None:
            self._transport.write(b"".join(out))

    def _message_data(self, chunk: bytes, out: list[bytes]) -> bytes:
        """Scan message data; return what follows its end (empty while the message goes on)."""
        end = -1
        # A terminator starting in the previous read: the only place one can hide from chunk.find.
        boundary = (self._tail + chunk[:4]).find(TERMINATOR)
        if 0 <= boundary < len(self._tail):
            end = boundary + len(TERMINATOR) - len(self._tail)
        else:
            found = chunk.find(TERMINATOR)
            if found >= 0:
                end = found + len(TERMINATOR)
        if end < 0:
            self._size += len(chunk)
            self._tail = (self._tail + chunk[-4:])[-4:]
            return b""
        self._size += end
        self._counters.messages += 1
        self._counters.bytes += self._size
        if self._counters.arrivals is not None:
            sender = self._sender.partition(b":")[2].strip().split(b" ")[0].strip(b"<>")
            self._counters.arrivals.append((time.monotonic(), sender.decode("utf-8", "replace")))
        self._in_data = False
        out.append(b"250 2.0.0 OK: queued\r\n")
        return chunk[end:]

    def _commands(self, buffer: bytes, out: list[bytes]) -> bytes:
        """Answer every complete command line; return the data that follows DATA, if any."""
        start = 0
        while True:
            newline = buffer.find(b"\r\n", start)
            if newline < 0:
                self._buffer = buffer[start:]
                if len(self._buffer) > MAX_LINE:
                    out.append(b"500 5.5.2 line too long\r\n")
                    self._close()
                    self._buffer = b""
                return b""
            verb = buffer[start : start + 4].upper()
            line, start = buffer[start:newline], newline + 2
            if verb == b"MAIL":
                self._sender = line
            if verb == b"EHLO":
                out.append(EHLO_REPLY)
            elif verb == b"DATA":
                out.append(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                self._in_data, self._tail, self._size = True, b"\r\n", 0
                self._buffer = b""
                return buffer[start:]
            elif verb == b"QUIT":
                out.append(b"221 2.0.0 Bye\r\n")
                if self._transport is not None:
                    self._transport.write(b"".join(out))
                out.clear()
                self._close()
                self._buffer = b""
                return b""
            else:
                out.append(REPLIES.get(verb, b"502 5.5.1 not implemented\r\n"))

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def serve(port: int, *, record: bool = False) -> None:
    """Listen on 127.0.0.1:``port``, print ``port <n>``, answer ``stats`` (and ``arrivals``) until
    input ends."""
    loop = asyncio.get_running_loop()
    counters = Counters(record=record)
    server = await loop.create_server(lambda: SinkProtocol(counters), "127.0.0.1", port, backlog=128)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        while line := await reader.readline():
            if line.strip() == b"stats":
                print(f"{counters.messages} {counters.bytes} {time.process_time():.3f}", flush=True)
            elif line.strip() == b"arrivals":
                arrivals = counters.arrivals or []
                print(json.dumps(arrivals), flush=True)
                arrivals.clear()


@dataclass(frozen=True, slots=True)
class SinkStats:
    messages: int
    bytes: int
    cpu_seconds: float

    def __sub__(self, other: SinkStats) -> SinkStats:
        return SinkStats(
            messages=self.messages - other.messages,
            bytes=self.bytes - other.bytes,
            cpu_seconds=self.cpu_seconds - other.cpu_seconds,
        )


class SinkProcess:
    """The sink in a child process: ``async with SinkProcess() as sink: sink.port, await sink.stats()``.

    ``record``: keep each message's arrival time and envelope sender (:meth:`arrivals`)."""

    def __init__(self, *, record: bool = False) -> None:
        self.port = 0
        self._record = record
        self._process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> SinkProcess:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            SCRIPT,
            *(["--record"] if self._record else []),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=64 * 1024 * 1024,  # an ``arrivals`` answer is one line
        )
        try:
            line = await asyncio.wait_for(self._stdout().readline(), timeout=30)
            if not line.startswith(b"port "):
                raise RuntimeError(f"the SMTP sink did not start (said {line!r})")
            self.port = int(line.split()[1])
        except BaseException:
            await self.close()
            raise
        return self

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _stdout(self) -> asyncio.StreamReader:
        assert self._process is not None and self._process.stdout is not None
        return self._process.stdout

    async def stats(self) -> SinkStats:
        assert self._process is not None and self._process.stdin is not None
        self._process.stdin.write(b"stats\n")
        await self._process.stdin.drain()
        messages, size, cpu = (await self._stdout().readline()).split()
        return SinkStats(messages=int(messages), bytes=int(size), cpu_seconds=float(cpu))

    async def arrivals(self) -> list[tuple[float, str]]:
        """(monotonic seconds, envelope sender) of each message received since the last call."""
        assert self._process is not None and self._process.stdin is not None
        self._process.stdin.write(b"arrivals\n")
        await self._process.stdin.drain()
        return [(float(at), str(sender)) for at, sender in json.loads(await self._stdout().readline())]

    async def close(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        assert process.stdin is not None
        process.stdin.close()  # end of input: the sink stops
        try:
            await asyncio.wait_for(process.wait(), timeout=5)
        except TimeoutError:
            process.kill()
            await process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--record", action="store_true", help="keep each message's arrival time and sender")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, record=args.record))


if __name__ == "__main__":
    main()
