"""Sandbox platforms on loopback, for the demo and the tests: an SMTP sink and a platform API.

They run in the caller's event loop (no threads), accept what a real platform would, and can be
told to fail in the ways real ones do, so notifier's retries, fallbacks and failures are exercised
against real sockets.
"""
