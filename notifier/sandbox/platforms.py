"""The sandbox platforms of a configuration, with their staff, as one object.

For every platform in the settings: email platforms get :class:`MailStaff` behind the SMTP sink,
API platforms :class:`ApiStaff` behind the platform API, portal platforms a :class:`Portal`. Their
behaviour comes from a :class:`Behaviour` per platform (a mix of profiles); a platform without one
is answered promptly, mostly. Their posts are served by a :class:`ContentServer`, which the staff
take down when they remove them (or not, as its :class:`Takedowns` say).
"""

from __future__ import annotations

from collections.abc import Mapping

from notifier.clock import Clock
from notifier.sandbox.api import PlatformApi, ReceivedNotice
from notifier.sandbox.content import ContentServer, Takedowns
from notifier.sandbox.smtp import Received, SmtpSink
from notifier.sandbox.staff import ApiStaff, Behaviour, Inbound, MailStaff, Portal, Record
from notifier.sandbox.timeline import Timeline
from notifier.settings import Settings

DEFAULT_EMAIL = Behaviour({"prompt": 0.7, "slow": 0.2, "bouncing": 0.1})
DEFAULT_API = Behaviour({"api": 1.0})
DEFAULT_PORTAL = Behaviour({"portal": 1.0})


class Sandbox:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock,
        seed: int,
        inbound: Inbound,
        callback_secret: str | None,
        behaviours: Mapping[str, Behaviour] | None = None,
        host: str = "127.0.0.1",
        smtp_port: int = 0,
        api_port: int = 0,
        content_port: int = 0,
        takedowns: Takedowns | None = None,
        scale: float = 1.0,
    ) -> None:
        self.clock = clock
        self.timeline = Timeline()
        self.record = Record()
        self.sink = SmtpSink(host=host, port=smtp_port)
        self.api = PlatformApi(host=host, port=api_port)
        self.content = ContentServer(
            timeline=self.timeline,
            clock=clock,
            record=self.record,
            seed=seed,
            takedowns=takedowns,
            host=host,
            port=content_port,
        )
        self.mail_staff: dict[str, MailStaff] = {}
        self.api_staff: dict[str, ApiStaff] = {}
        self.portals: dict[str, Portal] = {}
        behaviours = behaviours or {}
        for platform_id, platform in sorted(settings.platforms.items()):
            common = {
                "timeline": self.timeline,
                "clock": clock,
                "record": self.record,
                "seed": seed,
                "content": self.content,
            }
            if platform.channel == "email" and platform.email is not None:
                self.mail_staff[platform_id] = MailStaff(
                    platform=platform_id,
                    addresses=platform.email.to,
                    behaviour=behaviours.get(platform_id, DEFAULT_EMAIL),
                    inbound=inbound,
                    scale=scale,
                    **common,  # type: ignore[arg-type]
                )
            elif platform.channel == "api" and callback_secret is not None:
                self.api_staff[platform_id] = ApiStaff(
                    platform=platform_id,
                    behaviour=behaviours.get(platform_id, DEFAULT_API),
                    secret=callback_secret,
                    scale=scale,
                    **common,  # type: ignore[arg-type]
                )
            elif platform.channel == "manual":
                contacts = platform.escalation.email or (f"portal@{platform_id}.example",)
                self.portals[platform_id] = Portal(
                    platform=platform_id,
                    address=contacts[0],
                    behaviour=behaviours.get(platform_id, DEFAULT_PORTAL),
                    inbound=inbound,
                    scale=scale,
                    **common,  # type: ignore[arg-type]
                )
        self.sink.listeners.append(self._on_mail)
        self.api.listeners.append(self._on_notice)

    def _on_mail(self, received: Received) -> None:
        for staff in self.mail_staff.values():
            staff.on_mail(received)

    def _on_notice(self, notice: ReceivedNotice) -> None:
        staff = self.api_staff.get(str(notice.payload.get("platform", "")))
        if staff is not None:
            staff.on_notice(notice)

    async def start(self) -> Sandbox:
        await self.sink.start()
        await self.api.start()
        await self.content.start()
        return self

    async def stop(self) -> None:
        for staff in self.api_staff.values():
            await staff.close()
        await self.api.stop()
        await self.content.stop()
        await self.sink.stop()
