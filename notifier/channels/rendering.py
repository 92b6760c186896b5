"""Notices rendered for people (subject, text, HTML) and for machines (CSV, XARF-style JSON).

The people's part comes from Jinja2 templates in ``config/templates/<language>/``: for each kind of
message (``notice``, ``reminder``, ``escalation``) a ``.subject.j2``, a ``.txt.j2`` and an
``.html.j2``. Every template is compiled *and* rendered once against a sample notice when the
:class:`Renderer` is built, so a missing file, a syntax error or a misspelt variable is a
:class:`~notifier.errors.ConfigError` naming the file at ``notifier check-config`` time, not a
failed notice at three in the morning.

Whatever a request carries is shown to the platform exactly (URLs, hashes, ids) but never trusted:
one-line fields lose control and line-break characters, HTML is autoescaped, CSV cells that a
spreadsheet would run as a formula are defused, and the subject is always a single line.
"""

from __future__ import annotations

import csv as csv_module
import io
import json
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

import jinja2

from notifier.domain.models import Evidence, TakedownRequest, format_timestamp
from notifier.domain.notices import GOOD_FAITH_STATEMENT, Authority, MessageKind, NoticeContent
from notifier.domain.sla import SlaKind
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
CSV_HEADER: Final = ("request_id", "url", "category", "sha256", "pdq")
XARF_VERSION: Final = "4.0.0"
# Our categories as XARF v4 ``content`` types. XARF has ``csam``; the other two are the names the
# trust-and-safety industry uses for them. An unmapped category travels under its own id.
_XARF_TYPES: Final = {
    "child_sexual_abuse_material": "csam",
    "deepfake_sexual_abuse": "deepfake",
    "non_consensual_intimate_imagery": "ncii",
}
# A platform name longer than this is cut in the subject; the notice id always leads it.
_SUBJECT_NAME_MAX: Final = 80
_SUBJECT_MAX: Final = 250
# Characters that break a line or hide themselves: C0/C1 controls, format characters (bidi
# overrides, zero-width), line and paragraph separators, lone surrogates.
_UNSAFE_CATEGORIES: Final = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def default_templates_dir() -> Path:
    """``config/templates`` of the source tree, for callers without a configured folder."""
    return Path(__file__).resolve().parents[2] / "config" / "templates"


def one_line(text: str) -> str:
    """``text`` as one clean line: controls, line breaks and invisible characters become spaces,
    runs of whitespace one space, and the ends are trimmed. Safe in a header or a table cell."""
    if text.isprintable() and "  " not in text and text == text.strip():
        return text  # the common case: nothing to clean
    cleaned = "".join(" " if unicodedata.category(ch) in _UNSAFE_CATEGORIES else ch for ch in text)
    return " ".join(cleaned.split())


def paragraph(text: str) -> str:
    """Multi-line free text with its line structure kept (LF only) and every line cleaned as
    :func:`one_line` does; more than one blank line in a row becomes one."""
    lines = [one_line(line) for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    kept: list[str] = []
    for line in lines:
        if line or (kept and kept[-1]):
            kept.append(line)
    return "\n".join(kept).strip("\n")


def deadline_text(dt: datetime, tz: str | tzinfo) -> str:
    """An absolute time in UTC and in the authority's zone, e.g.
    ``2024-09-05 01:00 UTC = 2024-09-05 10:00 KST (Asia/Seoul)``."""
    if dt.tzinfo is None:
        raise ValueError("deadline_text needs a timezone-aware datetime")
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    utc = dt.astimezone(UTC)
    text = f"{utc:%Y-%m-%d %H:%M} UTC"
    key = str(getattr(zone, "key", zone))
    if key in {"UTC", "Etc/UTC", "Etc/Universal", "Universal", "Zulu", "Etc/Zulu"}:
        return text
    local = dt.astimezone(zone)
    offset = local.utcoffset() or timedelta(0)
    name = local.tzname() or ""
    if not name or name[0] in "+-":  # zones without an abbreviation: show the offset instead
        minutes = int(offset.total_seconds() // 60)
        sign = "+" if minutes >= 0 else "-"
        name = f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return f"{text} = {local:%Y-%m-%d %H:%M} {name} ({key})"


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

    def subject(self, content: NoticeContent) -> str:
        """The subject line: one line, always containing ``[<notice_id>]``."""
        return self._subject(content, self._context(content))

    def text(self, content: NoticeContent) -> str:
        context = self._context(content)
        context["subject"] = self._subject(content, context)
        return self._template(content, "txt").render(context)

    def html(self, content: NoticeContent) -> str:
        """A self-contained HTML page (inline style, no external resource), autoescaped."""
        context = self._context(content)
        context["subject"] = self._subject(content, context)
        return self._template(content, "html").render(context)

    def csv(self, content: NoticeContent) -> bytes:
        """One row per URL: ``request_id,url,category,sha256,pdq`` (several hashes joined by ``;``)."""
        buffer = io.StringIO()
        writer = csv_module.writer(buffer, lineterminator="\r\n")
        writer.writerow(CSV_HEADER)
        for request in content.requests:
            sha256 = ";".join(e.sha256 for e in request.evidence if e.sha256)
            pdq = ";".join(e.pdq for e in request.evidence if e.pdq)
            for url in request.urls:
                writer.writerow(
                    [_csv_cell(v) for v in (request.request_id, url, request.category, sha256, pdq)]
                )
        return buffer.getvalue().encode("utf-8")

    def xarf_json(self, content: NoticeContent) -> bytes:
        """A JSON array with one XARF v4-style report per URL.

        ``category`` is the XARF class (``content``), ``type`` the XARF-style type of the request's
        category (``deepfake``, ``ncii``, ``csam``, else the category id itself), ``takedown_category``
        the category id as the regulator names it. ``report_id`` is ``notice_id:request_id:index``
        with the 0-based position of the URL in its request, so a re-send produces the same ids.
        """
        reporter = {
            "org": one_line(content.authority.name),
            "contact": content.authority.email,
            "type": "manual",
        }
        timestamp = format_timestamp(content.created_at)
        reports: list[dict[str, Any]] = []
        for request in content.requests:
            shared = _xarf_request_fields(content, request)
            for index, url in enumerate(request.urls):
                reports.append(
                    {
                        "xarf_version": XARF_VERSION,
                        "report_id": f"{content.notice_id}:{request.request_id}:{index}",
                        "timestamp": timestamp,
                        "reporter": reporter,
                        "sender": reporter,
                        "source_identifier": url,
                        "url": url,
                        **shared,
                    }
                )
        # Compact, one report per line: no indentation keeps json on its C encoder and the
        # attachment a third smaller, while a person can still read it report by report.
        lines = ",\n".join(json.dumps(report, ensure_ascii=False) for report in reports)
        return f"[\n{lines}\n]\n".encode()

    def render(self, content: NoticeContent) -> RenderedNotice:
        """Subject, text, HTML, CSV and JSON together (the context is built once)."""
        context = self._context(content)
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
                context = self._context(sample)
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

    def _context(self, content: NoticeContent) -> dict[str, Any]:
        zone = ZoneInfo(content.authority.timezone)
        labels = content.category_labels
        times: dict[datetime, str] = {}  # requests decided together share their decided_at
        items = [
            _item_context(number, request, labels, zone, times)
            for number, request in enumerate(content.requests, start=1)
        ]
        authority = content.authority
        return {
            "kind": content.kind.value,
            "missed": _missed(content.breaches),
            "language": content.language,
            "notice_id": content.notice_id,
            "ack_token": f"[{content.notice_id}]",
            "platform": content.platform,
            "platform_name": one_line(content.platform_name),
            "authority": _AuthorityView(
                name=one_line(authority.name),
                email=one_line(authority.email),
                reply_to=one_line(authority.reply_to) if authority.reply_to else None,
                timezone=authority.timezone,
            ),
            "timezone": authority.timezone,
            "created_at": deadline_text(content.created_at, zone),
            "created_at_iso": format_timestamp(content.created_at),
            "ack_by": deadline_text(content.ack_by, zone),
            "ack_by_iso": format_timestamp(content.ack_by),
            "remove_by": deadline_text(content.remove_by, zone),
            "remove_by_iso": format_timestamp(content.remove_by),
            "callback_url": one_line(content.callback_url) if content.callback_url else None,
            "good_faith_statement": GOOD_FAITH_STATEMENT,
            "items": items,
            "request_count": len(content.requests),
            "url_count": content.url_count,
            "attachments": [f"{content.notice_id}.csv", f"{content.notice_id}.json"],
            "subject": "",
        }


def _missed(breaches: tuple[SlaKind, ...]) -> str:
    """What an escalation says was missed: ``acknowledgement``, ``removal``, or ``both`` (also
    when not known)."""
    kinds = set(breaches)
    if kinds == {SlaKind.ACK_BREACH}:
        return "acknowledgement"
    if kinds == {SlaKind.REMOVAL_BREACH}:
        return "removal"
    return "both"


# The views templates see. Jinja looks an attribute up with getattr() before trying obj[key], so
# attribute objects render several times faster than dicts in notices with many items.


@dataclass(frozen=True, slots=True, kw_only=True)
class _AuthorityView:
    name: str
    email: str
    reply_to: str | None
    timezone: str


@dataclass(frozen=True, slots=True, kw_only=True)
class _EvidenceView:
    sha256: str | None
    pdq: str | None
    hashes: list[tuple[str, str]]  # (label, value) for the hashes present


@dataclass(frozen=True, slots=True, kw_only=True)
class _ItemView:
    number: int
    request_id: str
    urls: list[str]
    category: str
    category_label: str
    priority: str
    legal_basis: str | None
    explanation: str | None
    case_ref: str | None
    territorial_scope: str | None
    decided_at: str | None
    decided_at_iso: str | None
    evidence: list[_EvidenceView]


def _item_context(
    number: int, request: TakedownRequest, labels: dict[str, str], zone: tzinfo, times: dict[datetime, str]
) -> _ItemView:
    decided = request.decided_at
    decided_text = None
    if decided is not None:
        decided_text = times.get(decided)
        if decided_text is None:
            decided_text = times[decided] = deadline_text(decided, zone)
    return _ItemView(
        number=number,
        request_id=one_line(request.request_id),
        urls=[one_line(url) for url in request.urls],
        category=request.category,
        category_label=one_line(labels.get(request.category) or request.category),
        priority=request.priority.value,
        legal_basis=one_line(request.legal_basis) if request.legal_basis else None,
        explanation=paragraph(request.explanation) if request.explanation else None,
        case_ref=one_line(request.case_ref) if request.case_ref else None,
        territorial_scope=", ".join(one_line(c) for c in request.territorial_scope) or None,
        decided_at=decided_text,
        decided_at_iso=format_timestamp(decided) if decided else None,
        evidence=[
            _EvidenceView(
                sha256=e.sha256,
                pdq=e.pdq,
                hashes=[(label, v) for label, v in (("SHA-256", e.sha256), ("PDQ", e.pdq)) if v],
            )
            for e in request.evidence
        ],
    )


def _xarf_request_fields(content: NoticeContent, request: TakedownRequest) -> dict[str, Any]:
    return {
        "category": "content",
        "type": _XARF_TYPES.get(request.category, request.category),
        "takedown_category": request.category,
        "category_label": one_line(content.category_labels.get(request.category) or request.category),
        "evidence": [e.as_dict() for e in request.evidence],
        "request_id": request.request_id,
        "notice_id": content.notice_id,
        "legal_basis": request.legal_basis,
        "description": paragraph(request.explanation) if request.explanation else None,
        "case_ref": request.case_ref,
        "territorial_scope": list(request.territorial_scope),
        "decided_at": format_timestamp(request.decided_at) if request.decided_at else None,
        "ack_by": format_timestamp(content.ack_by),
        "remove_by": format_timestamp(content.remove_by),
    }


def _csv_cell(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value


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
