"""``python -m notifier.sandbox``: the sandbox platforms of a configuration, with their staff.

An SMTP sink (the email platforms' mail server, 2526 by default) and a platform API (8091), so
``notifier run`` on the shipped configuration delivers somewhere real, and a content server (8092)
serving the reported posts (learnt from the notices) by their ``Host`` and path, taken down when
the staff remove them. Simulated staff answer the
way the demo's do (auto-replies, replies, bounces through notifier's ``inbound_smtp`` listener,
signed callbacks), on real time with every hour of their delays shortened to ``--hour`` seconds.
Each message received and each answer is printed as one line; SIGINT or SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from urllib.parse import urlsplit

from notifier.clock import SystemClock
from notifier.errors import ConfigError
from notifier.sandbox.api import ReceivedNotice
from notifier.sandbox.platforms import Sandbox
from notifier.sandbox.smtp import Received
from notifier.sandbox.staff import Inbound
from notifier.settings import DEFAULT_CONFIG, Settings, load_settings


async def serve(args: argparse.Namespace) -> None:
    settings = load_settings(args.config)
    inbound_host, _, inbound_port = (args.inbound or settings.inbound_smtp.listen).rpartition(":")
    secret = settings.http.callback_secret
    sandbox = Sandbox(
        settings,
        clock=SystemClock(),
        seed=args.seed,
        inbound=Inbound(
            host=inbound_host or "127.0.0.1",
            port=int(inbound_port or 2525),
            reply_to=settings.authority.reply_to or settings.authority.email,
        ),
        callback_secret=secret.get_secret_value() if secret is not None else None,
        host=args.host,
        smtp_port=args.smtp_port if args.smtp_port is not None else settings.smtp.port,
        api_port=args.api_port if args.api_port is not None else _api_port(settings),
        content_port=args.content_port,
        scale=args.hour / 3600.0,
    )

    def show_mail(received: Received) -> None:
        subject = received.message()["Subject"]
        print(f"smtp  {received.sender} -> {', '.join(received.recipients)}: {subject}", flush=True)

    def show_notice(notice: ReceivedNotice) -> None:
        print(f"api   {notice.payload.get('notice_id')}: ticket {notice.ticket}", flush=True)

    sandbox.sink.listeners.insert(0, show_mail)
    sandbox.api.listeners.insert(0, show_notice)
    await sandbox.start()
    print(
        f"sandbox: SMTP sink on {args.host}:{sandbox.sink.port}, platform API on "
        f"http://{args.host}:{sandbox.api.port}/v1/notices, platform content on "
        f"http://{args.host}:{sandbox.content.port}/; "
        f"staff answer through {inbound_host}:{inbound_port}",
        flush=True,
    )
    if not sandbox.api_staff and any(p.channel == "api" for p in settings.platforms.values()):
        print("sandbox: no callback secret (http.callback_secret_env): the API platform sends no callbacks")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    staff = asyncio.create_task(sandbox.timeline.run(sandbox.clock, stop))
    shown = 0
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.5)
            for action in sandbox.record.actions[shown:]:
                print(
                    f"staff {action.platform} {action.notice_id}: {action.what} {action.detail}".rstrip(),
                    flush=True,
                )
            shown = len(sandbox.record.actions)
    finally:
        await staff
        await sandbox.stop()


def _api_port(settings: Settings) -> int:
    """The port the configuration's platform APIs are reached on, where the sandbox serves them all;
    8091 when no platform sends by API."""
    ports = {
        urlsplit(p.api.url).port or (443 if p.api.url.startswith("https:") else 80)
        for p in settings.platforms.values()
        if p.api is not None
    }
    if len(ports) > 1:
        listed = ", ".join(str(port) for port in sorted(ports))
        raise ConfigError(f"platforms.*.api.url: the sandbox serves one API port, the config names {listed}")
    return ports.pop() if ports else 8091


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m notifier.sandbox", description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", default=os.environ.get("NOTIFIER_CONFIG", str(DEFAULT_CONFIG)))
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in a container)")
    parser.add_argument("--smtp-port", type=int, default=None, help="default: the config's smtp.port")
    parser.add_argument(
        "--api-port", type=int, default=None, help="default: the port of the config's platform API URLs"
    )
    parser.add_argument("--content-port", type=int, default=8092)
    parser.add_argument(
        "--inbound", default="", help="notifier's inbound_smtp host:port (default: from the config)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--hour", type=float, default=1.0, help="real seconds per hour of the staff's delays")
    args = parser.parse_args()
    try:
        asyncio.run(serve(args))
    except ConfigError as error:
        print(f"sandbox: {error}", file=sys.stderr)
        raise SystemExit(2) from None


main()
