"""What an email that came back to us is, which notice and which of our messages it is about
(SPEC §7): pure, no I/O.

Only a ``human`` verdict may ever count as a platform's acknowledgement, so every automated kind is
tried first and recognised by its *structure* (:mod:`.kinds`): RFC 3464 and RFC 5965 report parts,
the headers mail servers and auto-responders set, the fixed banners MTAs write, SMTP diagnostics
from a mailer daemon. A message is called human only when nothing automated was found, it is not
one of our own messages come back, *and* it matches one of our notices (:mod:`.matching`). Who sent
a human reply is not judged here: the caller knows the platform.

An explicit ``Auto-Submitted: auto-replied`` is honoured as a receipt unless the message also
carries machine evidence of a failed delivery (a report part, a failure header, an MTA banner, an
SMTP diagnostic, the returned original): a postmaster's free-text "bounce notification" with none
of them is read as the automatic answer it declares itself to be.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from notifier.domain.replies.authres import describe, dkim_results
from notifier.domain.replies.kinds import AUTOMATED, bounce_status, delayed, kind_of
from notifier.domain.replies.matching import match, message_of, sent_by_us
from notifier.domain.replies.reading import Mail, parse
from notifier.domain.replies.verdict import MailKind, MailVerdict
from notifier.domain.replies.wording import clarification_asked, removal_claimed, ticket_of

__all__ = ["classify"]


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
        mail = parse(bytes(raw))
    except Exception as error:  # the email package's failures have no common base class
        return MailVerdict(kind=MailKind.UNRELATED, reason=f"unparseable ({type(error).__name__})")
    if sent_by_us(mail, our_domains):  # a copy or a loop: what we said is no one's answer
        return MailVerdict(kind=MailKind.UNRELATED, reason="one of our own messages")
    kind, reason = kind_of(mail)
    ticket = None if kind in AUTOMATED else ticket_of(mail)
    ids, matched_by = match(
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
        removed = ticket is not None and removal_claimed(mail)
        return MailVerdict(
            kind=kind,
            reason=reason,
            ticket=ticket,
            removal_claimed=removed,
            clarification_requested=ticket is not None and not removed and clarification_asked(mail),
            dkim=_dkim(mail),
        )
    bounce = kind is MailKind.BOUNCE
    removed = kind is MailKind.HUMAN and removal_claimed(mail)
    return MailVerdict(
        kind=kind,
        notice_ids=ids,
        matched_by=matched_by,
        ticket=ticket,
        removal_claimed=removed,
        # A removal said in the same reply wins: the clock it would stop is already stopped.
        clarification_requested=kind is MailKind.HUMAN and not removed and clarification_asked(mail),
        bounce_status=bounce_status(mail) if bounce else None,
        message=message_of(mail, kind, ids, envelope_recipients=envelope_recipients, our_domains=our_domains),
        delayed=bounce and delayed(mail),
        reason=reason,
        dkim=_dkim(mail) if kind is MailKind.HUMAN else None,
    )


def _dkim(mail: Mail) -> str | None:
    """What the receiving server (the topmost ``Authentication-Results``) said of DKIM."""
    return describe(dkim_results(mail.headers.get("authentication-results", ())))
