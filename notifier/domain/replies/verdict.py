"""What the classifier says about one email that came back to us."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["MailKind", "MailVerdict"]


class MailKind(StrEnum):
    BOUNCE = "bounce"  # not delivered, or not yet: see MailVerdict.delayed and bounce_status
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
    # Human replies only, and never with removal_claimed: the platform asks the authority to
    # clarify the notice (SPEC §14), which stops its removal clock.
    clarification_requested: bool = False
    bounce_status: str | None = None  # RFC 3464 Status, e.g. "5.1.1"
    # Which of our messages about notice_ids[0] the mail answers or returns: its message tag,
    # "notice", "reminder", "escalation", "escalation-2" (any "escalation-N"), or "alert" for an
    # operations alert (then notice_ids holds the notice the alert was about, if any). None when
    # nothing in the mail tells.
    message: str | None = None
    # Bounces only: the report says the mail is still being tried (every RFC 3464 recipient block
    # "delayed" and none "failed", or a mail server's delay warning). False for a failure, whatever
    # its status: a "failed" 4.x.x is a soft bounce, a 5.x.x a hard one.
    delayed: bool = False
    reason: str = ""  # why: names the evidence, never quotes the message
    # Human replies: what the receiving server's Authentication-Results said of the reply's DKIM
    # signatures ("mx.example: dkim=pass header.d=platform.example …"), None when it said nothing.
    dkim: str | None = None

    @property
    def counts_as_acknowledgement(self) -> bool:
        return self.kind is MailKind.HUMAN and bool(self.notice_ids)
