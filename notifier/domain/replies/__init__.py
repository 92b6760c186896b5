"""Replies, receipts and bounces read for what they are: the email classifier (SPEC §7), pure.

:func:`classify` turns the bytes of one received email into a :class:`MailVerdict`: its
:class:`MailKind`, the notices it matches, and which of our messages it answers or returns. The
formats of our own ids, which the email channel writes and the classifier reads back, are in
:mod:`notifier.domain.replies.ours`.
"""

from notifier.domain.replies.classifier import classify
from notifier.domain.replies.ours import ALERT, alert_token, envelope_token
from notifier.domain.replies.verdict import MailKind, MailVerdict

__all__ = ["ALERT", "MailKind", "MailVerdict", "alert_token", "classify", "envelope_token"]
