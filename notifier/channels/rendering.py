"""Notices rendered for people (subject, text, HTML) and for machines (CSV, XARF-style JSON).

The people's part comes from Jinja2 templates in ``notifier/templates/<language>/`` (or a copy
named by ``templates.dir``): for each kind of message (``notice``, ``reminder``, ``escalation``…) a
``.subject.j2``, a ``.txt.j2`` and an ``.html.j2``. Every template is compiled *and* rendered once
against a sample notice when the :class:`Renderer` is built, so a missing file, a syntax error or
a misspelt variable is a :class:`~notifier.errors.ConfigError` naming the file at ``notifier
check-config`` time, not a failed notice at three in the morning.

Whatever a request carries is shown to the platform exactly (URLs, hashes, ids) but never trusted:
one-line fields lose control and line-break characters, HTML is autoescaped, CSV cells that a
spreadsheet would run as a formula are defused, and the subject is always a single line.

This module loads and checks the templates and puts the renderings together; what the templates
see is built in :mod:`notifier.channels.template_context`, the attachments in
:mod:`notifier.channels.attachments`, and the text cleaning in :mod:`notifier.channels.formatting`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import jinja2

from notifier.channels.attachments import CSV_HEADER, XARF_VERSION, notice_csv, notice_xarf_json
from notifier.channels.formatting import deadline_text, one_line, paragraph
from notifier.channels.template_context import template_context
from notifier.domain.models import Evidence, TakedownRequest
from notifier.domain.notices import Authority, MessageKind, NoticeContent
from notifier.errors import ConfigError

__all__ = [
    "CSV_HEADER",
    "LANGUAGES",
    "XARF_VERSION",
    "RenderedNotice",
    "Renderer",
    "deadline_text",
    "default_templates_dir",
    "one_line",
    "paragraph",
]

LANGUAGES: Final = ("en", "ko")
PARTS: Final = ("subject", "txt", "html")
# A platform name longer than this is cut in the subject; the notice id always leads it.
_SUBJECT_NAME_MAX: Final = 80
_SUBJECT_MAX: Final = 250


def default_templates_dir() -> Path:
    """The packaged templates (``notifier/templates``), for callers without a configured folder."""
    return Path(__file__).resolve().parents[1] / "templates"


@dataclass(frozen=True, slots=True, kw_only=True)
class RenderedNotice:
    """Every rendering of one notice, made from one shared context."""

    subject: str
    text: str
    html: str
    csv: bytes
    xarf_json: bytes


class Renderer:
    """The notice templates of one folder, compiled and checked once.

    ``templates_dir`` holds one folder per language (``en``, ``ko``), each with the nine templates
    ``{notice,reminder,escalation}.{subject,txt,html}.j2``. A notice in a language without templates
    is rendered in English.
    """

    def __init__(self, templates_dir: Path, *, languages: Sequence[str] = LANGUAGES) -> None:
        self._dir = Path(templates_dir)
        if not self._dir.is_dir():
            raise ConfigError(f"{self._dir}: the notice templates folder does not exist")
        self._templates: dict[tuple[str, MessageKind, str], jinja2.Template] = {}
        for language in languages:
            self._load_language(language)
        self._check_render(languages)

    # -- public API -----------------------------------------------------------------------------

    @property
    def folder(self) -> Path:
        """The templates folder (one folder per language in it)."""
        return self._dir

    def subject(self, content: NoticeContent) -> str:
        """The subject line: one line, always containing ``[<notice_id>]``."""
        return self._subject(content, template_context(content))

    def text(self, content: NoticeContent) -> str:
        context = template_context(content)
        context["subject"] = self._subject(content, context)
        return self._template(content, "txt").render(context)

    def html(self, content: NoticeContent) -> str:
        """A self-contained HTML page (inline style, no external resource), autoescaped."""
        context = template_context(content)
        context["subject"] = self._subject(content, context)
        return self._template(content, "html").render(context)

    def csv(self, content: NoticeContent) -> bytes:
        """One row per URL: ``request_id,url,category,sha256,pdq`` (several hashes joined by ``;``)."""
        return notice_csv(content)

    def xarf_json(self, content: NoticeContent) -> bytes:
        """One XARF v4-style report per URL (see :func:`~notifier.channels.attachments.notice_xarf_json`)."""
        return notice_xarf_json(content)

    def render(self, content: NoticeContent) -> RenderedNotice:
        """Subject, text, HTML, CSV and JSON together (the context is built once)."""
        context = template_context(content)
        subject = self._subject(content, context)
        context["subject"] = subject
        return RenderedNotice(
            subject=subject,
            text=self._template(content, "txt").render(context),
            html=self._template(content, "html").render(context),
            csv=self.csv(content),
            xarf_json=self.xarf_json(content),
        )

    # -- loading --------------------------------------------------------------------------------

    def _load_language(self, language: str) -> None:
        directory = self._dir / language
        environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(directory),
            autoescape=jinja2.select_autoescape(
                enabled_extensions=("html.j2",), disabled_extensions=("txt.j2", "subject.j2")
            ),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            auto_reload=False,
        )
        for kind in MessageKind:
            for part in PARTS:
                name = f"{kind.value}.{part}.j2"
                try:
                    template = environment.get_template(name)
                except jinja2.TemplateNotFound as error:
                    # ``error.name`` is the file that is missing: this one, or a parent it extends.
                    raise ConfigError(f"{directory / (error.name or name)}: template is missing") from None
                except jinja2.TemplateSyntaxError as error:
                    where = error.filename or str(directory / name)
                    raise ConfigError(
                        f"{where}:{error.lineno}: template syntax error: {error.message}"
                    ) from None
                except (OSError, UnicodeDecodeError) as error:
                    raise ConfigError(f"{directory / name}: template cannot be read ({error})") from None
                self._templates[(language, kind, part)] = template

    def _check_render(self, languages: Sequence[str]) -> None:
        """Render every template once so that runtime faults (an unknown variable, a bad filter
        argument) surface now, naming the file."""
        for language in languages:
            for kind, full in ((k, f) for k in MessageKind for f in (True, False)):
                sample = _sample_content(language, kind, full=full)
                context = template_context(sample)
                context["subject"] = "sample"
                for part in PARTS:
                    template = self._templates[(language, kind, part)]
                    try:
                        output = template.render(context)
                    except Exception as error:  # any fault in a template is a configuration fault
                        raise ConfigError(
                            f"{template.filename}: template cannot be rendered "
                            f"({type(error).__name__}: {error})"
                        ) from None
                    if part == "subject" and f"[{sample.notice_id}]" not in output:
                        raise ConfigError(
                            f"{template.filename}: the subject must contain [{{{{ notice_id }}}}] "
                            "so replies find their notice"
                        )

    def _template(self, content: NoticeContent, part: str) -> jinja2.Template:
        template = self._templates.get((content.language, content.kind, part))
        return template if template is not None else self._templates[("en", content.kind, part)]

    # -- context ----------------------------------------------------------------------------------

    def _subject(self, content: NoticeContent, context: dict[str, Any]) -> str:
        subject_context = dict(context, platform_name=context["platform_name"][:_SUBJECT_NAME_MAX])
        subject = one_line(self._template(content, "subject").render(subject_context))[:_SUBJECT_MAX]
        token = f"[{content.notice_id}]"
        return subject if token in subject else f"{token} {subject}"[:_SUBJECT_MAX]


def _sample_content(language: str, kind: MessageKind, *, full: bool) -> NoticeContent:
    """A notice that walks the branches of a template: two requests, one with every optional field
    and one with none, and (``full``) a callback URL and a Reply-To address, or neither."""
    created = datetime(2024, 9, 3, 1, 0, tzinfo=UTC)
    requests = (
        TakedownRequest(
            request_id="sample-000001",
            platform="sample",
            urls=("https://platform.example/post/1", "https://platform.example/post/2"),
            category="deepfake_sexual_abuse",
            legal_basis="Sample legal basis",
            explanation="Sample explanation.\nSecond line.",
            decided_at=created,
            evidence=(Evidence(sha256="0" * 64, pdq="f" * 64), Evidence(sha256="1" * 64)),
            case_ref="SAMPLE-1",
            territorial_scope=("KR",),
        ),
        TakedownRequest(
            request_id="sample-000002",
            platform="sample",
            urls=("https://platform.example/post/3",),
            category="uncategorised",
        ),
    )
    return NoticeContent(
        notice_id="TD-sample-20240903-000001",
        platform="sample",
        platform_name="Sample Platform",
        language=language,
        created_at=created,
        ack_by=created + timedelta(hours=36),
        remove_by=created + timedelta(hours=36),
        authority=Authority(
            name="Sample Authority",
            email="takedown@authority.example",
            reply_to="replies@authority.example" if full else None,
            timezone="Asia/Seoul",
        ),
        requests=requests,
        category_labels={"deepfake_sexual_abuse": "Deepfake sexual abuse material"},
        callback_url="https://authority.example/v1/callbacks/sample" if full else None,
        kind=kind,
    )
