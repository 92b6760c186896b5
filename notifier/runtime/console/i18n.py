"""The console's English and Korean (SPEC §16).

The catalogue is a Python dict rather than gettext ``.po``/``.mo`` files through Babel: about a
hundred short labels in two languages, no plural forms (Korean has none, and the English labels
avoid them), nothing to compile at build time and nothing more to install, and mypy and the tests
check it like any code (``tests/unit/test_console_i18n.py`` checks that every label the templates
use has its Korean). English is the key; a label missing from the Korean falls back to it.
"""

from __future__ import annotations

from collections.abc import Callable

LANGUAGES = ("en", "ko")

KO: dict[str, str] = {
    "notifier console": "notifier 운영 콘솔",
    "Overview": "개요",
    "Work queue": "작업 대기열",
    "Search": "검색",
    "Report": "보고서",
    "Log out": "로그아웃",
    "Log in": "로그인",
    "User name": "사용자 이름",
    "Password": "비밀번호",
    "Wrong user name or password.": "사용자 이름 또는 비밀번호가 틀렸습니다.",
    "Too many failed attempts; try again later.": "실패한 시도가 너무 많습니다. 나중에 다시 시도하십시오.",
    "Platform": "플랫폼",
    "Open requests": "미결 요청",
    "Open notices": "미결 통지",
    "Due soon": "기한 임박",
    "Breached": "기한 위반",
    "Oldest open": "가장 오래된 미결",
    "Delivered today": "오늘 전달",
    "Receipts today": "오늘 접수 확인",
    "Acknowledgements today": "오늘 응답",
    "Deadlines within the next": "다음 기간 내 기한",
    "Updated": "갱신",
    "Breached notices": "기한 위반 통지",
    "Notice": "통지",
    "Notices": "통지",
    "State": "상태",
    "Channel": "채널",
    "Created": "생성",
    "Delivered": "전달",
    "Deadline": "기한",
    "Ticket": "티켓",
    "Requests": "요청",
    "Request": "요청",
    "URLs": "URL",
    "Case reference": "사건 번호",
    "Category": "분류",
    "Deadlines": "기한",
    "Timeline": "경과",
    "Time (UTC)": "시각 (UTC)",
    "Time": "시각",
    "Event": "사건",
    "Outcome": "결과",
    "Code": "코드",
    "Duration": "소요 시간",
    "Detail": "상세",
    "Source": "출처",
    "Note": "메모",
    "Record an acknowledgement": "응답 기록",
    "Record submission": "제출 기록",
    "Status": "상태",
    "At (ISO 8601, empty: now)": "시각 (ISO 8601, 비우면 현재)",
    "Request ids (one per line, empty: all)": "요청 ID (한 줄에 하나, 비우면 전체)",
    "Record": "기록",
    "Retry": "재시도",
    "Retry this failed notice": "실패한 통지 재시도",
    "Awaiting submission": "제출 대기",
    "Failed notices": "실패한 통지",
    "Dead letters": "처리 불가 메시지",
    "Conflicts": "충돌",
    "Files": "파일",
    "Reason": "사유",
    "Nothing here.": "항목 없음.",
    "Search for a request id, notice id, part of a URL, case reference or ticket": (
        "요청 ID, 통지 ID, URL 일부, 사건 번호 또는 티켓으로 검색"
    ),
    "Results": "결과",
    "Kind": "종류",
    "Since (e.g. 30d or 2024-09-01)": "시작 (예: 30d 또는 2024-09-01)",
    "Until (date)": "종료 (날짜)",
    "Show": "보기",
    "Download CSV": "CSV 내려받기",
    "Figures as of": "집계 시각",
    "Figures being computed": "집계 중",
    "recomputed in the background every (minutes)": "백그라운드 재집계 주기 (분)",
    "Download JSON": "JSON 내려받기",
    "Language": "언어",
    "Saved.": "저장되었습니다.",
    "Not found.": "찾을 수 없습니다.",
    "You may read, not change: your role is viewer.": "조회 권한만 있습니다 (역할: viewer).",
    "created": "생성",
    "attempt": "발송 시도",
    "bounce": "반송",
    "receipt": "접수 확인",
    "ack": "응답",
    "retry": "재발송 요청",
    "clarify": "명확화 답변",
    "withdraw": "철회",
    "Entered": "입력",
    "reminder": "독촉",
    "ack_breach": "응답 기한 위반",
    "removal_breach": "삭제 기한 위반",
    "ack_by": "응답 기한",
    "remove_by": "삭제 기한",
    "deliver_by": "전달 기한",
    "queued": "대기",
    "sending": "발송 중",
    "retrying": "재시도 중",
    "awaiting_submission": "제출 대기",
    "delivered": "전달됨",
    "acknowledged": "응답함",
    "resolved": "완료",
    "failed": "실패",
    "pending": "대기",
    "batched": "묶음",
    "removed": "삭제됨",
    "rejected": "거부됨",
    "withdrawn": "철회됨",
    "submitted": "제출함",
    "received": "접수함",
    "Signed in as": "로그인 사용자",
    "Users": "사용자",
    "Role": "역할",
    "Account": "계정",
    "Change role": "역할 변경",
    "Enable or disable": "사용 / 중지",
    "Reset password": "비밀번호 재설정",
    "New password": "새 비밀번호",
    "you": "본인",
    "enabled": "사용 중",
    "disabled": "사용 중지",
    "Enable": "사용",
    "Disable": "사용 중지",
    "Add a user": "사용자 추가",
    "Initial password (at least 10 characters)": "초기 비밀번호 (10자 이상)",
    "Add": "추가",
    "Account history": "계정 변경 기록",
    "By": "처리자",
    "Change": "변경",
    "viewer": "조회자",
    "operator": "운영자",
    "admin": "관리자",
    "account_added": "추가",
    "account_role": "역할 변경",
    "account_disabled": "사용 중지",
    "account_enabled": "사용 재개",
    "account_password": "비밀번호 재설정",
    "Filter": "필터",
    "All platforms": "모든 플랫폼",
}

# The English of the few keys that are names in the code (deadlines, timeline events).
EN: dict[str, str] = {
    "ack_by": "Acknowledgement due",
    "remove_by": "Removal due",
    "deliver_by": "Delivery due",
    "ack": "acknowledgement",
    "retry": "retry requested",
    "clarify": "clarification answered",
    "withdraw": "request withdrawn",
    "ack_breach": "acknowledgement bound breached",
    "removal_breach": "removal bound breached",
    "awaiting_submission": "awaiting submission",
    "account_added": "added",
    "account_role": "role changed",
    "account_disabled": "disabled",
    "account_enabled": "enabled",
    "account_password": "password reset",
}

CATALOGUES: dict[str, dict[str, str]] = {"en": EN, "ko": KO}


def translator(language: str) -> Callable[[str], str]:
    catalogue = CATALOGUES.get(language, {})

    def gettext(text: str) -> str:
        return catalogue.get(text, text)

    return gettext


def negotiate(preferred: str | None, accept_language: str) -> str:
    """The user's own setting, else the best of ``Accept-Language`` (q-values honoured), else English."""
    if preferred in LANGUAGES:
        return preferred
    best, best_q = "en", -1.0
    for part in accept_language.split(","):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        base = tag.strip().lower().split("-")[0]
        if base in LANGUAGES and q > best_q:
            best, best_q = base, q
    return best
