"""Reading a receiving server's ``Authentication-Results`` (RFC 8601) for the DKIM results of an
inbound reply: real servers' headers from the mail corpus, and the grammar's corners."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifier.domain.replies.authres import (
    DkimResult,
    describe,
    dkim_results,
    parse_authentication_results,
)


def corpus_headers(mail_corpus: Path, name: str) -> list[str]:
    message = email.message_from_bytes((mail_corpus / name).read_bytes(), policy=email.policy.compat32)
    return [str(value) for value in message.get_all("Authentication-Results") or []]


def test_a_mimecast_feed_header_with_a_comment_and_every_property(mail_corpus: Path) -> None:
    (result,) = dkim_results(corpus_headers(mail_corpus, "auto-replies/rfc3834-06.eml"))
    assert result == DkimResult(
        result="pass",
        domain="example.com",
        identity="@example.com",
        selector="mimecast20190719",
        authserv_id="feed.ef.example.org",
    )
    assert result.passed


def test_exchange_online_writes_its_name_after_its_first_result(mail_corpus: Path) -> None:
    (result,) = dkim_results(corpus_headers(mail_corpus, "bounces/lhost-office365-07.eml"))
    assert (result.result, result.domain, result.authserv_id) == ("none", "none", "outlook.com")
    assert not result.passed


def test_a_property_cut_from_its_method_by_a_stray_semicolon_stays_with_it(mail_corpus: Path) -> None:
    (result,) = dkim_results(corpus_headers(mail_corpus, "bounces/lhost-yahoo-02.eml"))
    assert (result.result, result.identity, result.domain) == ("pass", "@y.example.co.jp", None)


def test_gmail_results_over_several_folded_lines() -> None:
    header = (
        "mx.google.com;\r\n"
        "       dkim=pass header.i=@platform.example header.s=20230601 header.b=RJNz7oaY;\r\n"
        "       spf=pass (google.com: domain of abuse@platform.example designates 209.85.220.41 as "
        "permitted sender) smtp.mailfrom=abuse@platform.example;\r\n"
        "       dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=platform.example"
    )
    parsed = parse_authentication_results(header)
    assert parsed is not None
    assert [(r.method, r.result) for r in parsed.results] == [
        ("dkim", "pass"),
        ("spf", "pass"),
        ("dmarc", "pass"),
    ]
    assert parsed.results[1].get("smtp.mailfrom") == "abuse@platform.example"


def test_comments_nest_quotes_hide_semicolons_and_a_version_is_not_a_result() -> None:
    header = (
        'mx.authority.example (Postfix (with "quotes"; and a semicolon)) 1;'
        ' dkim=fail reason="signature did not verify; body hash" (bad \\) sig) header.d=platform.example'
        ' header.i="@abuse.platform.example"; dkim/1=pass header.d=relay.example'
    )
    results = dkim_results([header])
    assert [(r.result, r.domain, r.identity) for r in results] == [
        ("fail", "platform.example", "@abuse.platform.example"),
        ("pass", "relay.example", None),
    ]
    parsed = parse_authentication_results(header)
    assert parsed is not None and parsed.results[0].reason == "signature did not verify; body hash"


def test_none_and_an_empty_header_give_no_result() -> None:
    assert dkim_results(["mx.authority.example; none"]) == ()
    assert dkim_results(["mx.authority.example 1; none (no methods)"]) == ()
    assert parse_authentication_results("   ") is None
    assert dkim_results([]) == ()
    assert describe(()) is None


def test_only_the_topmost_header_is_believed_unless_the_servers_are_named() -> None:
    ours = "mx.authority.example; dkim=fail header.d=platform.example"
    forged = "mx.authority.example; dkim=pass header.d=platform.example"  # came with the message
    assert [r.result for r in dkim_results([ours, forged])] == ["fail"]
    named = dkim_results(
        [ours, "mx.elsewhere.example; dkim=pass header.d=x.example", forged],
        authserv_ids=["MX.Authority.Example"],
    )
    assert [(r.result, r.authserv_id) for r in named] == [
        ("fail", "mx.authority.example"),
        ("pass", "mx.authority.example"),
    ]
    assert (
        dkim_results(["mx.elsewhere.example; dkim=pass header.d=x.example"], authserv_ids=["mx.a.example"])
        == ()
    )


def test_what_is_kept_with_the_reply_names_the_server_the_result_and_the_domain() -> None:
    header = "mx.authority.example; dkim=pass header.d=platform.example header.i=@platform.example; spf=pass"
    assert describe(dkim_results([header])) == (
        "mx.authority.example: dkim=pass header.d=platform.example header.i=@platform.example"
    )


@pytest.mark.parametrize(
    "header",
    ["(", ")", '"', "a; =", "a; dkim=", "; ; ;", "a (b (c", 'x; dkim="pass', "\\", "a;" * 5000],
)
def test_broken_headers_give_what_can_be_read_and_never_raise(header: str) -> None:
    for result in dkim_results([header]):
        assert isinstance(result.result, str)


@given(st.lists(st.text(alphabet=st.sampled_from('ab.=;()"\\ @dkimpassfailheader'), max_size=80), max_size=3))
def test_any_text_is_read_without_raising(headers: list[str]) -> None:
    results = dkim_results(headers, authserv_ids=["a"]) + dkim_results(headers)
    assert all(result.result == result.result.lower() for result in results)
