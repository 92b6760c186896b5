"""What a reply says in its own words: the platform's ticket, whether it claims the removal, and
whether it asks the authority a question about the notice (a request for clarification)."""

from __future__ import annotations

import re
from typing import Final

from notifier.domain.replies.ours import TOKEN
from notifier.domain.replies.reading import Mail

__all__ = ["clarification_asked", "removal_claimed", "ticket_of"]

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
# The platform asks the authority about the notice: to clarify, to say which content, to give more
# information. Each form names who needs it (we / us / you to us), so a template's offer ("if you
# need more information, contact us") or our own request quoted back does not read as a question.
_ASKED: Final = re.compile(
    r"\b(?:could|can|would|will)\s+you\s+(?:please\s+|kindly\s+)?(?:clarify|specify|explain|confirm\s+which"
    r"|tell\s+us|let\s+us\s+know|provide|send|share|identify|point\s+(?:us\s+)?to)\b"
    r"|\b(?:we|i)(?:['’]d|['’]ll|\s+would|\s+will)?\s+(?:need|require|request)\s+(?:some\s+)?"
    r"(?:more|additional|further)\s+(?:information|info|details|context|clarification)\b"
    r"|\b(?:we|i)\s+(?:need|require|request|would\s+like|ask\s+for)\s+(?:a\s+|some\s+|further\s+)?"
    r"clarification\b|\bplease\s+(?:clarify|specify|provide|send\s+us|share|advise\s+which|let\s+us\s+know\s+which)\b"
    r"|\bwhich\s+(?:specific\s+|exact\s+)?(?:content|post|posts|url|urls|link|links|item|items|video|videos"
    r"|image|images|account|accounts|material|message|messages|channel)\b[^.!\n]{0,120}\?"
    r"|\b(?:unable|not\s+able|could\s+not|couldn['’]t|cannot|can['’]t)\s+(?:to\s+)?(?:determine|identify|tell)"
    r"\s+which\b"
    r"|추가[ \t]?(?:정보|자료|설명|내용)[^.!?\n]{0,40}(?:필요|요청|제공|보내|주시|부탁|바랍)"
    r"|명확(?:히|하게)[^.!?\n]{0,40}(?:주시|주십시오|주세요|부탁|바랍|요청|\?)"
    r"|확인이[ \t]?필요(?:합니다|해요|하오니|하여|한[ \t]?사항)"
    r"|(?:보내|알려|제공해|설명해)[ \t]?주시겠(?:습니까|어요)"
    r"|어떤[ \t]?(?:게시물|콘텐츠|컨텐츠|URL|링크|영상|이미지|계정)[^.!?\n]{0,60}(?:\?|알려|주시|말씀)",
    re.I,
)
# The same words in an offer, a condition or a closing formula: not a question about this notice.
_OFFERED: Final = re.compile(
    r"\b(?:if|in\s+case|should\s+(?:we|you)|whether|may|might|do\s+not\s+hesitate|don['’]t\s+hesitate"
    r"|feel\s+free)\b|please\s+(?:provide|quote|include|use|reference)\s+(?:the|this|your|our)\s+"
    r"(?:ticket|reference|case|tracking)\b|경우|만약|하시면|시면|다면|라면|수[ \t]?있습니다|내부|소요",
    re.I,
)


def ticket_of(mail: Mail) -> str | None:
    """A ticket or case number the platform gave, from the subject or the reply's own words."""
    for text in (mail.first("subject"), _own_words(mail)):
        for match in _TICKET.finditer(text):
            value = next(group for group in match.groups() if group is not None).rstrip("/-_")
            if any(char.isdigit() for char in value) and not TOKEN.search(value):
                return value
    return None


def removal_claimed(mail: Mail) -> bool:
    """True only for a sentence that says removed with no negation, condition, future or question."""
    subject = TOKEN.sub(" ", mail.first("subject"))
    return any(
        _REMOVED.search(sentence) and not _DOUBT.search(sentence)
        for sentence in _SENTENCE.split(f"{subject}\n{_own_words(mail)}")
    )


def clarification_asked(mail: Mail) -> bool:
    """True for a sentence of the reply's own words that asks the authority about the notice (to
    clarify, say which content, give more information) and is no offer or condition."""
    subject = TOKEN.sub(" ", mail.first("subject"))
    return any(
        _ASKED.search(sentence) and not _OFFERED.search(sentence)
        for sentence in _SENTENCE.split(f"{subject}\n{_own_words(mail)}")
    )


def _own_words(mail: Mail) -> str:
    """The reply's own text: quoted lines, and everything from the quoted original on, dropped."""
    text = mail.head
    if cut := _REPLY_CUT.search(text):
        text = text[: cut.start()]
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith(">"))
