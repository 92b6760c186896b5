"""The protocols between the services and the adapters.

Each port has a real adapter and an in-memory fake; both pass the same contract tests
(``tests/contract/``), so a unit test on the fake says something true about the real thing.

One module per use case: ``intake`` (queues and the store's intake side), ``dispatch`` (channels,
batching and sending), ``acks`` (inbound mail, acknowledgements, receipts, bounces), ``sla``,
``monitoring``, ``console``, ``verification`` and ``evidence``. :class:`Store` is all the store's
sides together. Import from ``notifier.ports``.
"""

from __future__ import annotations

from typing import Protocol

from notifier.ports.acks import AckStore, MailSink
from notifier.ports.console import (
    AckRecord,
    ConsoleStore,
    Cutoffs,
    PlatformFigures,
    Role,
    SearchHit,
    Session,
    User,
    UserEvent,
    UserStore,
)
from notifier.ports.dispatch import Channel, NoticeStore
from notifier.ports.evidence import EvidenceStore, PayloadCheck, StoredStates
from notifier.ports.intake import Delivery, Incoming, IntakeQueue, IntakeStore, StatusCounts
from notifier.ports.monitoring import MonitoringStore, OpenItems
from notifier.ports.sla import SlaClaim, SlaDecision, SlaReschedule, SlaStore
from notifier.ports.verification import (
    Checker,
    Followup,
    Renotice,
    RequestVerification,
    VerificationStore,
    VerifyClaim,
    VerifyUpdate,
)

__all__ = [
    "AckRecord",
    "AckStore",
    "Channel",
    "Checker",
    "ConsoleStore",
    "Cutoffs",
    "Delivery",
    "EvidenceStore",
    "Followup",
    "Incoming",
    "IntakeQueue",
    "IntakeStore",
    "MailSink",
    "MonitoringStore",
    "NoticeStore",
    "OpenItems",
    "PayloadCheck",
    "PlatformFigures",
    "Renotice",
    "RequestVerification",
    "Role",
    "SearchHit",
    "Session",
    "SlaClaim",
    "SlaDecision",
    "SlaReschedule",
    "SlaStore",
    "StatusCounts",
    "Store",
    "StoredStates",
    "User",
    "UserEvent",
    "UserStore",
    "VerificationStore",
    "VerifyClaim",
    "VerifyUpdate",
]


class Store(
    IntakeStore,
    NoticeStore,
    AckStore,
    SlaStore,
    MonitoringStore,
    UserStore,
    ConsoleStore,
    VerificationStore,
    EvidenceStore,
    Protocol,
):
    """Durable state of notifier: everything the SQL store implements, on SQLite and PostgreSQL."""
