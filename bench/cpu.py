"""Where a machine's CPU went during a run, by program: read from ``/proc`` before and after.

A bench prints its own process's CPU beside its figure; this adds the other programs the figure
depends on (the daemon's worker processes, PostgreSQL, RabbitMQ, the sink), so that a reader can
see whether the limit is the daemon's core or the machine's. Processes that start and end between
the two readings are not seen (their time shows only in the machine's total).
"""

from __future__ import annotations

import os
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")
_PROGRAMS = {"postgres": "PostgreSQL", "beam.smp": "RabbitMQ"}


def _processes() -> dict[int, tuple[str, int, float]]:
    """``pid: (command, parent pid, CPU seconds)`` of every process that can be read."""
    found: dict[int, tuple[str, int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue  # ended while the folder was read
        command = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        found[int(entry.name)] = (command, int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK)
    return found


class ProgramCpu:
    """``start()``, the work, ``stop()``: CPU seconds by program in between."""

    def __init__(self, *, sink_pid: int | None = None) -> None:
        self._sink_pid = sink_pid
        self._before: dict[int, tuple[str, int, float]] = {}

    def start(self) -> None:
        self._before = _processes()

    def stop(self) -> dict[str, float]:
        me = os.getpid()
        spent: dict[str, float] = {}
        for pid, (command, parent, seconds) in _processes().items():
            earlier = self._before.get(pid)
            used = seconds - (earlier[2] if earlier is not None and earlier[0] == command else 0.0)
            if used <= 0:
                continue
            if pid == me:
                program = "this process"
            elif pid == self._sink_pid:
                program = "sink"
            elif parent == me:
                program = "its workers"
            else:
                program = "the kernel" if parent == 2 or pid == 2 else _PROGRAMS.get(command, "other")
            spent[program] = spent.get(program, 0.0) + used
        return spent


def per_message_line(spent: dict[str, float], messages: int) -> str:
    """``CPU a message: this process 17.1 ms, its workers 9.0 ms, …`` (biggest first)."""
    order = sorted(spent.items(), key=lambda item: -item[1])
    total = sum(spent.values())
    per = {name: seconds / max(1, messages) * 1000 for name, seconds in order}
    parts = ", ".join(f"{name} {ms:.1f} ms" for name, ms in per.items() if ms >= 0.05)
    return f"CPU a message by program: {parts} (all {total / max(1, messages) * 1000:.1f} ms)"
