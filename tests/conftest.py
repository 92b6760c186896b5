"""Shared fixtures: the real services on this machine, each test run in its own names.

An integration test that needs a service skips when the service is absent on a developer's
machine, and fails under ``CI=true``: CI must never pass by skipping.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import structlog
import trustme
from hypothesis import HealthCheck, settings

from tests.integration.dovecot import Dovecot, find_dovecot

PG_ADMIN_DSN = os.environ.get("NOTIFIER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("NOTIFIER_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
# Property tests run on shared machines whose speed varies: how long generating an example takes says
# nothing about the code under test, so the timing health check is off (every property test also
# sets ``deadline=None``).
settings.register_profile("notifier", suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("notifier")

REPO = Path(__file__).resolve().parent.parent
MAIL_CORPUS = REPO / "tests" / "mail-corpus"  # real mail, vendored: see its README.md


@pytest.fixture(scope="session")
def mail_corpus() -> Path:
    """Real mail (bounces, auto-replies, feedback reports, ordinary mail) kept in the repository."""
    assert MAIL_CORPUS.is_dir(), f"the mail corpus is missing at {MAIL_CORPUS}"
    return MAIL_CORPUS


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true: integration tests may not skip)")
    pytest.skip(message)


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """A test that runs a command in-process configures logging for it (the CLI logs warnings only);
    the next test starts from the configuration before, so its captured events are all there."""
    saved = structlog.get_config()
    processors = list(saved["processors"])
    yield
    saved["processors"] = processors
    structlog.configure(**saved)


@pytest.fixture(scope="session")
def postgres_server() -> str:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    return PG_ADMIN_DSN


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import asyncpg

    name = f"notifier_test_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(postgres_server)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield postgres_server.rsplit("/", 1)[0] + f"/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def amqp_server() -> str:
    require_service("RabbitMQ", "127.0.0.1", 5672)
    return AMQP_URL


@pytest.fixture
def queue_name() -> str:
    """A queue name of this test's own; AMQP tests delete it (and its .dead twin) afterwards."""
    return f"test.requests.{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def amqp_cleanup(amqp_server: str) -> AsyncIterator[list[str]]:
    """Queue names appended to this list are deleted from the broker after the test."""
    import aio_pika

    names: list[str] = []
    yield names
    connection = await aio_pika.connect(amqp_server)
    try:
        for name in names:
            for queue in (name, f"{name}.dead"):
                channel = await connection.channel()
                # The queue may never have been declared; a failed delete closes only its channel.
                with contextlib.suppress(aio_pika.exceptions.AMQPError):
                    await channel.queue_delete(queue)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """A private Dovecot for the whole session (see ``tests/integration/dovecot.py``).

    Skips when dovecot is not installed on a developer's machine; under ``CI=true`` that is a
    failure (``.ci/run`` installs dovecot-imapd).
    """
    binary = find_dovecot()
    if binary is None:
        message = "dovecot is not installed (apt-get install -y dovecot-imapd)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI=true: integration tests may not skip)")
        pytest.skip(message)
    # IMAPS too, with a certificate for 127.0.0.1 from a CA of the session's own.
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server = Dovecot(
        binary=binary,
        tls_cert_pem=b"".join(blob.bytes() for blob in cert.cert_chain_pems),
        tls_key_pem=cert.private_key_pem.bytes(),
        tls_ca_pem=ca.cert_pem.bytes(),
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under CI=true a skipped test is a failed one: CI must never pass by not running a test."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which runs every test: {report.longrepr}"
