"""Acknowledgements arriving from outside: callbacks, the IMAP reader and inbound mail (SPEC §7).
The mail classifier that tells a platform's human answer from bounces, auto-replies and feedback
reports is pure and lives in :mod:`notifier.domain.replies` (:mod:`notifier.acks.classify` re-exports it).
"""
