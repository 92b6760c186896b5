"""What a valid configuration may still get wrong: said by ``notifier check-config``, refused by
``check-config --strict``.

A configuration can load and still not do what its operator means: notices sent to the relay a
default points at, placeholder addresses left from the shipped example, callbacks no platform can
sign. Each warning names the key, like the errors do.
"""

from __future__ import annotations

from collections.abc import Iterator

from notifier.settings.loading import Settings

_PLACEHOLDER_DOMAINS = ("example", "example.com", "example.net", "example.org", "invalid", "test")


def _placeholder(address: str) -> bool:
    domain = address.rpartition("@")[2].lower().rstrip(".")
    return any(domain == d or domain.endswith(f".{d}") for d in _PLACEHOLDER_DOMAINS)


def _addresses(settings: Settings) -> Iterator[tuple[str, str]]:
    """Every address of the configuration, with the key that holds it."""
    authority = settings.authority
    yield "authority.email", authority.email
    if authority.reply_to:
        yield "authority.reply_to", authority.reply_to
    for address in authority.operations_email:
        yield "authority.operations_email", address
    yield "smtp.from", settings.smtp.from_
    for platform_id, platform in settings.platforms.items():
        if platform.email is not None:
            for address in (*platform.email.to, *platform.email.cc):
                yield f"platforms.{platform_id}.email", address
        for address in platform.escalation.email:
            yield f"platforms.{platform_id}.escalation.email", address


def config_warnings(settings: Settings) -> list[str]:
    """Each thing a loaded configuration gets wrong without being invalid, as one line."""
    warnings: list[str] = []
    channels = {c for p in settings.platforms.values() for c in (p.channel, p.fallback) if c}
    if "smtp" not in settings.model_fields_set and (
        "email" in channels or settings.authority.operations_email
    ):
        warnings.append(
            f"smtp: no [smtp] section: notices and alerts would go to the relay at "
            f"{settings.smtp.host}:{settings.smtp.port}"
        )
    placeholders = [f"{key} = {address}" for key, address in _addresses(settings) if _placeholder(address)]
    if placeholders:
        shown = "; ".join(placeholders[:5]) + (
            f"; and {len(placeholders) - 5} more" if len(placeholders) > 5 else ""
        )
        warnings.append(f"placeholder addresses (reserved example domains), which no platform reads: {shown}")
    shared = settings.http.callback_secret
    for platform_id, platform in settings.platforms.items():
        uses_api = "api" in (platform.channel, platform.fallback)
        if uses_api and platform.api is not None and platform.api.signing_secret is None and shared is None:
            warnings.append(
                f"platforms.{platform_id}.api.signing_secret_env: no secret is set for its callbacks (nor "
                f"http.callback_secret_env = {settings.http.callback_secret_env or '-'}): every callback "
                "from it will be refused with 401"
            )
    return warnings
