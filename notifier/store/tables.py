"""The store's schema as SQLAlchemy Core tables, shared by SQLite and PostgreSQL.

These tables describe the schema the code expects; the migrations under ``migrations/versions``
are what creates it. A change here goes together with a new migration (never an edit of an
applied one).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    literal_column,
)
from sqlalchemy.types import TypeDecorator

# Constraint and index names fixed by convention, so that later migrations can refer to them
# by name on both databases (SQLite batch migrations need names too).
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# The longest body a dead letter keeps whole; longer ones keep this much, with the full size and
# hash beside it. A 10 MB hostile message must not become a 10 MB row.
DEAD_LETTER_BODY_LIMIT = 1024 * 1024

# SQLite only auto-increments an ``INTEGER PRIMARY KEY``; PostgreSQL gets a 64-bit identity.
AutoId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that goes in aware and always comes back aware, in UTC.

    PostgreSQL stores ``TIMESTAMPTZ``; SQLite has no time zone type, so the value is stored as
    naive UTC and UTC is attached again when read. Naive datetimes are refused on the way in:
    their meaning depends on the machine, and every timestamp notifier writes comes from the clock.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime given to the store; pass an aware one (UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


requests = Table(
    "requests",
    metadata,
    Column("request_id", String(128), primary_key=True),
    Column("platform", String(32), nullable=False),
    Column("state", String(32), nullable=False),
    Column("priority", String(16), nullable=False),
    # sha256 of ``body``: what tells a duplicate from a conflict.
    Column("content_hash", String(64), nullable=False),
    # ``TakedownRequest.canonical_json()``: the request as validated, rebuilt with ``from_canonical``.
    Column("body", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("ingested_at", UTCDateTime, nullable=False),
    Column("notice_id", String(64), nullable=True, index=True),
    Column("delivered_at", UTCDateTime, nullable=True),
    Column("acknowledged_at", UTCDateTime, nullable=True),
    Column("resolved_at", UTCDateTime, nullable=True),
    # Where the request stands in its notice (0, 1, …): the order it was batched in, which is the
    # order the notice lists it.
    Column("notice_position", Integer, nullable=True),
    # The deadline profile it is judged by (SPEC §14); NULL: the platform's own bounds.
    Column("deadline", String(64), nullable=True),
    # Why staff withdrew it (``withdrawn``): sent to the platform, never logged.
    Column("withdrawal_reason", Text, nullable=True),
    # Batching reads "the platform's pending requests, urgent first, then oldest" straight off this
    # index; its (platform, state) prefix also serves the counts per platform and state.
    Index(None, "platform", "state", "priority", "ingested_at", "request_id"),
)

# The oldest request awaiting acknowledgement per platform, read on every scrape of /metrics: one
# index probe per platform, however long the history. Partial, so it holds only the requests in
# ``delivered`` and intake, which writes ``pending`` ones, never maintains it. Queries must spell the
# predicate as a literal (``UNACKNOWLEDGED``): a prepared plan that must hold for any bound value
# cannot use an index limited to one.
UNACKNOWLEDGED = requests.c.state == literal_column("'delivered'")
Index(
    None,
    requests.c.platform,
    requests.c.delivered_at,
    postgresql_where=UNACKNOWLEDGED,
    sqlite_where=UNACKNOWLEDGED,
)

# Later versions of a request id with different content: recorded once per distinct content,
# never dispatched.
request_conflicts = Table(
    "request_conflicts",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("request_id", String(128), nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("body", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    UniqueConstraint("request_id", "content_hash"),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("source", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("request_id", String(128), nullable=True),
    # At most DEAD_LETTER_BODY_LIMIT bytes; ``body_size`` and ``body_sha256`` describe the whole
    # body as received (and find a redelivered copy of it).
    Column("body", LargeBinary, nullable=False),
    Column("body_size", BigInteger, nullable=False),
    Column("body_sha256", String(64), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Index(None, "source", "body_sha256"),
    Index(None, "at"),
)

# Time on the store's clock, as float seconds since the Unix epoch: when a notice's lease ends, when
# a rate bucket was last filled. Leases are judged by the database, never by a process (the daemon
# may run on a simulated clock, and two machines must agree on when a lease has run out), and SQLite
# has no timestamp type to do that arithmetic in; a number compares and adds the same on both.
StoreClockSeconds = Double

notices = Table(
    "notices",
    metadata,
    Column("notice_id", String(64), primary_key=True),
    Column("platform", String(32), nullable=False),
    # The per-platform number in the notice id, from ``platform_sequences``.
    Column("sequence", BigInteger, nullable=False),
    Column("request_count", Integer, nullable=False),
    # The channel of the current (or last) attempt, and the one the notice was formed for:
    # ``notifier retry`` starts a failed notice again on its primary channel.
    Column("channel", String(32), nullable=False),
    Column("primary_channel", String(32), nullable=False),
    Column("fallback_used", Boolean, nullable=False, server_default=false()),
    Column("state", String(32), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # Business time (the daemon's clock): durable retries stop at deliver_by.
    Column("deliver_by", UTCDateTime, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=True),
    # The claim of the process sending the notice; set only while ``state = 'sending'``.
    Column("lease_owner", String(128), nullable=True),
    Column("lease_until", StoreClockSeconds, nullable=True),
    Column("message_id", Text, nullable=True),
    Column("ticket", Text, nullable=True),
    Column("delivered_at", UTCDateTime, nullable=True),
    Column("receipt_at", UTCDateTime, nullable=True),
    Column("acknowledged_at", UTCDateTime, nullable=True),
    Column("resolved_at", UTCDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    # When the operations alert about a failed notice went out; NULL while one is owed.
    Column("alerted_at", UTCDateTime, nullable=True),
    # When a portal notice was rendered for staff to file (``awaiting_submission``): the
    # authority's own clock, judged against ``sla.file_within``.
    Column("rendered_at", UTCDateTime, nullable=True),
    # The notice's SLA timer (business time): look at its SLA at or after this instant. Never later
    # than the first decision still owed (earlier only costs a look); NULL when nothing is left to
    # decide. Set by a delivery or a rendering, cleared by a bounce, moved on by the monitor.
    Column("sla_due_at", UTCDateTime, nullable=True),
    # The deadline profile of its requests (a notice holds one); NULL: the platform's own bounds.
    Column("deadline", String(64), nullable=True),
    # Clarification (SPEC §14): asked by the platform (the removal clock stops), answered by the
    # authority (it runs again for the full bound from then).
    Column("clarification_requested_at", UTCDateTime, nullable=True),
    Column("clarified_at", UTCDateTime, nullable=True),
    # The seconds of the clarification pauses answered before the current one (every pause counts).
    Column("earlier_paused_s", Integer, nullable=False, server_default="0"),
    # It holds an urgent request, or its profile is urgent: claimed before any other notice, and
    # sent on capacity only urgent notices may use.
    Column("urgent", Boolean, nullable=False, server_default=false()),
    Index(None, "platform", "state"),
    # Claiming: due queued/retrying notices, and sending ones whose lease has run out.
    Index(None, "state", "next_attempt_at"),
    Index(None, "state", "lease_until"),
    # Open notices by delivery time (the SLA decisions owed are sent oldest delivery first).
    Index(None, "state", "delivered_at"),
    # Replies and receipts that name no notice are matched by a ticket the platform gave earlier.
    Index(None, "ticket"),
)

# The SLA monitor's work in due order: the next timer is one probe of this index, whatever the
# number of open notices. Partial: the notices with nothing left to decide (most of the history)
# are not in it.
SLA_TIMED = notices.c.sla_due_at.is_not(None)
Index(None, notices.c.sla_due_at, postgresql_where=SLA_TIMED, sqlite_where=SLA_TIMED)

# The urgent notices in due order, for the claim that only urgent notices may use: a probe of this
# small index, however many normal notices wait. Delivered and failed notices have no
# ``next_attempt_at`` and fall outside every range read.
URGENT = notices.c.urgent
Index(None, notices.c.next_attempt_at, postgresql_where=URGENT, sqlite_where=URGENT)

# Every attempt to send a notice, in the order made (by id).
notice_attempts = Table(
    "notice_attempts",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("notice_id", String(64), ForeignKey("notices.notice_id"), nullable=False, index=True),
    Column("at", UTCDateTime, nullable=False),
    Column("channel", String(32), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("code", Integer, nullable=True),  # SMTP reply code or HTTP status
    Column("detail", Text, nullable=False),
    Column("duration_ms", Integer, nullable=False),
)

# The last notice sequence number handed out per platform. Incremented by an upsert in the
# transaction that forms the notice, so two processes never hand out the same number.
platform_sequences = Table(
    "platform_sequences",
    metadata,
    Column("platform", String(32), primary_key=True),
    Column("last_value", BigInteger, nullable=False),
)

# One token bucket per platform, shared by every daemon process (``rate_per_minute``).
rate_buckets = Table(
    "rate_buckets",
    metadata,
    Column("platform", String(32), primary_key=True),
    Column("tokens", Double, nullable=False),
    Column("updated_at", StoreClockSeconds, nullable=False),
)

# Every acknowledgement received, whether it changed anything or not: ``outcome`` is ``applied``, or
# why nothing changed (late, repeated, unknown items). No foreign key to ``notices``: an
# acknowledgement naming an unknown notice is worth keeping too.
acks = Table(
    "acks",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("notice_id", String(64), nullable=False, index=True),
    Column("source", Text, nullable=False),
    Column("status", String(32), nullable=False),
    # JSON list of {"request_id", "status"}; empty when the acknowledgement covers every request.
    Column("items", Text, nullable=False),
    Column("ticket", Text, nullable=True),
    Column("platform_at", UTCDateTime, nullable=True),  # the platform's own "at"
    Column("received_at", UTCDateTime, nullable=False),  # when notifier received it: the time that counts
    Column("note", Text, nullable=True),  # an operator's note: stored, never logged
    Column("outcome", Text, nullable=False),
)

# Signed callbacks already taken in: a replayed ``webhook-id`` is answered but not applied again.
seen_webhooks = Table(
    "seen_webhooks",
    metadata,
    Column("platform", String(32), primary_key=True),
    Column("webhook_id", Text, primary_key=True),
    Column("at", UTCDateTime, nullable=False),
)

# IMAP messages already read, by UIDVALIDITY + UID rather than the \Seen flag (SPEC §7).
seen_mail = Table(
    "seen_mail",
    metadata,
    Column("mailbox", Text, primary_key=True),
    Column("uidvalidity", BigInteger, primary_key=True),
    Column("uid", BigInteger, primary_key=True),
    Column("at", UTCDateTime, nullable=False),
)

# SLA decisions (SPEC §7): one row per notice and kind (reminder, ack_breach, removal_breach), inserted
# once before anything is sent; ``sent_at`` is set when the message went out (at least once).
sla_decisions = Table(
    "sla_decisions",
    metadata,
    Column("notice_id", String(64), primary_key=True),
    Column("kind", String(32), primary_key=True),
    Column("decided_at", UTCDateTime, nullable=False),
    Column("due_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime, nullable=True),
    Column("message_ref", Text, nullable=True),
    # The claim of the monitor sending it (store's clock, epoch seconds), like a notice's lease.
    Column("send_owner", String(200), nullable=True),
    Column("send_until", Double, nullable=True),
    # A reminder overtaken before it went out (the acknowledgement came first; the portal notice was
    # filed): never sent, never claimed again. The decision itself stands.
    Column("dropped_at", UTCDateTime, nullable=True),
    Index(None, "sent_at"),
)

# The console's overview: deadlines per platform and state as index ranges, and today's receipts
# and acknowledgements.
Index(None, notices.c.platform, notices.c.state, notices.c.delivered_at)
Index(None, notices.c.receipt_at)
Index(None, acks.c.received_at)

# -- verification of removals (SPEC §13) ---------------------------------------------------------
# Added to ``requests`` by migration 0020: ``verified_removed_at`` (the first round of checks that
# saw every URL gone), ``reappeared_at`` (the last time content was found live again after that),
# ``false_claims`` (claims of removal a check contradicted), ``verify_due_at`` (the request's
# check timer, business time, in a partial index like ``notices.sla_due_at``), ``verify_checked_at``
# (the last round), ``verify_base`` (since when the current phase runs), ``verify_last`` (the
# last definitive round: ``removed`` or ``live``) and ``contradicted_at`` (the last false claim).
for _column in (
    Column("verified_removed_at", UTCDateTime, nullable=True),
    Column("reappeared_at", UTCDateTime, nullable=True),
    Column("false_claims", Integer, nullable=False, server_default="0"),
    Column("verify_due_at", UTCDateTime, nullable=True),
    Column("verify_checked_at", UTCDateTime, nullable=True),
    Column("verify_base", UTCDateTime, nullable=True),
    Column("verify_last", String(16), nullable=True),
    Column("contradicted_at", UTCDateTime, nullable=True),
):
    requests.append_column(_column)

VERIFY_TIMED = requests.c.verify_due_at.is_not(None)
Index(
    "ix_requests_verify_due_at",
    requests.c.verify_due_at,
    postgresql_where=VERIFY_TIMED,
    sqlite_where=VERIFY_TIMED,
)

# One check of one URL: what was observed, never the body (there is no column for it).
url_checks = Table(
    "url_checks",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("request_id", String(128), nullable=False),
    Column("platform", String(32), nullable=False),
    Column("url", Text, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("reason", String(64), nullable=False),
    Column("http_status", Integer, nullable=True),
    Column("final_url", Text, nullable=False),
    Column("content_type", String(200), nullable=False),
    Column("bytes_read", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("rule", Text, nullable=False),
    Index(None, "request_id", "at"),
    Index(None, "platform", "outcome"),
)

# Messages owed about a notice after checks: a follow-up listing the URLs still up after a claim
# of removal (``contradicted``), or a new notice for content back after a verified removal
# (``reappeared``). Numbered per notice (``<notice_id>.followup-N``); decided once, sent at least once.
verify_followups = Table(
    "verify_followups",
    metadata,
    Column("notice_id", String(64), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("request_ids", Text, nullable=False),  # JSON list
    Column("urls", Text, nullable=False),  # JSON list: only the URLs found live
    Column("decided_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime, nullable=True),
    Column("message_ref", Text, nullable=True),
    Index(None, "sent_at"),
)

# A request in a later notice than its own (``requests.notice_id``): a re-notice of content back
# after a verified removal lists it again, with only the URLs found live (JSON list) in ``urls``.
notice_members = Table(
    "notice_members",
    metadata,
    Column("notice_id", String(64), primary_key=True),
    Column("request_id", String(128), primary_key=True, index=True),
    Column("position", Integer, nullable=False),
    Column("urls", Text, nullable=False),
)

# Manual records (migration 0035) live in a module of their own and add to this metadata.
# The console's accounts, sessions, login throttling, account history and search index are in
# notifier.store.console_tables, on this metadata (imported with the store package).
# The evidence ledger's tables live in a module of their own, on this metadata.
from notifier.store import evidence_tables as _evidence_tables  # noqa: E402, F401
from notifier.store import tables_manual as _tables_manual  # noqa: E402, F401
