"""The ids our own messages carry, as the channel writes them and the classifier reads them back.

Every outgoing message is identifiable in whatever comes back about it:

* its Message-ID, ``<{notice_id}.{tag}@{domain}>``, where the tag is ``notice``, ``reminder``,
  ``escalation`` or ``escalation-2`` (:attr:`~notifier.domain.notices.NoticeContent.message_tag`);
  an operations alert's is ``<alert.{key}@{domain}>``;
* its VERP envelope sender, ``smtp.envelope_from`` with ``{notice_id}`` replaced by
  :func:`envelope_token`: the bare notice id for the notice itself (so envelope senders of notices
  stay what they always were), ``{notice_id}.{tag}`` for a reminder or an escalation, and
  ``alert.{key}`` for an operations alert.
"""

from __future__ import annotations

import re
from typing import Final

from notifier.domain.notices import NOTICE_ID_PATTERN, MessageKind

__all__ = ["ALERT", "alert_token", "envelope_token"]

ALERT: Final = "alert"  # the message tag of an operations alert
_NOTICE_TAG: Final = MessageKind.NOTICE.value

_ID: Final = NOTICE_ID_PATTERN.pattern.replace("(", "(?:")
_KINDS: Final = "|".join(kind.value for kind in MessageKind)
_TAG: Final = rf"(?:{_KINDS})(?:-[0-9]{{1,3}})?"
_KEY: Final = r"[A-Za-z0-9._-]{1,240}"

OUR_MSG_ID: Final = re.compile(rf"<(?P<id>{_ID})\.(?P<tag>{_TAG})@(?P<domain>[A-Za-z0-9.-]{{1,253}})>")
ALERT_MSG_ID: Final = re.compile(rf"<{ALERT}\.(?P<key>{_KEY})@(?P<domain>[A-Za-z0-9.-]{{1,253}})>")
VERP: Final = re.compile(rf"\+(?P<id>{_ID})(?:\.(?P<tag>{_TAG}))?@")
ALERT_VERP: Final = re.compile(rf"\+{ALERT}\.(?P<key>{_KEY})@")
# A notice id as a word of its own: the subject token ``[TD-…]``, a ticket that is not one.
TOKEN: Final = re.compile(rf"(?<![A-Za-z0-9_-])(?P<id>{_ID})(?![0-9])")
# A notice id inside an alert key (``notice.failed-TD-….0123abcd``): separators may touch it.
_IN_KEY: Final = re.compile(rf"(?<![A-Za-z0-9])(?P<id>{_ID})(?![0-9])")


def envelope_token(notice_id: str, message_tag: str) -> str:
    """What replaces ``{notice_id}`` in the envelope sender of one message about ``notice_id``."""
    return notice_id if message_tag == _NOTICE_TAG else f"{notice_id}.{message_tag}"


def alert_token(key: str) -> str:
    """What replaces ``{notice_id}`` in the envelope sender of an operations alert whose readable
    key (the part of its Message-ID after ``alert.``) is ``key``."""
    return f"{ALERT}.{key}"


def notice_in_key(key: str) -> str | None:
    """The notice id an alert key names, if it names one."""
    match = _IN_KEY.search(key)
    return match.group("id") if match else None
