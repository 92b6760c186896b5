"""Chaos runs: two daemons on RabbitMQ and PostgreSQL under kill -9, restarts and outages, then a
verifier that proves from the sandbox and the store that nothing was lost (SPEC §12).

``python -m tests.chaos`` (``make chaos``) runs the long version; ``test_chaos.py`` a short one.
"""
