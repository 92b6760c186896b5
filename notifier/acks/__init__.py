"""Acknowledgements arriving from outside: callbacks, the IMAP reader, inbound mail, and the mail
classifier that tells a platform's human answer from bounces, auto-replies and feedback reports
(SPEC §7). :mod:`notifier.acks.classify` is pure: bytes in, a verdict out, no I/O.
"""
