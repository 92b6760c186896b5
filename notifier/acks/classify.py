"""What an email that came back to us is, and which notice it answers (SPEC §7): pure, no I/O.

Only a ``human`` verdict may ever count as a platform's acknowledgement, so every automated kind is
tried first and recognised by its *structure*: RFC 3464 and RFC 5965 report parts, the headers mail
servers and auto-responders set, the fixed banners MTAs write, SMTP diagnostics from a mailer
daemon. A message is called human only when nothing automated was found, it is not one of our own
messages come back, *and* it matches one of our notices. A mistake towards "automated" costs an
acknowledgement that staff can record by hand; a mistake towards "human" would stop a clock on a
receipt or a bounce. Who sent a human reply is not judged here: the caller knows the platform.

An explicit ``Auto-Submitted: auto-replied`` is honoured as a receipt unless the message also
carries machine evidence of a failed delivery (a report part, a failure header, an MTA banner, an
SMTP diagnostic, the returned original): a postmaster's free-text "bounce notification" with none
of them is read as the automatic answer it declares itself to be.

Matching reads the notice id out of our own Message-IDs (``<TD-….notice@domain>``), the
``[TD-…]`` subject token and a ticket the platform gave us earlier; for bounces, delivery reports
and feedback reports also out of the VERP envelope address and the original message returned
inside them.
"""

from __future__ import annotations

import codecs
import email
import email.policy
import html
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.message import Message
from enum import StrEnum
from typing import Final

from notifier.domain.notices import NOTICE_ID_PATTERN, MessageKind, parse_notice_id

__all__ = ["MailKind", "MailVerdict", "classify"]


class MailKind(StrEnum):
    BOUNCE = "bounce"  # not delivered after all; a 4.x.x bounce_status means only delayed so far
    DELIVERY_REPORT = "delivery_report"  # a DSN saying delivered or relayed: no failure, no answer
    FEEDBACK_REPORT = "feedback_report"  # ARF/JMRP complaint, a mail client's unsubscribe request
    AUTO_REPLY = "auto_reply"  # a receipt: recorded, never an acknowledgement
    HUMAN = "human"  # a person's answer to one of our notices: the only acknowledgement
    UNRELATED = "unrelated"  # matches none of our notices, or could not be read


@dataclass(frozen=True, slots=True, kw_only=True)
class MailVerdict:
    kind: MailKind
    notice_ids: tuple[str, ...] = ()  # best first
    matched_by: str = ""  # in-reply-to, references, verp, returned-headers, subject, ticket or ""
    ticket: str | None = None  # the platform's ticket, from an auto-reply or a human reply
    removal_claimed: bool = False  # human replies only: the wording certainly says removed
    bounce_status: str | None = None  # RFC 3464 Status, e.g. "5.1.1"
    reason: str = ""  # why: names the evidence, never quotes the message

    @property
    def counts_as_acknowledgement(self) -> bool:
        return self.kind is MailKind.HUMAN and bool(self.notice_ids)


_MAX_RAW_BYTES: Final = 4 * 1024 * 1024  # a reply's headers and words come first
_MAX_BOUNDARY_LINES: Final = 500
_MAX_PARTS: Final = 64
_MAX_PART_BYTES: Final = 256 * 1024
# Codecs a charset parameter can name that are not charsets: they raise or warn on odd input.
_NOT_CHARSETS: Final = frozenset({"unicode-escape", "raw-unicode-escape", "idna", "punycode", "undefined"})
_SCAN: Final = 64 * 1024  # characters of text searched for banners, ids and wording
_AUTOMATED: Final = frozenset({MailKind.BOUNCE, MailKind.DELIVERY_REPORT, MailKind.FEEDBACK_REPORT})

_ID: Final = NOTICE_ID_PATTERN.pattern.replace("(", "(?:")
_KINDS: Final = "|".join(kind.value for kind in MessageKind)
_OUR_MSG_ID: Final = re.compile(
    rf"<(?P<id>{_ID})\.(?:{_KINDS})(?:-[0-9])?@(?P<domain>[A-Za-z0-9.-]{{1,253}})>"
)
_TOKEN: Final = re.compile(rf"(?<![A-Za-z0-9_-])(?P<id>{_ID})(?![0-9])")
_VERP: Final = re.compile(rf"\+(?P<id>{_ID})@")
_RETURNED_ID: Final = re.compile(
    rf"^[ \t>]*(?:X-Notifier-Notice-Id:[ \t]*|Subject:[^\n]*?\[)(?P<id>{_ID})(?![0-9])", re.I | re.M
)
_ENCODED_WORD: Final = re.compile(r"=\?([^?*\s]{1,40})(?:\*[^?\s]*)?\?[bq]\?", re.I)  # RFC 2047 (and 2231)
_MIME_TYPE: Final = re.compile(r"\s*([a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+)")
_MIME_PARAM: Final = re.compile(r";\s*([a-z0-9*_.-]+)\s*=\s*(\"[^\"]*\"|[^;\s]+)")
_ADDRESS: Final = re.compile(r"<([^<>]*)>\s*$|([^\s<>\"]+@[^\s<>\"]+)")

# -- evidence of a failed delivery without an RFC 3464 part
_BANNER: Final = re.compile(  # fixed sentences MTAs open their failure notices with
    r"This is the qmail-send program|This message was created automatically by mail delivery"
    r"|This is the mail system at host|Transcript of session follows|This is a copy of (?:your|the) "
    r"message, including all the headers|following addresses? had permanent fatal errors"
    r"|Delivery to the following recipients? (?:failed|has been delayed)|Delivery has failed to these"
    r" recipients|did not reach (?:some or all of the intended|the following) recipient"
    r"|message could not be delivered to one or more recipients|I'm afraid I wasn't able to deliver"
    r"|Sorry, we were unable to deliver your message|Could not be delivered to: <"
    r"|The following message to <[^>\n]*> was undeliverable",
    re.I,
)
_DSN_TEXT: Final = re.compile(  # delivery-status fields pasted or quoted into a text part
    r"^[ \t>]*(?:Final|Original)-Recipient:.*(?:\n.*){0,12}?\n[ \t>]*Action:[ \t]*(?:failed|delayed)",
    re.I | re.M,
)
_SES: Final = re.compile(r"\"notificationType\"\s*:\s*\"(Bounce|Complaint|Delivery)\"", re.I)
_SES_KINDS: Final = {
    "bounce": MailKind.BOUNCE,
    "complaint": MailKind.FEEDBACK_REPORT,
    "delivery": MailKind.DELIVERY_REPORT,
}
_SMTP_DIAGNOSTIC: Final = re.compile(
    r"\b[45]\d\d[ \t-]+[45]\.\d{1,3}\.\d{1,3}\b|\b(?:5[05][0-4]|4[25][0-2])\b[^\n]{0,80}"
    r"(?:user|mailbox|recipient|address|unknown|denied|rejected|not taken|no such)",
    re.I,
)
_FAILURE_SUBJECT: Final = re.compile(
    r"undeliver|not (?:be )?delivered|delivery (?:status notification|fail|has failed|problem|error)"
    r"|mail delivery failed|failure notice|returned mail|returning message|mail (?:system )?"
    r"(?:error|failure)|delayed mail|delivery delayed|message \S+ delayed|could not (?:be delivered|send)"
    r"|error sending|non-?delivery|nondeliverable|permanent (?:delivery )?(?:failure|error)|loop alert"
    r"|не доставлено|unzustellbar|nicht zustellbar|non remis|メールエラー|配信エラー|반송"
    r"|(?:전달|발송|배달)\s*실패",
    re.I,
)
_DAEMON_LOCAL: Final = re.compile(
    r"(?:mailer[-_.]?daemon|postmaster|post_master|mail[-_.]?daemon|mail\.delivery\.system"
    r"|double-bounce|[a-z0-9._-]+-(?:owner|bounces?))",
    re.I,
)
_DAEMON_NAME: Final = re.compile(r"mail delivery (?:system|subsystem)|mailer[-_ ]daemon", re.I)

# -- evidence of an automatic answer
_AUTO_HEADERS: Final = (
    "x-autoreply",
    "x-autorespond",
    "x-autoresponder",
    "x-autoreply-from",
    "x-mail-autoreply",
    "x-autogenerated",
    "x-vacation",
    "x-apple-action",
)
_AUTO_SUBJECT: Final = re.compile(
    r"^\s*(?:(?:re|aw|sv|antw|답장|회신)\s*:\s*)*(?:auto(?:matic)?[\s_-]*(?:reply|respon|antwort|answer)"
    r"|out of (?:the )?office|away from|vacation|abwesen|réponse automatique|respuesta automática"
    r"|risposta automatica|자동\s*(?:응답|회신)|부재|自動応答|自动回复|自動回覆)",
    re.I,
)
_NOREPLY: Final = re.compile(r"(?:no[-_.]?reply|do[-_.]?not[-_.]?reply|donotreply)", re.I)

# -- what a reply says
_TICKET: Final = re.compile(  # one run of separators before the value: no nested backtracking
    r"\b(?:ticket|case|incident|reference|ref|complaint|tracking)(?:[ \t]?(?:id|no\.?|number|num)\b)?[\s:#]*"
    r"(?P<a>[A-Za-z0-9][A-Za-z0-9_/-]{0,40})|\brequest[ \t]?#(?P<b>[A-Za-z0-9][A-Za-z0-9_/-]{0,40})"
    r"|\[(?P<c>[A-Z][A-Z0-9]{0,9}-\d{1,12})\]|(?:티켓|접수|문의|신고)[ \t]?번호[\s:：#]*"
    r"(?P<d>[A-Za-z0-9][A-Za-z0-9_-]{0,40})",
    re.I,
)
_REPLY_CUT: Final = re.compile(  # where the quoted original starts in a top-posted reply
    r"^(?:-{2,}\s*(?:Original Message|원본 메시지|Forwarded message|전달된 메시지)|_{10,}\s*$"
    r"|On\b[^\n]{0,300}\bwrote:|[^\n]{0,300}님이 작성:|(?:From|보낸 사람|보낸사람|발신):[^\n]*\n"
    r"(?:[^\n]*\n){0,3}?(?:Sent|Date|보낸 날짜|날짜|To|받는 사람):)",
    re.I | re.M,
)
_REMOVED: Final = re.compile(
    r"\b(?:we|i)(?:['’]ve|\s+have)?(?:\s+(?:now|already|successfully))*\s+(?:removed|deleted|taken\s+down)\b"
    r"|\b(?:has|have)(?:\s+(?:now|already|successfully|permanently))*\s+been\s+(?:\w+\s+){0,2}"
    r"(?:removed|deleted|taken\s+down)\b|\b(?:was|were)(?:\s+(?:successfully|already|permanently))*\s+"
    r"(?:removed|deleted|taken\s+down)\b|\b(?:we|i)(?:['’]ve|\s+have)?\s+taken\s+(?:\w+\s+){1,4}down\b"
    r"|삭제[ \t]?(?:처리|조치)?[ \t]?(?:를|가)?[ \t]?(?:완료[ \t]?)?(?:했|하였|되었|됐)(?:습니다|어요)",
    re.I,
)
_DOUBT: Final = re.compile(  # negation, condition, future, partiality or a question in the sentence
    r"\b(?:not|no|never|cannot|unable|fail(?:ed)?|if|unless|whether|once|when|until|will|would|should"
    r"|shall|may|might|could|can|must|pending|yet|some|partially|partly|except|but|only|plan|intend"
    r"|scheduled|soon|to\s+be|be\s+(?:removed|deleted|taken))\b|n['’]t\b|\?"
    r"|않|못|없|아직|예정|경우|일부|만약|다면|라면",
    re.I,
)
_SENTENCE: Final = re.compile(r"(?<=[.!?;。])\s+|\n+")
_STATUS: Final = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")
_TEXT_STATUS: Final = (
    re.compile(r"^[ \t>]*Status:[ \t]*([45]\.\d{1,3}\.\d{1,3})\b", re.I | re.M),
    re.compile(r"\b[45]\d\d[ \t-]+(?:#[ \t]*)?\(?([45]\.\d{1,3}\.\d{1,3})\b"),
    re.compile(r"\"status\"\s*:\s*\"([45]\.\d{1,3}\.\d{1,3})\""),
)


def classify(
    raw: bytes,
    *,
    envelope_recipients: Sequence[str] = (),
    known_ticket: Callable[[str], str | None] | None = None,
    our_domains: Sequence[str] = (),
) -> MailVerdict:
    """Classify one received email and match it to our notices; malformed mail never raises.

    ``envelope_recipients`` are the SMTP RCPT TO addresses when the mail came in over SMTP.
    ``known_ticket`` maps a platform ticket learnt earlier to its notice id (it is the caller's:
    what it raises propagates). ``our_domains``, when given, are the only Message-ID domains
    accepted as ours.
    """
    try:
        mail = _read(email.message_from_bytes(_bounded(bytes(raw)), policy=email.policy.default))
    except Exception as error:  # the email package's failures have no common base class
        return MailVerdict(kind=MailKind.UNRELATED, reason=f"unparseable ({type(error).__name__})")
    if _sent_by_us(mail, our_domains):  # a copy or a loop: what we said is no one's answer
        return MailVerdict(kind=MailKind.UNRELATED, reason="one of our own messages")
    kind, reason = _kind(mail)
    ticket = None if kind in _AUTOMATED else _ticket(mail)
    ids, matched_by = _match(
        mail,
        kind,
        envelope_recipients=envelope_recipients,
        our_domains=our_domains,
        ticket=ticket,
        known_ticket=known_ticket,
    )
    if kind is MailKind.UNRELATED and ids:
        kind, reason = MailKind.HUMAN, "no automated markers; matches our notice"
    if kind is MailKind.UNRELATED:
        # A ticket is kept: the caller may know it (a portal's confirmation names only its ticket),
        # and the mail is then a human reply about that notice.
        return MailVerdict(
            kind=kind,
            reason=reason,
            ticket=ticket,
            removal_claimed=ticket is not None and _removal_claimed(mail),
        )
    return MailVerdict(
        kind=kind,
        notice_ids=ids,
        matched_by=matched_by,
        ticket=ticket,
        removal_claimed=kind is MailKind.HUMAN and _removal_claimed(mail),
        bounce_status=_bounce_status(mail) if kind is MailKind.BOUNCE else None,
        reason=reason,
    )


# -- reading -------------------------------------------------------------------------------------


def _bounded(raw: bytes) -> bytes:
    """The head of the message, cut before the part that would make its parse slow: the email
    package spends about 0.2 ms on the headers of every MIME part, so ten thousand tiny parts would
    take seconds. Everything that classifies a message sits in its first parts."""
    data = raw[:_MAX_RAW_BYTES]
    position = -1
    for _ in range(_MAX_BOUNDARY_LINES):
        position = data.find(b"\n--", position + 1)
        if position < 0:
            return data
    return data[:position]


@dataclass(frozen=True, slots=True)
class _Mail:
    headers: Mapping[str, tuple[str, ...]]  # lower-case names; unfolded, RFC 2047 decoded
    types: frozenset[str]  # content types of all parts, attached messages included
    report_type: str
    text: str  # readable text of the message's own parts
    returned: str  # attached messages, returned header blocks, delivery-status blocks
    dsn: tuple[Mapping[str, str], ...]  # delivery-status field blocks
    attached_headers: tuple[Mapping[str, tuple[str, ...]], ...]

    def first(self, name: str) -> str:
        values = self.headers.get(name)
        return values[0] if values else ""

    @property
    def head(self) -> str:
        return self.text[:_SCAN]


def _read(message: Message) -> _Mail:
    plain: list[str] = []
    markup: list[str] = []
    returned: list[str] = []
    types: set[str] = set()
    dsn: list[Mapping[str, str]] = []
    attached: list[Mapping[str, tuple[str, ...]]] = []
    stack: list[tuple[Message, bool]] = [(message, False)]
    for _ in range(_MAX_PARTS):
        if not stack:
            break
        part, inside = stack.pop()
        ctype, params = _content_type(part)
        types.add(ctype)
        payload = part.get_payload()
        if isinstance(payload, list):
            children = [sub for sub in payload if isinstance(sub, Message)]
            blocks = [_headers(sub) for sub in children] if ctype.startswith("message/") else []
            returned.extend(_header_text(block) for block in blocks)
            if ctype == "message/delivery-status":
                dsn.extend({name: values[0] for name, values in block.items()} for block in blocks)
                continue
            attached.extend(blocks)
            stack.extend((sub, inside or bool(blocks)) for sub in reversed(children))
            continue
        body = _decode(part, params.get("charset", ""))
        if ctype == "message/delivery-status":
            dsn.extend(_field_blocks(body))
        if inside or ctype.startswith("message/") or "rfc822-header" in ctype:
            returned.append(body)
        elif ctype == "text/html":
            markup.append(_strip_html(body))
        elif ctype.startswith(("text/", "multipart/")):  # a multipart without parts is its text
            plain.append(body)
    return _Mail(
        headers=_headers(message),
        types=frozenset(types),
        report_type=_content_type(message)[1].get("report-type", ""),
        text="\n".join(plain or markup)[: _SCAN * 4],
        returned="\n".join(returned)[: _SCAN * 4],
        dsn=tuple(dsn),
        attached_headers=tuple(attached),
    )


def _raw(part: Message, name: str) -> str:
    for key, value in part.raw_items():
        if str(key).strip().lower() == name:
            return re.sub(r"\s+", " ", str(value)).strip()
    return ""


def _content_type(part: Message) -> tuple[str, dict[str, str]]:
    """Type and parameters read from the raw header: cheaper than the policy's, and never raises."""
    declared = _raw(part, "content-type").lower()
    params = {name: value.strip('"') for name, value in _MIME_PARAM.findall(declared)}
    if match := _MIME_TYPE.match(declared):
        return match.group(1), params
    return ("message/rfc822" if part.get_default_type() == "message/rfc822" else "text/plain"), params


def _decode(part: Message, charset: str) -> str:
    """The part's text. ``get_payload(decode=True)`` undoes the transfer encoding and leaves the
    bytes alone; without ``decode`` it would decode 8-bit text itself, with any charset named."""
    try:
        data = part.get_payload(decode=True)
    except Exception:  # a transfer encoding the package cannot undo: searched as it came
        payload = part.get_payload()
        data = payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""
    return _text(data[:_MAX_PART_BYTES], charset) if isinstance(data, bytes) else ""


def _text(data: bytes, charset: str) -> str:
    """Decoded with the declared charset unless it is unknown, not a text encoding, or one of the
    codecs that raise or warn on input they dislike; then as UTF-8. Never raises, never warns."""
    try:
        if _is_charset(charset or "utf-8"):
            return data.decode(charset or "utf-8", errors="replace")
    except (LookupError, UnicodeError, ValueError):  # not a text encoding after all
        pass
    return data.decode("utf-8", errors="replace")


def _headers(message: Message) -> dict[str, tuple[str, ...]]:
    headers: dict[str, list[str]] = {}
    for name, value in list(message.raw_items())[:500]:
        headers.setdefault(str(name).strip().lower(), []).append(_header_value(str(value)))
    return {name: tuple(values) for name, values in headers.items()}


def _header_value(value: str) -> str:
    value = re.sub(r"\r?\n[ \t]*", " ", value[:4000]).replace("\r", " ").replace("\n", " ").strip()
    value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if "=?" not in value or not all(_is_charset(name) for name in _ENCODED_WORD.findall(value)):
        return value
    try:
        return str(make_header(decode_header(value)))
    except Exception:  # a broken encoded-word is kept as it came
        return value


def _is_charset(name: str) -> bool:
    try:
        return codecs.lookup(name).name not in _NOT_CHARSETS
    except LookupError:
        return False


def _header_text(headers: Mapping[str, tuple[str, ...]]) -> str:
    return "\n".join(f"{name}: {value}" for name, values in headers.items() for value in values)


def _field_blocks(text: str) -> list[dict[str, str]]:
    return [
        {name.lower(): value for name, value in re.findall(r"^([A-Za-z-]+):[ \t]*(.*)$", block, re.M)}
        for block in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n"))
    ]


def _strip_html(markup: str) -> str:
    markup = re.sub(r"(?i)<br\s*/?>|</p\s*>|</div\s*>|</tr\s*>", "\n", markup[:_MAX_PART_BYTES])
    return html.unescape(re.sub(r"<[^<>]*>", " ", markup))


def _address(value: str) -> str:
    match = _ADDRESS.search(value[:1000])  # no address is longer; the search is quadratic
    return "" if match is None else (match.group(1) if match.group(1) is not None else match.group(2))


# -- what it is ----------------------------------------------------------------------------------

_Rule = tuple[str, Callable[[_Mail], bool]]


def _auto_submitted(mail: _Mail) -> str:
    return re.split(r"[\s(;]", mail.first("auto-submitted").strip().lower(), maxsplit=1)[0]


def _from_daemon(mail: _Mail) -> bool:
    sender = mail.first("from")
    address = _address(sender) or sender.strip()
    local = address.rpartition("@")[0] or address
    if "from" in mail.headers and address in ("", "<>"):
        return True
    return bool(_DAEMON_LOCAL.fullmatch(local) or _DAEMON_NAME.search(sender) or "x-mlserver" in mail.headers)


def _daemon_failure_subject(mail: _Mail) -> bool:
    return _from_daemon(mail) and _FAILURE_SUBJECT.search(mail.first("subject")) is not None


_VENDOR_BOUNCE: Final[tuple[_Rule, ...]] = (
    ("X-Failed-Recipients header", lambda mail: "x-failed-recipients" in mail.headers),
    ("Exchange non-delivery report", lambda mail: "x-ms-exchange-message-is-ndr" in mail.headers),
    (
        "Auto-Submitted marks a failure",
        lambda mail: bool(re.search(r"\((?:failure|warn)", mail.first("auto-submitted"), re.I)),
    ),
    ("a mail server's failure notice", lambda mail: _BANNER.search(mail.head) is not None),
    ("delivery-status fields in the text", lambda mail: _DSN_TEXT.search(mail.head) is not None),
    (
        "an SMTP error from a mail server",
        lambda mail: _from_daemon(mail) and _SMTP_DIAGNOSTIC.search(mail.head) is not None,
    ),
    (
        "a mail server's failure notice with the returned message",
        lambda mail: _daemon_failure_subject(mail) and bool(mail.attached_headers or mail.returned),
    ),
    (
        "a mail server's failure notice, not marked as an auto-reply",
        lambda mail: _daemon_failure_subject(mail) and _auto_submitted(mail) != "auto-replied",
    ),
)
_VENDOR_FEEDBACK: Final[tuple[_Rule, ...]] = (
    (
        "Microsoft JMRP complaint",
        lambda mail: any("x-hmxmroriginalrecipient" in h for h in mail.attached_headers),
    ),
    ("a mail client's unsubscribe request", lambda mail: mail.first("x-apple-unsubscribe").lower() == "true"),
)
_AUTO_REPLY: Final[tuple[_Rule, ...]] = (
    ("RFC 3834 Auto-Submitted", lambda mail: _auto_submitted(mail) not in ("", "no")),
    (
        "Precedence bulk, junk or list",
        lambda mail: (
            re.split(r"[\s;]", mail.first("precedence").strip().lower())[0] in ("bulk", "junk", "list")
        ),
    ),
    ("an auto-responder header", lambda mail: any(name in mail.headers for name in _AUTO_HEADERS)),
    (
        "empty return path",
        lambda mail: "return-path" in mail.headers and not _address(mail.first("return-path")),
    ),
    ("an auto-reply subject", lambda mail: _AUTO_SUBJECT.search(mail.first("subject")) is not None),
    ("a no-reply sender", lambda mail: _NOREPLY.match(_address(mail.first("from"))) is not None),
)


def _kind(mail: _Mail) -> tuple[MailKind, str]:
    if verdict := _report(mail):
        return verdict
    for kind, rules in (
        (MailKind.BOUNCE, _VENDOR_BOUNCE),
        (MailKind.FEEDBACK_REPORT, _VENDOR_FEEDBACK),
        (MailKind.AUTO_REPLY, _AUTO_REPLY),
    ):
        if reason := next((reason for reason, applies in rules if applies(mail)), None):
            return kind, reason
    return MailKind.UNRELATED, "no automated markers and no match to our notices"


def _sent_by_us(mail: _Mail, our_domains: Sequence[str]) -> bool:
    return "x-notifier-notice-id" in mail.headers or bool(_our_ids(mail.first("message-id"), our_domains))


def _report(mail: _Mail) -> tuple[MailKind, str] | None:
    """A report in a standard (RFC 3464, RFC 5965) or vendor (Amazon SES) machine format."""
    if mail.report_type == "delivery-status" or "message/delivery-status" in mail.types:
        actions = {block.get("action", "").strip().lower() for block in mail.dsn} - {""}
        if actions and actions <= {"delivered", "relayed", "expanded"}:
            return MailKind.DELIVERY_REPORT, "RFC 3464 report of a successful delivery"
        return MailKind.BOUNCE, "RFC 3464 delivery-status report"
    if mail.report_type == "feedback-report" or "message/feedback-report" in mail.types:
        return MailKind.FEEDBACK_REPORT, "RFC 5965 feedback report"
    if ses := _SES.search(mail.head):
        return _SES_KINDS[ses.group(1).lower()], f"Amazon SES {ses.group(1).lower()} notification"
    return None


# -- which notice --------------------------------------------------------------------------------


def _match(
    mail: _Mail,
    kind: MailKind,
    *,
    envelope_recipients: Sequence[str],
    our_domains: Sequence[str],
    ticket: str | None,
    known_ticket: Callable[[str], str | None] | None,
) -> tuple[tuple[str, ...], str]:
    in_reply_to, references = (" ".join(mail.headers.get(name, ())) for name in ("in-reply-to", "references"))
    sources: list[tuple[str, list[str]]] = [
        ("in-reply-to", _our_ids(in_reply_to, our_domains)),
        ("references", _our_ids(references, our_domains)[::-1]),  # the parent comes last
    ]
    if kind in _AUTOMATED:
        names = ("to", "delivered-to", "x-original-to", "envelope-to", "x-envelope-to")
        addressed = [*envelope_recipients, *(v for name in names for v in mail.headers.get(name, ()))]
        sources.append(("verp", [m.group("id") for a in addressed for m in _VERP.finditer(a)]))
        returned = f"{mail.returned}\n{mail.head}"
        in_headers = [m.group("id") for m in _RETURNED_ID.finditer(returned)]
        sources.append(("returned-headers", _our_ids(returned, our_domains) + in_headers))
    sources.append(("subject", [m.group("id") for m in _TOKEN.finditer(mail.first("subject"))]))
    if ticket is not None and known_ticket is not None:
        sources.append(("ticket", [notice for notice in (known_ticket(ticket),) if notice]))
    ids: list[str] = []
    matched_by = ""
    for source, found in sources:
        for notice in found:
            if notice not in ids and parse_notice_id(notice):
                ids.append(notice)
                matched_by = matched_by or source
    return tuple(ids), matched_by


def _our_ids(text: str, our_domains: Sequence[str]) -> list[str]:
    """Notice ids in Message-IDs of ours: any domain, or only ``our_domains`` when given."""
    domains = {domain.strip().lower().rstrip(".") for domain in our_domains}
    found = _OUR_MSG_ID.finditer(text)
    return [m.group("id") for m in found if not domains or m.group("domain").lower() in domains]


def _ticket(mail: _Mail) -> str | None:
    for text in (mail.first("subject"), _own_words(mail)):
        for match in _TICKET.finditer(text):
            value = next(group for group in match.groups() if group is not None).rstrip("/-_")
            if any(char.isdigit() for char in value) and not _TOKEN.search(value):
                return value
    return None


def _own_words(mail: _Mail) -> str:
    """The reply's own text: quoted lines, and everything from the quoted original on, dropped."""
    text = mail.head
    if cut := _REPLY_CUT.search(text):
        text = text[: cut.start()]
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith(">"))


def _removal_claimed(mail: _Mail) -> bool:
    """True only for a sentence that says removed with no negation, condition, future or question."""
    subject = _TOKEN.sub(" ", mail.first("subject"))
    return any(
        _REMOVED.search(sentence) and not _DOUBT.search(sentence)
        for sentence in _SENTENCE.split(f"{subject}\n{_own_words(mail)}")
    )


def _bounce_status(mail: _Mail) -> str | None:
    failed_first = sorted(mail.dsn, key=lambda block: block.get("action", "").strip().lower() != "failed")
    for block in failed_first:
        if match := _STATUS.search(block.get("status", "")):
            return match.group(0)
    text = f"{mail.head}\n{mail.returned[:_SCAN]}"
    for pattern in _TEXT_STATUS:
        if match := pattern.search(text):
            return match.group(1)
    return None
