"""``notifier demo``: the daemon, unchanged, against the sandbox platforms, a month in a minute or two.

The daemon of ``notifier run`` (intake, batching, dispatch, acknowledgements, the SLA monitor, the
HTTP server, the inbound SMTP listener) runs on the configuration given (the embedded default),
with its store, queue and outbox moved into the demo's folder and its network ports moved to free
loopback ones. Its clock is a :class:`~notifier.clock.SimulatedClock` that jumps ahead only while
everything is idle: every service waits for its next business deadline, no send or reply is in
flight and the queues are empty. Then time jumps to the earliest of the daemon's deadlines, the
next hotline decision and the next thing a platform's staff do. Work itself takes no business time,
so the figures in the report are exactly what the scenario made the platforms do; transport
signatures (callbacks) stay on real time. ``--speed`` caps how fast business time runs.

This module is the command's side: the demo's folder, its log, the progress line, the report files
and the summary; :mod:`notifier.demo.simulation` runs the daemon and the platforms on the clock.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections import Counter
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn

from notifier.demo import scenario
from notifier.demo.simulation import Demo, DemoError
from notifier.logging import configure_logging
from notifier.sandbox.staff import Record
from notifier.services.report import render_html, render_json, render_table

MARKER = ".notifier-demo"  # the demo only ever empties a folder it made itself


@dataclass
class DemoResult:
    folder: Path
    report: dict[str, Any]
    report_html: Path
    report_json: Path
    log: Path
    record: Record
    events: Counter[str]
    # The same month by deadline profile: the one-hour orders apart from the platforms' bounds.
    by_profile: dict[str, Any] = field(default_factory=dict)
    sandbox_failures: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    timezone: str = "UTC"  # the authority's: the table's period is read in it


def prepare_folder(folder: Path) -> None:
    """Empty ``folder`` for a new run: only if it is missing, empty, or an earlier demo's."""
    if folder.exists():
        if not folder.is_dir():
            raise DemoError(f"{folder} exists and is not a folder")
        if any(folder.iterdir()) and not (folder / MARKER).exists():
            raise DemoError(f"{folder} is not empty and was not made by notifier demo; choose another --out")
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / MARKER).write_text("made by notifier demo; emptied by the next run\n", encoding="utf-8")


def _progress_line(demo: Demo) -> str:
    events = demo.tap.events
    return (
        f"requests {events['request.accepted']:>4}  notices {events['notice.delivered']:>3} delivered  "
        f"receipts {events['receipt.received']:>3}  acks {events['ack.received']:>3}  "
        f"bounces {events['notice.bounced']:>2}  reminders {events['sla.reminder']:>2}  "
        f"breaches {events['sla.breach']:>2}"
    )


async def run_demo(
    config: Path,
    *,
    folder: Path,
    requests: int = scenario.DEFAULT_REQUESTS,
    seed: int = 7,
    speed: float = scenario.DEFAULT_SPEED,
    console: Console | None = None,
    environ: MutableMapping[str, str] | None = None,
) -> DemoResult:
    """Run the demo; the daemon's JSON log lines go to ``folder/notifier.log.jsonl``."""
    prepare_folder(folder)
    console = console or Console(stderr=True)
    demo = Demo(config, folder=folder, requests=requests, seed=seed, speed=speed, environ=environ)
    log_path = folder / "notifier.log.jsonl"
    started = time.monotonic()
    with log_path.open("w", encoding="utf-8") as log_file:
        configure_logging(json=True, stream=log_file, extra=[demo.tap])
        try:
            report, by_profile = await _run(demo, console, log_file)
        finally:
            configure_logging(json=False)
    assert demo.sandbox is not None
    html_path, json_path = folder / "report.html", folder / "report.json"
    assert demo.settings is not None
    authority = demo.settings.authority
    html_path.write_text(
        render_html(report, authority=authority.name, timezone=authority.timezone), encoding="utf-8"
    )
    json_path.write_text(render_json(report), encoding="utf-8")
    (folder / "report-by-profile.json").write_text(render_json(by_profile), encoding="utf-8")
    return DemoResult(
        folder=folder,
        report=report,
        report_html=html_path,
        report_json=json_path,
        log=log_path,
        record=demo.sandbox.record,
        events=demo.tap.events,
        by_profile=by_profile,
        sandbox_failures=list(demo.sandbox.timeline.failures),
        elapsed_s=time.monotonic() - started,
        timezone=authority.timezone,
    )


async def _run(demo: Demo, console: Console, log_file: TextIO) -> tuple[dict[str, Any], dict[str, Any]]:
    end = scenario.START + scenario.MONTH
    total = scenario.MONTH.total_seconds()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[line]}"),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("starting", total=total, line="")

        def step() -> None:
            now = demo.clock.now()
            local = now.astimezone(scenario.SEOUL).strftime("%Y-%m-%d %H:%M KST")
            progress.update(
                task,
                completed=min(total, (now - scenario.START).total_seconds()),
                description=local,
                line=_progress_line(demo),
            )
            log_file.flush()

        try:
            await demo.start()
            await demo.play(step)
            step()
            progress.update(
                task, completed=total, description=end.astimezone(scenario.SEOUL).strftime("%Y-%m-%d")
            )
            report, by_profile = await demo.report(), await demo.report(by="profile")
        finally:
            with contextlib.suppress(Exception):
                await demo.stop()
    return report, by_profile


def print_summary(result: DemoResult, console: Console) -> None:
    render_table(result.report, console, timezone=result.timezone)
    console.print()
    if result.by_profile:
        render_table(result.by_profile, console, timezone=result.timezone)
        console.print()
    console.print(f"HTML report: {result.report_html}")
    console.print(f"JSON report: {result.report_json} (by deadline profile: report-by-profile.json)")
    console.print(f"JSON logs:   {result.log}")
    key = result.folder / "evidence.key"
    if key.exists():
        console.print(f"Evidence:    {key} holds the key of the month's evidence record (evidence.key_env)")
    console.print(f"One month of business time in {result.elapsed_s:.1f} s of real time.")
    if result.sandbox_failures:
        console.print(f"[red]{len(result.sandbox_failures)} platform answers failed:[/red]")
        for failure in result.sandbox_failures[:10]:
            console.print(f"  {failure}")


def scenario_summary(result: DemoResult) -> dict[str, Any]:
    """What the sandbox platforms did, counted per platform (for the closing lines and the tests)."""
    counts: dict[str, Counter[str]] = {}
    for action in result.record.actions:
        counts.setdefault(action.platform, Counter())[action.what] += max(1, len(action.request_ids))
    return {platform: dict(counter) for platform, counter in sorted(counts.items())}


__all__ = [
    "Demo",
    "DemoError",
    "DemoResult",
    "print_summary",
    "run_demo",
    "scenario_summary",
]
