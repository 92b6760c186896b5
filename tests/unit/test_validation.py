"""Takedown request validation (SPEC §5.1): what is accepted, and a reason naming the field for the rest."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from notifier.domain.models import Evidence, Priority, TakedownRequest
from notifier.domain.validation import (
    MAX_BODY_BYTES,
    Vocabulary,
    parse_request,
    request_id_hint,
)
from notifier.errors import InvalidRequest

VOCABULARY = Vocabulary(
    platforms=frozenset({"telegram", "videohost"}),
    categories=frozenset({"deepfake_sexual_abuse", "non_consensual_intimate_imagery"}),
)
SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
OMIT = object()


def request_dict(**changes: Any) -> dict[str, Any]:
    """The example request of SPEC §5.1, with fields replaced (or removed with ``OMIT``)."""
    data: dict[str, Any] = {
        "request_id": "kcsc-2024-000148",
        "platform": "telegram",
        "urls": ["https://t.me/some_channel/1234"],
        "category": "deepfake_sexual_abuse",
        "priority": "normal",
        "legal_basis": "Act on the Korea Communications Commission, Art. 21(4)",
        "explanation": "Synthetic sexual imagery of an identifiable person made without consent.",
        "decided_at": "2024-09-03T10:00:00+09:00",
        "evidence": [{"sha256": SHA256, "pdq": PDQ}],
        "case_ref": "2024-DF-0042",
        "territorial_scope": ["KR"],
    }
    for key, value in changes.items():
        if value is OMIT:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def body(**changes: Any) -> bytes:
    return json.dumps(request_dict(**changes)).encode()


def parse(raw: bytes | str) -> TakedownRequest:
    return parse_request(raw, VOCABULARY)


def reason(raw: bytes | str) -> str:
    with pytest.raises(InvalidRequest) as info:
        parse(raw)
    return info.value.reason


# -- the whole request ------------------------------------------------------------------------


def test_the_spec_example_parses_into_a_request() -> None:
    request = parse(body())

    assert request == TakedownRequest(
        request_id="kcsc-2024-000148",
        platform="telegram",
        urls=("https://t.me/some_channel/1234",),
        category="deepfake_sexual_abuse",
        priority=Priority.NORMAL,
        legal_basis="Act on the Korea Communications Commission, Art. 21(4)",
        explanation="Synthetic sexual imagery of an identifiable person made without consent.",
        decided_at=datetime(2024, 9, 3, 1, 0, tzinfo=UTC),
        evidence=(Evidence(sha256=SHA256, pdq=PDQ),),
        case_ref="2024-DF-0042",
        territorial_scope=("KR",),
    )


def test_only_the_four_required_fields_are_needed() -> None:
    minimal = {k: v for k, v in request_dict().items() if k in ("request_id", "platform", "urls", "category")}

    request = parse(json.dumps(minimal))

    assert request.priority is Priority.NORMAL
    assert (request.legal_basis, request.explanation, request.decided_at, request.case_ref) == (None,) * 4
    assert (request.evidence, request.territorial_scope) == ((), ())


def test_a_text_body_is_accepted_like_bytes() -> None:
    assert parse(body().decode()) == parse(body())


@pytest.mark.parametrize("field", ["request_id", "platform", "urls", "category"])
def test_a_missing_required_field_is_named(field: str) -> None:
    assert reason(body(**{field: OMIT})) == f"{field}: required field is missing"


@pytest.mark.parametrize("field", ["foo", "requestId", "content", "video"])
def test_an_unknown_field_is_rejected(field: str) -> None:
    assert reason(body(**{field: "x"})) == f"{field}: unknown field"


def test_an_unknown_field_name_is_echoed_without_its_control_characters() -> None:
    assert reason(body(**{"fo\r\no": 1})) == "fo??o: unknown field"


def test_several_problems_are_reported_together() -> None:
    text = reason(json.dumps({"request_id": 1, "platform": 2, "urls": 3, "category": 4}))

    assert text.startswith("request_id: ")
    assert "; platform: " in text
    assert "; urls: " in text


# -- the body ---------------------------------------------------------------------------------


def _padded(size: int) -> bytes:
    raw = body()
    return raw + b" " * (size - len(raw))


def test_a_body_of_exactly_256_kib_is_accepted() -> None:
    raw = _padded(MAX_BODY_BYTES)
    assert len(raw) == 262144
    assert parse(raw).request_id == "kcsc-2024-000148"


def test_a_body_one_byte_over_256_kib_is_rejected() -> None:
    assert reason(_padded(262145)) == "body is 262145 bytes, over the 262144-byte limit"


def test_a_ten_megabyte_body_is_rejected_by_size() -> None:
    assert reason(b"[" * 10_000_000).startswith("body is 10000000 bytes")


def test_the_size_limit_counts_utf8_bytes_of_a_text_body() -> None:
    text = body().decode() + " " * (MAX_BODY_BYTES - len(body()) - 1) + "가"  # 3 bytes in UTF-8
    assert len(text) == MAX_BODY_BYTES  # characters within the limit, bytes over it
    assert reason(text) == f"body is {MAX_BODY_BYTES + 2} bytes, over the 262144-byte limit"


@pytest.mark.parametrize(
    ("raw", "offset"),
    [
        (b"\xff", 0),
        (b'{"request_id": "\xc3\x28"}', 16),
        (json.dumps(request_dict(explanation="café"), ensure_ascii=False).encode("latin-1"), None),
    ],
    ids=["lone-ff", "broken-sequence", "latin-1"],
)
def test_a_body_that_is_not_utf8_is_rejected(raw: bytes, offset: int | None) -> None:
    text = reason(raw)
    assert text.startswith("body is not UTF-8 (invalid byte at offset ")
    if offset is not None:
        assert text == f"body is not UTF-8 (invalid byte at offset {offset})"


def test_a_leading_utf8_byte_order_mark_is_tolerated() -> None:
    assert parse(b"\xef\xbb\xbf" + body()).request_id == "kcsc-2024-000148"


@pytest.mark.parametrize("raw", [b"", b"{nope", b"request_id=1", b'{"request_id": "a",}'])
def test_a_body_that_is_not_json_is_rejected(raw: bytes) -> None:
    assert reason(raw).startswith("body is not valid JSON (")


def test_deeply_nested_json_is_rejected_not_crashed_on() -> None:
    assert reason(b"[" * 100_000 + b"]" * 100_000).startswith("body is not valid JSON (")


@pytest.mark.parametrize(
    "raw", [b"[]", b"[{}]", b'"kcsc-1"', b"5", b"1.5", b"null", b"true"], ids=lambda r: r.decode()
)
def test_json_that_is_not_an_object_is_rejected(raw: bytes) -> None:
    assert reason(raw) == "body must be a JSON object"


def test_an_array_of_valid_requests_is_not_one_request() -> None:
    assert reason(b"[" + body() + b"]") == "body must be a JSON object"


# -- strict types: nothing is coerced ---------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("request_id", 148, "request_id: Input should be a valid string"),
        ("request_id", True, "request_id: Input should be a valid string"),
        ("request_id", None, "request_id: Input should be a valid string"),
        ("platform", ["telegram"], "platform: Input should be a valid string"),
        ("urls", "https://t.me/x", "urls: Input should be a valid array"),
        ("urls", None, "urls: Input should be a valid array"),
        ("urls", [1], "urls[0]: Input should be a valid string"),
        ("category", 1, "category: Input should be a valid string"),
        ("legal_basis", 21, "legal_basis: Input should be a valid string"),
        ("decided_at", 1725325200, "decided_at: Input should be a valid datetime"),
        ("evidence", {"sha256": SHA256}, "evidence: Input should be a valid array"),
        ("evidence", [SHA256], "evidence[0]: Input should be an object"),
        ("territorial_scope", "KR", "territorial_scope: Input should be a valid array"),
        ("territorial_scope", [82], "territorial_scope[0]: Input should be a valid string"),
    ],
)
def test_wrong_types_are_rejected_without_coercion(field: str, value: Any, expected: str) -> None:
    assert reason(body(**{field: value})).startswith(expected)


# -- request_id -------------------------------------------------------------------------------


@pytest.mark.parametrize("request_id", ["a", "kcsc-2024-000148", "A.b_c:d-9", "x" * 128])
def test_request_ids_of_1_to_128_allowed_characters_are_accepted(request_id: str) -> None:
    assert parse(body(request_id=request_id)).request_id == request_id


@pytest.mark.parametrize(
    "request_id",
    [
        "",
        "x" * 129,
        "kcsc 148",
        "kcsc/148",
        "kcsc\r148",
        "kcsc\n148",
        "kcsc\r\n",
        "\nkcsc",
        "kcsc-ü",
        "kcsc\x00",
    ],
    ids=["empty", "129", "space", "slash", "CR", "LF", "CRLF-end", "LF-start", "non-ascii", "NUL"],
)
def test_a_bad_request_id_is_rejected(request_id: str) -> None:
    assert reason(body(request_id=request_id)) == "request_id: must be 1-128 characters of A-Za-z0-9._:-"


def test_a_request_id_ending_in_a_newline_is_rejected() -> None:
    assert reason(body(request_id="kcsc-1\n")) == "request_id: must be 1-128 characters of A-Za-z0-9._:-"


# -- platform and category --------------------------------------------------------------------


@pytest.mark.parametrize("platform", ["telegram", "videohost"])
def test_a_configured_platform_is_accepted(platform: str) -> None:
    assert parse(body(platform=platform)).platform == platform


@pytest.mark.parametrize(
    ("platform", "echo"),
    [("youtube", "youtube"), ("Telegram", "Telegram"), ("", ""), ("tele\r\ngram", "tele??gram")],
)
def test_an_unknown_platform_is_rejected_and_echoed_safely(platform: str, echo: str) -> None:
    assert reason(body(platform=platform)) == f"platform: '{echo}' is not a configured platform"


def test_a_long_unknown_platform_is_shortened_in_the_reason() -> None:
    text = reason(body(platform="p" * 5000))
    assert text == f"platform: '{'p' * 40}…' is not a configured platform"


def test_an_unknown_category_is_rejected() -> None:
    assert reason(body(category="spam")) == "category: 'spam' is not a configured category"


def test_another_configured_category_is_accepted() -> None:
    category = "non_consensual_intimate_imagery"
    assert parse(body(category=category)).category == category


# -- urls -------------------------------------------------------------------------------------


def test_no_urls_is_rejected() -> None:
    text = reason(body(urls=[]))
    assert text.startswith("urls: ")
    assert "at least 1 item" in text


def test_a_hundred_urls_are_accepted_and_a_hundred_and_one_rejected() -> None:
    urls = [f"https://t.me/c/{n}" for n in range(101)]

    assert len(parse(body(urls=urls[:100])).urls) == 100
    text = reason(body(urls=urls))
    assert text.startswith("urls: ")
    assert "at most 100 items" in text


def _url_of_length(length: int) -> str:
    prefix = "https://t.me/"
    return prefix + "a" * (length - len(prefix))


def test_a_url_of_2048_characters_is_accepted_and_of_2049_rejected() -> None:
    assert parse(body(urls=[_url_of_length(2048)])).urls == (_url_of_length(2048),)
    assert reason(body(urls=[_url_of_length(2049)])) == "urls[0]: is 2049 characters long; the limit is 2048"


@pytest.mark.parametrize(
    "url",
    [
        "http://t.me/x",
        "HTTPS://T.ME/x",
        "https://t.me:8443/c/1?start=1&x=%20#frag",
        "https://t.me/채널/1",
        "https://xn--9n2bp8q.example/",
        "https://192.0.2.1/v",
        "https://[2001:db8::1]/v",
    ],
)
def test_absolute_http_urls_are_accepted_as_written(url: str) -> None:
    assert parse(body(urls=[url])).urls == (url,)


def test_the_reason_names_the_index_of_the_bad_url() -> None:
    urls = ["https://t.me/ok", "https://t.me/ok2", "javascript:alert(1)"]
    assert reason(body(urls=urls)) == "urls[2]: scheme 'javascript' is not allowed"


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("javascript:alert(1)", "javascript"),
        ("JavaScript:alert(document.cookie)", "javascript"),
        ("data:text/html,<script>alert(1)</script>", "data"),
        ("ftp://files.example/x.mp4", "ftp"),
        ("file:///etc/passwd", "file"),
        ("mailto:abuse@t.me", "mailto"),
    ],
)
def test_schemes_other_than_http_and_https_are_rejected(url: str, scheme: str) -> None:
    assert reason(body(urls=[url])) == f"urls[0]: scheme '{scheme}' is not allowed"


@pytest.mark.parametrize("url", ["/some_channel/1234", "//t.me/some_channel", "t.me/some_channel", "?q=1"])
def test_relative_urls_are_rejected(url: str) -> None:
    assert reason(body(urls=[url])) == "urls[0]: is not an absolute URL (no scheme)"


@pytest.mark.parametrize("url", ["https://user:pass@t.me/x", "https://user@t.me/x", "https://:@t.me/x"])
def test_urls_with_credentials_are_rejected(url: str) -> None:
    assert reason(body(urls=[url])) == "urls[0]: contains credentials (user:password@); remove them"


@pytest.mark.parametrize(
    "url",
    [
        "https://t.me/a b",
        "https://t.me/x\r\nX-Injected: 1",
        "https://t.me/x\n",
        "https://t.me/\tx",
        "https://t.me/\x00",
        "https://t.me/\x1b[31m",
        "https://t.me/\x7f",
        "https://t.me/\x85",
        " https://t.me/x",
    ],
    ids=["space", "CRLF", "LF-end", "tab", "NUL", "ESC", "DEL", "NEL", "leading-space"],
)
def test_urls_with_whitespace_or_control_characters_are_rejected(url: str) -> None:
    assert (
        reason(body(urls=[url]))
        == "urls[0]: contains whitespace, a control character or an invisible formatting character"
    )


@pytest.mark.parametrize(
    "char", ["\u00a0", "\u3000", "\u2028", "\u202e"], ids=["NBSP", "U+3000", "U+2028", "RLO"]
)
def test_urls_with_unicode_whitespace_or_bidi_controls_are_rejected(char: str) -> None:
    assert (
        reason(body(urls=[f"https://t.me/a{char}b"]))
        == "urls[0]: contains whitespace, a control character or an invisible formatting character"
    )


@pytest.mark.parametrize("url", ["http:///x", "https://", "https://:443/x", "https://?q=1"])
def test_urls_without_a_host_are_rejected(url: str) -> None:
    assert reason(body(urls=[url])) == "urls[0]: has no host"


@pytest.mark.parametrize("url", ["https://t.me:abc/x", "https://t.me:99999/x", "https://[::1/x"])
def test_urls_that_do_not_parse_are_rejected(url: str) -> None:
    assert reason(body(urls=[url])).startswith("urls[0]: is not a valid URL (")


# -- priority ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [("normal", Priority.NORMAL), ("urgent", Priority.URGENT)])
def test_priority_is_normal_or_urgent(value: str, expected: Priority) -> None:
    assert parse(body(priority=value)).priority is expected


def test_priority_defaults_to_normal() -> None:
    assert parse(body(priority=OMIT)).priority is Priority.NORMAL


@pytest.mark.parametrize("value", ["URGENT", "high", "", None, 1, ["urgent"]])
def test_other_priorities_are_rejected(value: Any) -> None:
    assert reason(body(priority=value)) == "priority: Input should be 'normal' or 'urgent'"


# -- decided_at -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "2024-09-03T10:00:00+09:00",
        "2024-09-03T01:00:00Z",
        "2024-09-03T01:00:00+00:00",
        "2024-09-02T20:00:00-05:00",
    ],
)
def test_decided_at_with_an_offset_is_normalised_to_utc(value: str) -> None:
    decided = parse(body(decided_at=value)).decided_at

    assert decided == datetime(2024, 9, 3, 1, 0, tzinfo=UTC)
    assert decided is not None
    assert decided.utcoffset() is not None
    assert decided.tzinfo is UTC


def test_decided_at_without_an_offset_is_rejected() -> None:
    assert reason(body(decided_at="2024-09-03T10:00:00")) == (
        "decided_at: needs a time zone offset (e.g. +09:00 or Z)"
    )


@pytest.mark.parametrize("value", ["2024-09-03", "yesterday", "2024-13-01T00:00:00Z", ""])
def test_decided_at_that_is_not_a_timestamp_is_rejected(value: str) -> None:
    assert reason(body(decided_at=value)).startswith("decided_at: ")


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
def test_decided_at_out_of_range_in_utc_is_rejected(value: str) -> None:
    assert reason(body(decided_at=value)).startswith("decided_at: ")


# -- evidence ---------------------------------------------------------------------------------


def test_evidence_hashes_are_lowercased() -> None:
    request = parse(body(evidence=[{"sha256": SHA256.upper(), "pdq": PDQ.upper()}]))
    assert request.evidence == (Evidence(sha256=SHA256, pdq=PDQ),)


def test_an_evidence_item_may_carry_one_hash() -> None:
    request = parse(body(evidence=[{"pdq": PDQ}, {"sha256": SHA256, "pdq": None}]))
    assert request.evidence == (Evidence(pdq=PDQ), Evidence(sha256=SHA256))


@pytest.mark.parametrize("key", ["sha256", "pdq"])
@pytest.mark.parametrize(
    "value",
    [SHA256[:63], SHA256 + "0", "g" * 64, " " + SHA256[1:], ""],
    ids=["63", "65", "non-hex", "space", "empty"],
)
def test_an_evidence_hash_must_be_64_hex_characters(key: str, value: str) -> None:
    text = reason(body(evidence=[{"sha256": SHA256}, {key: value}]))
    assert text == f"evidence[1].{key}: must be 64 hexadecimal characters"


def test_an_evidence_hash_ending_in_a_newline_is_rejected() -> None:
    assert (
        reason(body(evidence=[{"sha256": SHA256 + "\n"}]))
        == "evidence[0].sha256: must be 64 hexadecimal characters"
    )


@pytest.mark.parametrize("item", [{}, {"sha256": None}, {"sha256": None, "pdq": None}])
def test_an_evidence_item_without_a_hash_is_rejected(item: dict[str, Any]) -> None:
    assert reason(body(evidence=[{"pdq": PDQ}, item])) == "evidence[1]: names no hash (sha256 or pdq)"


def test_evidence_is_hashes_only() -> None:
    assert (
        reason(body(evidence=[{"sha256": SHA256, "content": "base64..."}]))
        == "evidence[0].content: unknown field"
    )


# -- territorial_scope ------------------------------------------------------------------------


def test_territorial_scope_takes_alpha2_codes() -> None:
    assert parse(body(territorial_scope=["KR", "US", "DE"])).territorial_scope == ("KR", "US", "DE")


@pytest.mark.parametrize("code", ["kr", "KOR", "K", "K1", "", "K\x00"])
def test_other_territorial_codes_are_rejected(code: str) -> None:
    echo = code.replace("\x00", "?")
    assert reason(body(territorial_scope=["KR", code])) == (
        f"territorial_scope[1]: '{echo}' is not an ISO 3166 alpha-2 code"
    )


def test_a_territorial_code_ending_in_a_newline_is_rejected() -> None:
    assert reason(body(territorial_scope=["KR\n"])).startswith("territorial_scope[0]: ")


# -- free text --------------------------------------------------------------------------------


def test_explanation_keeps_newlines_tabs_and_any_language() -> None:
    text = "첫째 줄\n\tSecond line — 두 번째\n"
    assert parse(body(explanation=text)).explanation == text


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x0b", "\x0c", "\x7f", "\x85"])
def test_explanation_rejects_other_control_characters(char: str) -> None:
    assert reason(body(explanation=f"text{char}more")) == (
        "explanation: contains a control character other than newline or tab"
    )


def test_explanation_with_crlf_line_breaks_is_accepted() -> None:
    explanation = parse(body(explanation="line one\r\nline two")).explanation
    assert explanation is not None
    assert explanation.splitlines() == ["line one", "line two"]


@pytest.mark.parametrize("field", ["legal_basis", "case_ref"])
@pytest.mark.parametrize(
    "char", ["\r", "\n", "\r\n", "\t", "\x00", "\x85"], ids=["CR", "LF", "CRLF", "tab", "NUL", "NEL"]
)
def test_one_line_fields_reject_line_breaks_and_controls(field: str, char: str) -> None:
    assert reason(body(**{field: f"Art. 21{char}Bcc: x"})) == (
        f"{field}: contains a control character (CR, LF, NUL or similar)"
    )


@pytest.mark.parametrize(
    ("field", "limit"), [("legal_basis", 2000), ("case_ref", 128), ("explanation", 20000)]
)
def test_free_text_fields_have_length_limits(field: str, limit: int) -> None:
    assert getattr(parse(body(**{field: "a" * limit})), field) == "a" * limit
    assert reason(body(**{field: "a" * (limit + 1)})).startswith(
        f"{field}: String should have at most {limit}"
    )


@pytest.mark.parametrize("field", ["legal_basis", "explanation", "decided_at", "case_ref"])
def test_optional_fields_may_be_null(field: str) -> None:
    assert getattr(parse(body(**{field: None})), field) is None


# -- canonical form and content hash ----------------------------------------------------------


def test_key_order_does_not_change_the_content_hash() -> None:
    forward = parse(body())
    backward = parse(json.dumps(dict(reversed(list(request_dict().items())))))

    assert forward.content_hash() == backward.content_hash()
    assert forward.canonical_json() == backward.canonical_json()


def test_explicit_defaults_and_formatting_do_not_change_the_content_hash() -> None:
    implicit = request_dict(priority=OMIT, legal_basis=OMIT, evidence=OMIT, territorial_scope=OMIT)
    explicit = request_dict(priority="normal", legal_basis=None, evidence=[], territorial_scope=[])

    assert parse(json.dumps(implicit)).content_hash() == parse(json.dumps(explicit, indent=4)).content_hash()


def test_equal_values_written_differently_have_the_same_content_hash() -> None:
    seoul = parse(body(decided_at="2024-09-03T10:00:00+09:00", evidence=[{"sha256": SHA256.upper()}]))
    utc = parse(body(decided_at="2024-09-03T01:00:00Z", evidence=[{"sha256": SHA256}]))

    assert seoul.content_hash() == utc.content_hash()


@pytest.mark.parametrize(
    "change",
    [
        {"urls": ["https://t.me/some_channel/1235"]},
        {"priority": "urgent"},
        {"category": "non_consensual_intimate_imagery"},
        {"explanation": "Different words."},
        {"evidence": [{"sha256": SHA256}]},
        {"decided_at": "2024-09-03T10:00:01+09:00"},
    ],
    ids=lambda change: next(iter(change)),
)
def test_different_content_has_a_different_content_hash(change: dict[str, Any]) -> None:
    assert parse(body(**change)).content_hash() != parse(body()).content_hash()


def test_the_content_hash_is_a_sha256_hex_digest() -> None:
    digest = parse(body()).content_hash()
    assert len(digest) == 64
    assert set(digest) <= set("0123456789abcdef")


def test_the_canonical_form_rebuilds_the_same_request() -> None:
    request = parse(body())
    canonical = request.canonical()

    assert canonical["decided_at"] == "2024-09-03T01:00:00Z"
    assert TakedownRequest.from_canonical(canonical) == request
    assert TakedownRequest.from_canonical(json.loads(request.canonical_json())) == request


# -- request_id_hint --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        body(platform="youtube"),
        body(urls=["javascript:alert(1)"]),
        json.dumps({"request_id": "kcsc-2024-000148"}).encode(),
    ],
    ids=["unknown-platform", "bad-url", "only-the-id"],
)
def test_the_hint_reads_the_request_id_of_a_rejected_body(raw: bytes) -> None:
    with pytest.raises(InvalidRequest):
        parse(raw)
    assert request_id_hint(raw) == "kcsc-2024-000148"


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff\xfe",
        b"{nope",
        b"[]",
        b'["kcsc-1"]',
        b'{"request_id": 148}',
        b'{"request_id": null}',
        b'{"request_id": "kcsc 148"}',
        b'{"request_id": "kcsc\\r\\nBcc: x"}',
        json.dumps({"request_id": "x" * 129}).encode(),
        b"[" * 100_000,
    ],
    ids=["binary", "not-json", "array", "array-of-id", "number", "null", "space", "CRLF", "129", "deep"],
)
def test_the_hint_is_none_when_no_safe_request_id_can_be_read(raw: bytes) -> None:
    assert request_id_hint(raw) is None


def test_the_hint_refuses_a_request_id_ending_in_a_newline() -> None:
    assert request_id_hint(b'{"request_id": "kcsc-1\\n"}') is None


# -- robustness -------------------------------------------------------------------------------


def test_a_text_body_with_a_lone_surrogate_is_rejected() -> None:
    assert reason(body().decode()[:-1] + ', "x": "\udcff"}').startswith("body is not UTF-8")


@pytest.mark.parametrize("escape", ["\\ud800", "\\udc00", "\\ud800x"])
def test_escaped_lone_surrogates_in_json_are_rejected(escape: str) -> None:
    raw = body().decode().replace("Synthetic", escape).encode()
    assert reason(raw).startswith("body is not valid JSON (")
