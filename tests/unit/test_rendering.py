"""Rendering of notices: the packaged templates (notifier/templates), the CSV and the XARF-style JSON."""

from __future__ import annotations

import csv
import html
import io
import json
import re
import shutil
import unicodedata
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifier.channels.rendering import (
    CSV_HEADER,
    Renderer,
    deadline_text,
    default_templates_dir,
    one_line,
    paragraph,
)
from notifier.domain.deadlines import DeadlineProfile
from notifier.domain.models import Evidence, TakedownRequest
from notifier.domain.notices import GOOD_FAITH_STATEMENT, Authority, MessageKind, NoticeContent
from notifier.domain.sla import SlaKind
from notifier.errors import ConfigError

TEMPLATES = default_templates_dir()
CREATED = datetime(2024, 9, 3, 1, 0, tzinfo=UTC)
SHA_A = "a" * 64
SHA_B = "b" * 64
PDQ_A = "c" * 64


def make_content(
    *,
    requests: tuple[TakedownRequest, ...] | None = None,
    language: str = "en",
    kind: MessageKind = MessageKind.NOTICE,
    platform_name: str = "Telegram",
    callback_url: str | None = None,
) -> NoticeContent:
    if requests is None:
        requests = (
            TakedownRequest(
                request_id="kcsc-2024-000148",
                platform="telegram",
                urls=("https://t.me/some_channel/1234", "https://t.me/some_channel/1235"),
                category="deepfake_sexual_abuse",
                legal_basis="Act on the Korea Communications Commission, Art. 21(4)",
                explanation="Synthetic sexual imagery of an identifiable person made without consent.",
                decided_at=datetime(2024, 9, 3, 10, 0, tzinfo=UTC),
                evidence=(Evidence(sha256=SHA_A, pdq=PDQ_A), Evidence(sha256=SHA_B)),
                case_ref="2024-DF-0042",
                territorial_scope=("KR",),
            ),
            TakedownRequest(
                request_id="kcsc-2024-000149",
                platform="telegram",
                urls=("https://t.me/other/1",),
                category="non_consensual_intimate_imagery",
            ),
        )
    return NoticeContent(
        notice_id="TD-telegram-20240903-000012",
        platform="telegram",
        platform_name=platform_name,
        language=language,
        created_at=CREATED,
        ack_by=CREATED + timedelta(hours=36),
        remove_by=CREATED + timedelta(hours=36),
        authority=Authority(
            name="Korea Communications Standards Commission",
            email="takedown@authority.example",
            reply_to="takedown-replies@authority.example",
            timezone="Asia/Seoul",
        ),
        requests=requests,
        category_labels={"deepfake_sexual_abuse": "Deepfake sexual abuse material"},
        callback_url=callback_url,
        kind=kind,
    )


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(TEMPLATES)


def _csv_rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"))))


# -- CSV -----------------------------------------------------------------------------------------


def test_csv_has_the_header_and_one_row_per_url_with_hashes_joined(renderer: Renderer) -> None:
    rows = _csv_rows(renderer.csv(make_content()))

    assert rows[0] == list(CSV_HEADER)
    assert rows[1:] == [
        [
            "kcsc-2024-000148",
            "https://t.me/some_channel/1234",
            "deepfake_sexual_abuse",
            f"{SHA_A};{SHA_B}",
            PDQ_A,
        ],
        [
            "kcsc-2024-000148",
            "https://t.me/some_channel/1235",
            "deepfake_sexual_abuse",
            f"{SHA_A};{SHA_B}",
            PDQ_A,
        ],
        ["kcsc-2024-000149", "https://t.me/other/1", "non_consensual_intimate_imagery", "", ""],
    ]


def test_csv_quotes_commas_quotes_and_newlines_so_the_columns_survive(renderer: Renderer) -> None:
    url = 'https://x.example/a,b"c\nd'
    request = TakedownRequest(request_id="r1", platform="telegram", urls=(url,), category="cat")
    rows = _csv_rows(renderer.csv(make_content(requests=(request,))))

    assert rows[1] == ["r1", url, "cat", "", ""]


@pytest.mark.parametrize("start", ["=", "+", "-", "@"])
def test_csv_defuses_cells_a_spreadsheet_would_run_as_a_formula(renderer: Renderer, start: str) -> None:
    request = TakedownRequest(
        request_id=f"{start}1+1",
        platform="telegram",
        urls=("https://x.example/1",),
        category=f'{start}HYPERLINK("http://evil.example")',
    )
    rows = _csv_rows(renderer.csv(make_content(requests=(request,))))

    assert rows[1][0] == f"'{start}1+1"
    assert rows[1][2].startswith(f"'{start}HYPERLINK")
    assert rows[1][1] == "https://x.example/1"


# -- XARF-style JSON -----------------------------------------------------------------------------


def test_xarf_json_has_one_report_per_url_with_the_xarf_fields(renderer: Renderer) -> None:
    content = make_content()
    reports = json.loads(renderer.xarf_json(content))

    assert isinstance(reports, list)
    assert len(reports) == content.url_count == 3
    first = reports[0]
    assert first["xarf_version"] == "4.0.0"
    assert first["report_id"] == "TD-telegram-20240903-000012:kcsc-2024-000148:0"
    assert reports[1]["report_id"] == "TD-telegram-20240903-000012:kcsc-2024-000148:1"
    assert reports[2]["report_id"] == "TD-telegram-20240903-000012:kcsc-2024-000149:0"
    assert first["timestamp"] == "2024-09-03T01:00:00Z"
    assert first["reporter"] == {
        "org": "Korea Communications Standards Commission",
        "contact": "takedown@authority.example",
        "type": "manual",
    }
    assert [r["source_identifier"] for r in reports] == [
        "https://t.me/some_channel/1234",
        "https://t.me/some_channel/1235",
        "https://t.me/other/1",
    ]
    assert first["category"] == "content"
    assert first["type"] == "deepfake"
    assert reports[2]["type"] == "ncii"
    assert first["takedown_category"] == "deepfake_sexual_abuse"
    assert first["category_label"] == "Deepfake sexual abuse material"
    assert reports[2]["category_label"] == "non_consensual_intimate_imagery"  # no label: the id
    assert first["evidence"] == [{"sha256": SHA_A, "pdq": PDQ_A}, {"sha256": SHA_B}]
    assert first["request_id"] == "kcsc-2024-000148"
    assert first["notice_id"] == "TD-telegram-20240903-000012"
    assert first["remove_by"] == "2024-09-04T13:00:00Z"


def test_xarf_type_of_an_unmapped_category_is_the_category_id(renderer: Renderer) -> None:
    request = TakedownRequest(
        request_id="r1", platform="telegram", urls=("https://x.example/1",), category="hate_speech"
    )
    (report,) = json.loads(renderer.xarf_json(make_content(requests=(request,))))

    assert report["type"] == "hate_speech"


# -- text, HTML and subject ----------------------------------------------------------------------


def test_subject_carries_the_notice_id_the_url_count_and_the_platform(renderer: Renderer) -> None:
    assert (
        renderer.subject(make_content())
        == "[TD-telegram-20240903-000012] Takedown notice: 3 URL(s) — Telegram"
    )


def test_subject_is_one_line_whatever_the_platform_name_holds(renderer: Renderer) -> None:
    subject = renderer.subject(make_content(platform_name="Evil\r\nBcc: x@evil.example\u2028\x00Corp"))

    assert "\r" not in subject and "\n" not in subject and "\u2028" not in subject and "\x00" not in subject
    assert subject.startswith("[TD-telegram-20240903-000012] ")
    assert subject.endswith("Evil Bcc: x@evil.example Corp")


@pytest.mark.parametrize("kind", list(MessageKind))
@pytest.mark.parametrize("language", ["en", "ko"])
def test_every_kind_and_language_carries_what_a_notice_must_contain(
    renderer: Renderer, kind: MessageKind, language: str
) -> None:
    content = make_content(kind=kind, language=language, callback_url="https://authority.example/cb")
    for body in (renderer.text(content), renderer.html(content)):
        assert "TD-telegram-20240903-000012" in body
        assert "[TD-telegram-20240903-000012]" in body  # how to acknowledge by email
        assert "https://authority.example/cb" in body  # ... and by the API
        assert "Korea Communications Standards Commission" in body
        assert "takedown@authority.example" in body
        for url in (
            "https://t.me/some_channel/1234",
            "https://t.me/some_channel/1235",
            "https://t.me/other/1",
        ):
            assert url in body
        assert "Deepfake sexual abuse material" in body
        assert "non_consensual_intimate_imagery" in body  # the fallback label
        assert "Act on the Korea Communications Commission, Art. 21(4)" in body
        assert "Synthetic sexual imagery of an identifiable person made without consent." in body
        assert SHA_A in body and SHA_B in body and PDQ_A in body
        assert "2024-DF-0042" in body
        assert "KR" in body
        assert "2024-09-04 13:00 UTC" in body  # ack_by / remove_by in UTC
        assert "2024-09-04 22:00 KST (Asia/Seoul)" in body  # ... and in Seoul
        assert "2024-09-03 19:00 KST" in body  # decided_at
        assert GOOD_FAITH_STATEMENT in body
    subject = renderer.subject(content)
    assert subject.startswith("[TD-telegram-20240903-000012] ")


def test_korean_notice_is_written_in_korean(renderer: Renderer) -> None:
    content = make_content(language="ko")

    assert renderer.subject(content) == "[TD-telegram-20240903-000012] 삭제 요청 통지: URL 3건 — Telegram"
    text = renderer.text(content)
    assert "삭제 요청 통지" in text
    assert "삭제 기한" in text and "접수 확인 기한" in text
    assert "선의 진술" in text
    assert '<html lang="ko">' in renderer.html(content)


def test_reminder_and_escalation_say_what_they_are(renderer: Renderer) -> None:
    reminder = make_content(kind=MessageKind.REMINDER)
    escalation = make_content(kind=MessageKind.ESCALATION)

    assert renderer.subject(reminder).startswith("[TD-telegram-20240903-000012] Reminder:")
    assert renderer.text(reminder).startswith("REMINDER: TAKEDOWN NOTICE TD-telegram-20240903-000012")
    assert renderer.subject(escalation).startswith("[TD-telegram-20240903-000012] Escalation:")
    assert "escalation contact" in renderer.text(escalation)


@pytest.mark.parametrize(
    ("language", "breaches", "said"),
    [
        ("en", (SlaKind.ACK_BREACH,), "acknowledgement deadline (2024-09-04"),
        ("en", (SlaKind.REMOVAL_BREACH,), "removal deadline (2024-09-04"),
        (
            "en",
            (SlaKind.ACK_BREACH, SlaKind.REMOVAL_BREACH),
            "without the acknowledgement or removal it asked for",
        ),
        ("en", (), "without the acknowledgement or removal it asked for"),
        ("ko", (SlaKind.ACK_BREACH,), "접수 확인 기한(2024-09-04"),
        ("ko", (SlaKind.REMOVAL_BREACH,), "삭제 기한(2024-09-04"),
        (
            "ko",
            (SlaKind.ACK_BREACH, SlaKind.REMOVAL_BREACH),
            "요청한 접수 확인 또는 삭제 결과를 받지 못했습니다",
        ),
    ],
)
def test_an_escalation_names_the_deadline_that_passed(
    renderer: Renderer, language: str, breaches: tuple[SlaKind, ...], said: str
) -> None:
    content = replace(make_content(kind=MessageKind.ESCALATION, language=language), breaches=breaches)
    missed = {SlaKind.ACK_BREACH: "acknowledgement", SlaKind.REMOVAL_BREACH: "removal"}
    others = {name for kind, name in missed.items() if kind not in breaches} if breaches else set()

    for body in (renderer.text(content), _visible(renderer.html(content))):
        assert said in body
        if language == "en":
            assert not any(f"{other} deadline (" in body for other in others)


def _visible(html: str) -> str:
    """The words of an HTML body, tags dropped and white space made single."""
    return " ".join(re.sub(r"<[^>]+>", "", html).split())


def test_html_escapes_whatever_a_request_carries(renderer: Renderer) -> None:
    request = TakedownRequest(
        request_id="r1",
        platform="telegram",
        urls=('https://x.example/"><script>alert(1)</script>',),
        category="cat",
        explanation="<img src=x onerror=alert(1)>",
    )
    html = renderer.html(make_content(requests=(request,), platform_name="<b>Bold</b>"))

    assert "<script>" not in html and "<img" not in html and "<b>Bold" not in html
    assert "&lt;script&gt;" in html and "&lt;b&gt;Bold&lt;/b&gt;" in html


def test_html_is_self_contained(renderer: Renderer) -> None:
    html = renderer.html(make_content(callback_url="https://authority.example/cb")).lower()

    for marker in ("<link", "<img", "<script", "src=", "@import", "<iframe", "href="):
        assert marker not in html
    assert not re.search(r"url\(\s*['\"]?(https?:|//|data:)", html)


def test_text_keeps_explanation_lines_but_no_control_characters(renderer: Renderer) -> None:
    request = TakedownRequest(
        request_id="r1",
        platform="telegram",
        urls=("https://x.example/1",),
        category="cat",
        explanation="first line\r\nsecond\x1b[31m line\u202e",
    )
    text = renderer.text(make_content(requests=(request,)))

    assert "      first line\n      second [31m line" in text
    assert "\x1b" not in text and "\u202e" not in text and "\r" not in text


def test_a_language_without_templates_falls_back_to_english(renderer: Renderer) -> None:
    assert "Takedown notice" in renderer.subject(make_content(language="fr"))


# -- helpers -------------------------------------------------------------------------------------


def test_deadline_text_shows_utc_and_the_authority_zone() -> None:
    moment = datetime(2024, 9, 4, 13, 0, tzinfo=UTC)

    assert deadline_text(moment, "Asia/Seoul") == "2024-09-04 13:00 UTC = 2024-09-04 22:00 KST (Asia/Seoul)"
    assert deadline_text(moment, "UTC") == "2024-09-04 13:00 UTC"
    assert deadline_text(moment, "America/Sao_Paulo").endswith("10:00 UTC-03:00 (America/Sao_Paulo)")


def test_deadline_text_refuses_a_naive_datetime() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        deadline_text(datetime(2024, 9, 4, 13, 0), "UTC")


def test_one_line_and_paragraph_clean_without_losing_text() -> None:
    assert one_line("a\r\nb\tc\u2028d\x85e\u200bf  g ") == "a b c d e f g"
    assert one_line("삭제 요청") == "삭제 요청"
    assert paragraph("one\r\n\r\n\r\ntwo\rthree\x07") == "one\n\ntwo\nthree"


@given(st.text(max_size=80))
def test_one_line_cleans_every_text_as_a_look_at_each_character_would(text: str) -> None:
    """The quick paths (printable text: only its spacing tidied) change no result."""
    unsafe = {"Cc", "Cf", "Zl", "Zp", "Cs"}
    expected = " ".join("".join(" " if unicodedata.category(c) in unsafe else c for c in text).split())
    assert one_line(text) == expected


# -- configuration faults ------------------------------------------------------------------------


@pytest.fixture
def templates_copy(tmp_path: Path) -> Path:
    target = tmp_path / "templates"
    shutil.copytree(TEMPLATES, target)
    return target


def test_a_missing_template_is_a_config_error_naming_the_file(templates_copy: Path) -> None:
    missing = templates_copy / "ko" / "reminder.html.j2"
    missing.unlink()

    with pytest.raises(ConfigError, match=r"ko/reminder\.html\.j2: template is missing"):
        Renderer(templates_copy)


def test_a_missing_parent_template_is_named(templates_copy: Path) -> None:
    (templates_copy / "en" / "notice.txt.j2").unlink()

    with pytest.raises(ConfigError, match=r"en/notice\.txt\.j2: template is missing"):
        Renderer(templates_copy)


def test_a_template_syntax_error_names_the_file_and_line(templates_copy: Path) -> None:
    path = templates_copy / "en" / "escalation.subject.j2"
    path.write_text("[{{ notice_id }}] {% if %}\n", encoding="utf-8")

    with pytest.raises(ConfigError, match=r"en/escalation\.subject\.j2:1: template syntax error"):
        Renderer(templates_copy)


def test_an_unknown_variable_is_caught_when_the_renderer_is_built(templates_copy: Path) -> None:
    path = templates_copy / "ko" / "notice.html.j2"
    path.write_text(path.read_text(encoding="utf-8") + "{{ no_such_variable }}", encoding="utf-8")

    with pytest.raises(ConfigError, match=r"ko/notice\.html\.j2: template cannot be rendered"):
        Renderer(templates_copy)


def test_a_subject_without_the_notice_token_is_refused(templates_copy: Path) -> None:
    (templates_copy / "en" / "notice.subject.j2").write_text("Takedown notice\n", encoding="utf-8")

    with pytest.raises(ConfigError, match=r"en/notice\.subject\.j2: the subject must contain"):
        Renderer(templates_copy)


def test_a_missing_templates_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="templates folder does not exist"):
        Renderer(tmp_path / "nowhere")


@pytest.mark.parametrize("language", ["en", "ko"])
def test_every_item_states_its_deadlines_with_the_profiles_label(renderer: Renderer, language: str) -> None:
    profile = DeadlineProfile(
        name="tco_removal_order",
        label="Regulation (EU) 2021/784, Art. 3(3): one hour",
        ack_within=timedelta(hours=1),
        removal_within=timedelta(hours=1),
    )
    content = replace(make_content(language=language), deadline=profile)
    ack_by = deadline_text(content.ack_by, ZoneInfo("Asia/Seoul"))
    for body in (renderer.text(content), html.unescape(renderer.html(content))):
        # Once for the notice, once per item (two items).
        assert body.count(profile.label) == 3
        assert body.count(ack_by) >= 3
    plain = make_content(language=language)
    assert "2021/784" not in renderer.text(plain)
