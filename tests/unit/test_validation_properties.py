"""Properties of request validation: hostile input only ever yields InvalidRequest with a clean reason,
and every valid request parses, round-trips through its canonical form and hashes the same in any key
order.

Examples are derandomised so that a run is reproducible; the generators of valid requests stay within
realistic ranges (years 1970-2100, short texts) so that the file runs in seconds. The edges outside
them are pinned by explicit tests in ``test_validation.py``.
"""

from __future__ import annotations

import json
import unicodedata
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from notifier.domain.models import TakedownRequest
from notifier.domain.validation import Vocabulary, parse_request
from notifier.errors import InvalidRequest

VOCABULARY = Vocabulary(
    platforms=frozenset({"telegram", "videohost", "silent_platform"}),
    categories=frozenset({"deepfake_sexual_abuse", "non_consensual_intimate_imagery"}),
)
FIELDS = (
    "request_id",
    "platform",
    "urls",
    "category",
    "priority",
    "legal_basis",
    "explanation",
    "decided_at",
    "evidence",
    "case_ref",
    "territorial_scope",
)

FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None)
VALID = settings(max_examples=80, deadline=None, derandomize=True, database=None)


def parse_or_reject(raw: bytes | str) -> TakedownRequest | None:
    """Parse ``raw``; a rejection must come as InvalidRequest with a non-empty, printable reason."""
    try:
        return parse_request(raw, VOCABULARY)
    except InvalidRequest as error:
        assert error.reason
        controls = [char for char in error.reason if unicodedata.category(char) == "Cc"]
        assert not controls, f"control characters {controls!r} in reason {error.reason!r}"
        return None


# -- arbitrary input --------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
# Bodies that start like a request, so that the fuzzing gets past the first byte of the parser.
json_prefixes = st.sampled_from([b"", b"{", b'{"request_id": "', b'{"urls": [', b'{"decided_at": "', b"[{"])


@FUZZ
@given(prefix=json_prefixes, raw=st.binary(max_size=300))
def test_arbitrary_bytes_are_parsed_or_rejected_with_a_reason(prefix: bytes, raw: bytes) -> None:
    parse_or_reject(prefix + raw)


@FUZZ
@given(text=st.text(max_size=300))
def test_arbitrary_text_is_parsed_or_rejected_with_a_reason(text: str) -> None:
    parse_or_reject(text)


@FUZZ
@given(value=json_values)
def test_arbitrary_json_values_are_rejected_with_a_reason(value: Any) -> None:
    assert parse_or_reject(json.dumps(value)) is None


@VALID
@given(data=st.dictionaries(st.sampled_from((*FIELDS, "notes", "Request_ID")), json_values, max_size=8))
def test_objects_with_the_real_field_names_and_random_values_are_parsed_or_rejected(
    data: dict[str, Any],
) -> None:
    parse_or_reject(json.dumps(data))


# -- valid requests ---------------------------------------------------------------------------

one_line_text = st.text(alphabet=st.characters(exclude_categories=("Cc", "Cs")), max_size=60)
multi_line_text = st.text(
    alphabet=st.characters(exclude_categories=("Cc", "Cs")) | st.sampled_from("\n\t"), max_size=200
)
label = "[a-z0-9]([a-z0-9-]{0,12}[a-z0-9])?"
hosts = st.from_regex(rf"{label}(\.{label}){{0,2}}\.[a-z]{{2,6}}", fullmatch=True)
path_segments = st.text(
    alphabet=st.sampled_from("abcxyzABC0129-._~!$&'()*+,;=:@%") | st.characters(categories=("L", "N")),
    max_size=20,
)


@st.composite
def urls(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["http", "https", "HTTPS", "Http"]))
    port = draw(st.none() | st.integers(1, 65535))
    path = "".join("/" + segment for segment in draw(st.lists(path_segments, max_size=5)))
    query = draw(
        st.none()
        | st.from_regex(r"[a-z]{1,8}=[A-Za-z0-9%]{0,12}(&[a-z]{1,8}=[0-9]{1,4}){0,3}", fullmatch=True)
    )
    fragment = draw(st.none() | st.from_regex(r"[A-Za-z0-9-]{0,10}", fullmatch=True))
    return (
        f"{scheme}://{draw(hosts)}"
        + (f":{port}" if port is not None else "")
        + path
        + (f"?{query}" if query is not None else "")
        + (f"#{fragment}" if fragment is not None else "")
    )


@st.composite
def timestamps_with_offset(draw: st.DrawFn) -> str:
    moment = draw(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1)))
    offset = timezone(timedelta(minutes=draw(st.integers(-14 * 60, 14 * 60))))
    text = moment.replace(tzinfo=offset).isoformat()
    return text.replace("+00:00", "Z") if draw(st.booleans()) else text


hex64 = st.text(alphabet="0123456789abcdefABCDEF", min_size=64, max_size=64)
evidence_items = st.one_of(
    st.fixed_dictionaries({"sha256": hex64}),
    st.fixed_dictionaries({"pdq": hex64}),
    st.fixed_dictionaries({"sha256": hex64, "pdq": hex64}),
)

valid_requests: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {
        "request_id": st.from_regex(r"[A-Za-z0-9._:-]{1,128}", fullmatch=True),
        "platform": st.sampled_from(sorted(VOCABULARY.platforms)),
        "urls": st.lists(urls(), min_size=1, max_size=4),
        "category": st.sampled_from(sorted(VOCABULARY.categories)),
    },
    optional={
        "priority": st.sampled_from(["normal", "urgent"]),
        "legal_basis": st.none() | one_line_text,
        "explanation": st.none() | multi_line_text,
        "decided_at": st.none() | timestamps_with_offset(),
        "evidence": st.lists(evidence_items, max_size=3),
        "case_ref": st.none() | one_line_text,
        "territorial_scope": st.lists(st.from_regex(r"[A-Z]{2}", fullmatch=True), max_size=4),
    },
)


@VALID
@given(data=valid_requests, ensure_ascii=st.booleans())
def test_a_valid_request_always_parses_and_round_trips_through_its_canonical_form(
    data: dict[str, Any], ensure_ascii: bool
) -> None:
    request = parse_request(json.dumps(data, ensure_ascii=ensure_ascii), VOCABULARY)

    assert request.request_id == data["request_id"]
    assert list(request.urls) == data["urls"]
    assert TakedownRequest.from_canonical(request.canonical()) == request
    rebuilt = TakedownRequest.from_canonical(json.loads(request.canonical_json()))
    assert rebuilt == request
    assert rebuilt.content_hash() == request.content_hash()


def _reordered(value: Any, data: st.DataObject) -> Any:
    """``value`` with the keys of every object in it, at any depth, in a drawn order."""
    if isinstance(value, dict):
        keys = data.draw(st.permutations(list(value)))
        return {key: _reordered(value[key], data) for key in keys}
    if isinstance(value, list):
        return [_reordered(item, data) for item in value]
    return value


@VALID
@given(
    request=valid_requests,
    data=st.data(),
    spell_out_default=st.booleans(),
    indent=st.none() | st.integers(0, 4),
)
def test_the_content_hash_ignores_key_order_defaults_and_formatting(
    request: dict[str, Any], data: st.DataObject, spell_out_default: bool, indent: int | None
) -> None:
    original = parse_request(json.dumps(request), VOCABULARY)
    copy = _reordered(request, data)
    if spell_out_default:
        copy.setdefault("priority", "normal")

    again = parse_request(json.dumps(copy, indent=indent), VOCABULARY)

    assert again.content_hash() == original.content_hash()


@VALID
@given(data=valid_requests, field=st.sampled_from(FIELDS), value=json_values | one_line_text)
def test_a_valid_request_with_one_field_replaced_by_anything_is_parsed_or_rejected(
    data: dict[str, Any], field: str, value: Any
) -> None:
    parse_or_reject(json.dumps({**data, field: value}))
