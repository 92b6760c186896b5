"""Intake: the queues requests and acknowledgements arrive on, and the service that stores them.

Adapters implement :class:`notifier.ports.IntakeQueue`: :mod:`.local` (a queue in the SQLite file of
the embedded default), :mod:`.amqp` (RabbitMQ quorum queues, for scale-out) and :mod:`.memory` (a
fake for unit tests). All three pass ``tests/contract/test_queue_contract.py``.
"""
