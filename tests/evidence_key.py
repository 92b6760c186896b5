"""The evidence record's key in tests: a fixed AES-256 key, in the variable the default configuration
names (``evidence.key_env``). Not a secret: it guards nothing but test stores."""

from __future__ import annotations

TEST_EVIDENCE_KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
EVIDENCE_ENV = {"NOTIFIER_EVIDENCE_KEY": TEST_EVIDENCE_KEY}
