"""``notifier check-config``: load and validate the configuration, and say what it may get wrong."""

from __future__ import annotations

from typing import Annotated

import typer
from cryptography.hazmat.primitives.asymmetric import rsa
from rich.table import Table

from notifier.channels.dkim import dns_record
from notifier.channels.rendering import Renderer
from notifier.cli_args import ConfigOption, err, fail, out, settings_from
from notifier.domain.durations import format_duration
from notifier.errors import ConfigError
from notifier.settings import Settings, mask_url
from notifier.settings.warnings import config_warnings


def _alerts_line(settings: Settings) -> str:
    """Where operations alerts go, and over which relay."""
    alerts, smtp = settings.alerts, settings.smtp
    if not settings.authority.operations_email:
        return "off (authority.operations_email is empty)"
    sender = alerts.from_ or smtp.from_
    if alerts.host:
        return f"{alerts.host}:{alerts.port}  starttls={alerts.starttls}  from {sender}"
    return f"through the [smtp] relay  from {sender}"


def _dkim_line(settings: Settings) -> str:
    """Whether outgoing mail is signed, and with which selector (never the key)."""
    dkim = settings.dkim
    key = dkim.key
    if key is None:
        return "off (no [dkim]: outgoing email is not signed)"
    kind = f"rsa-{key.key_size}" if isinstance(key, rsa.RSAPrivateKey) else "ed25519"
    return (
        f"{dkim.selector}._domainkey.{dkim.domain}  {kind}  key from ${dkim.private_key_env}  "
        f"signs {', '.join(dkim.headers)}"
    )


def _evidence_line(settings: Settings) -> str:
    section = settings.evidence
    if not section.enabled:
        return "off"
    key = "set" if section.key else "NOT SET (notifier run refuses to start without it)"
    return f"on  key {section.key_env}: {key}  payloads kept {format_duration(section.retention)}"


def register(app: typer.Typer) -> None:
    """Add ``notifier check-config`` to ``app``."""

    @app.command("check-config")
    def check_config(
        config: ConfigOption = None,
        strict: Annotated[bool, typer.Option("--strict", help="Refuse the warnings too (exit 2).")] = False,
        dkim_record: Annotated[
            bool,
            typer.Option(
                "--dkim-record",
                help="Print only the DNS TXT record to publish for the \\[dkim] key (its public half).",
            ),
        ] = False,
    ) -> None:
        """Load and validate the configuration; print what was loaded, and what it may get wrong."""
        settings = settings_from(config)
        if dkim_record:
            key = settings.dkim.key
            if key is None:
                raise fail(
                    "notifier: --dkim-record: no [dkim] section (domain, selector, private_key_env)", 2
                )
            err.print(
                f"publish at {settings.dkim.selector}._domainkey.{settings.dkim.domain} (TXT):", markup=False
            )
            out.print(dns_record(key), markup=False)
            return
        authority, queue, http, smtp = settings.authority, settings.queue, settings.http, settings.smtp
        lines = [
            f"configuration: {settings.config_path}",
            f"authority: {authority.name} <{authority.email}>",
            f"  time zone {authority.timezone}; operations: {', '.join(authority.operations_email) or '-'}",
            f"categories: {', '.join(settings.categories)}",
            f"deadline profiles: {', '.join(settings.deadlines) or '-'}",
            f"store: {mask_url(settings.store.resolved_url)}",
            f"queue: {mask_url(queue.resolved_url)}  requests={queue.requests}  acks={queue.acks}",
            f"http: {http.listen or 'off'}  intake token: {'set' if http.intake_token else 'none'}",
            f"smtp: {smtp.host}:{smtp.port}  starttls={smtp.starttls}",
            f"alerts: {_alerts_line(settings)}",
            f"dkim: {_dkim_line(settings)}",
            f"evidence: {_evidence_line(settings)}",
        ]
        try:
            Renderer(settings.templates.folder)
        except ConfigError as error:
            raise fail(f"notifier: {error}", 2) from None
        lines.append(f"templates: {settings.templates.folder} (en, ko; every template rendered once)")
        for line in lines:
            out.print(line, markup=False)
        table = Table(title="platforms", title_justify="left")
        for column in ("id", "name", "channel", "fallback", "lang", "batch", "ack", "removal"):
            table.add_column(column, no_wrap=True)
        for platform_id, platform in settings.platforms.items():
            ack = platform.sla.ack_within or settings.sla.ack_within
            removal = platform.sla.removal_within or settings.sla.removal_within
            table.add_row(
                platform_id,
                platform.name,
                platform.channel,
                platform.fallback or "-",
                platform.language,
                f"{platform.batch.max_items} per {format_duration(platform.batch.max_wait)}",
                format_duration(ack),
                format_duration(removal),
            )
        out.print(table)
        warnings = config_warnings(settings)
        for warning in warnings:
            err.print(f"notifier: warning: {warning}", markup=False)
        if strict and warnings:
            raise fail(f"notifier: {len(warnings)} warning(s), refused by --strict", 2)
        out.print("configuration is valid" + (f", with {len(warnings)} warning(s)" if warnings else ""))
