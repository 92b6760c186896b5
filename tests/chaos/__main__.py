"""``python -m tests.chaos`` (``make chaos``): a chaos run and its verifier's checklist; exit 1 when
any check fails."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
from pathlib import Path

import structlog

from notifier.store import SqlStore
from tests.chaos.driver import Record, run_chaos
from tests.chaos.plan import Plan
from tests.chaos.verify import report, verify


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    defaults = Plan()
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=defaults.requests)
    parser.add_argument("--publish-for", type=float, default=defaults.publish_for, help="seconds")
    parser.add_argument("--kills", type=int, default=defaults.kills)
    parser.add_argument(
        "--broker-restart",
        choices=("node", "vhost", "none"),
        default=defaults.broker_restart,
        help="node: rabbitmqctl stop_app/start_app; vhost: only this run's vhost goes away",
    )
    parser.add_argument("--no-postgres-restart", action="store_true")
    parser.add_argument("--no-outages", action="store_true", help="keep the SMTP sink and platform API up")
    parser.add_argument("--no-sigterm", action="store_true")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--workdir", type=Path, default=None, help="daemon configs and logs (default: a temp dir)"
    )
    parser.add_argument("--output", type=Path, default=None, help="also write the checklist to this file")
    args = parser.parse_args()
    plan = Plan(
        requests=args.requests,
        publish_for=args.publish_for,
        kills=args.kills,
        broker_restart=args.broker_restart,
        postgres_restart=not args.no_postgres_restart,
        outages=not args.no_outages,
        sigterm=not args.no_sigterm,
        seed=args.seed,
    )
    # The driver files portal notices in-process: their log lines would drown the run's own.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    for noisy in ("aiormq", "aio_pika"):  # this process's publishers, reconnecting through a restart
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="notifier-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)

    async def checked(record: Record, store: SqlStore) -> str:
        return report(record, await verify(record, store))

    text = asyncio.run(run_chaos(plan, workdir, checked))
    print(text)
    print(f"daemon logs: {workdir}")
    if args.output is not None:
        args.output.write_text(text + "\n", encoding="utf-8")
    sys.exit(0 if text.endswith("ALL CHECKS HOLD") else 1)


main()
