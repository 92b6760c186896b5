"""Acknowledgements arriving from outside: callbacks, the IMAP reader, inbound mail, and the mail
classifier that tells a platform's human answer from bounces, auto-replies and feedback reports
(SPEC §7). The classifier is pure and lives in :mod:`notifier.domain.replies`;
:mod:`notifier.acks.classify` re-exports it.
"""
