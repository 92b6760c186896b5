"""The email classifier now lives in the pure domain: :mod:`notifier.domain.replies`.

Kept so that existing imports keep working.
"""

from notifier.domain.replies import MailKind, MailVerdict, classify

__all__ = ["MailKind", "MailVerdict", "classify"]
