"""``notice_email_bytes`` writes exactly what flattening ``build_notice_email``'s MIME tree writes.

Both draw their two boundaries from ``mime._boundary``; the tests give both the same sequence, so
any difference in a header, a fold, a line end or a delimiter shows as a byte that differs.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notifier.channels import mime
from notifier.channels.email import flatten
from notifier.channels.mime import build_notice_email, notice_email_bytes
from notifier.channels.rendering import Renderer, default_templates_dir
from notifier.domain.models import TakedownRequest
from notifier.domain.notices import MessageKind
from tests.integration.test_email_channel import FROM, NOTICE_ID, TO, make_content

RENDERER = Renderer(default_templates_dir())


def both(content: Any, **envelope: Any) -> tuple[bytes, bytes]:
    fields: dict[str, Any] = {
        "renderer": RENDERER,
        "from_addr": FROM,
        "reply_to": None,
        "to": (TO,),
        "cc": (),
        "message_id": f"<{NOTICE_ID}.notice@authority.example>",
        "in_reply_to": None,
        **envelope,
    }
    counter = itertools.count()
    mime_boundary = mime._boundary
    # The same two boundaries, in the same order, for each way of writing the message.
    values = ["=_notifier_" + f"{n:032x}" for n in range(2)]
    mime._boundary = lambda: values[next(counter) % 2]
    try:
        tree = flatten(build_notice_email(content, **fields))
        fast = notice_email_bytes(content, **fields)
    finally:
        mime._boundary = mime_boundary
    return tree, fast


def many_requests(count: int) -> tuple[TakedownRequest, ...]:
    return tuple(
        TakedownRequest(
            request_id=f"kcsc-2024-{n:06d}",
            platform="telegram",
            urls=(f"https://t.me/channel_{n}/1", f"https://t.me/channel_{n}/2"),
            category="deepfake_sexual_abuse",
            case_ref=f"2024-DF-{n:06d}",
            explanation="Synthetic sexual imagery. of an identifiable person\n.starting a line with a period",
        )
        for n in range(count)
    )


@pytest.mark.parametrize("language", ["en", "ko"])
@pytest.mark.parametrize("kind", [MessageKind.NOTICE, MessageKind.REMINDER, MessageKind.ESCALATION])
def test_the_same_bytes_for_every_kind_and_language(language: str, kind: MessageKind) -> None:
    tree, fast = both(make_content(language=language, kind=kind))
    assert fast == tree


def test_the_same_bytes_for_fifty_requests_with_every_header() -> None:
    content = make_content(requests=many_requests(50))
    tree, fast = both(
        content,
        reply_to="takedown-replies@authority.example",
        cc=("legal@telegram.example", "trust@telegram.example"),
        in_reply_to=f"<{NOTICE_ID}.notice@authority.example>",
        message_id=f"<{NOTICE_ID}.reminder@authority.example>",
    )
    assert fast == tree
    assert len(fast) > 100_000


def test_the_same_bytes_when_a_long_notice_id_folds_the_attachment_headers() -> None:
    long_id = "TD-" + "a-very-long-platform-identifier-x" + "-20240903-000012"
    content = replace(make_content(), notice_id=long_id)
    tree, fast = both(content, message_id=f"<{long_id}.notice@authority.example>")
    assert b'Content-Disposition: attachment;\r\n filename="' in fast
    assert fast == tree


@settings(max_examples=60, deadline=None)
@given(
    explanation=st.text(max_size=300),
    case_ref=st.none() | st.text(min_size=1, max_size=40),
    name=st.text(min_size=1, max_size=60),
)
def test_the_same_bytes_for_any_text_in_the_fields(explanation: str, case_ref: str | None, name: str) -> None:
    request = TakedownRequest(
        request_id="kcsc-2024-000001",
        platform="telegram",
        urls=("https://t.me/a/1",),
        category="deepfake_sexual_abuse",
        explanation=explanation,
        case_ref=case_ref,
    )
    content = make_content(requests=(request,))
    content = replace(content, authority=replace(content.authority, name=name))
    tree, fast = both(content)
    assert fast == tree
