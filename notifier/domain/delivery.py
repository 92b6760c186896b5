"""DeliveryDecision as decisions: every transition of a notice on its way to a platform, decided here.

The dispatcher, the acknowledgement service and the operators' commands report what happened — a
send went through, failed for now or for good, a bounce came back, staff filed a portal notice or ask
for a failed one to go again — and these pure functions say what follows, as a :class:`DeliveryDecision`
value; the store persists it with a compare-and-set on the state it was decided from. What a
platform *answers* (receipts, acknowledgements) is planned in :mod:`notifier.domain.acks`.

The rules that keep the figures honest:

* Nothing moves backward but a bounce of **the notice itself**: a bounce of a reminder, an
  escalation or an alert says the contact address is dead, not that the notice was not delivered,
  and changes nothing in the notice. A bounce that comes back from a channel the notice is no longer
  on (an old email after the fallback to the API, or the reverse) changes nothing either.
* A soft bounce (4.x.x) retries the notice within its delivery window, which runs from its
  creation (``deliver_by``) and is never reset; a hard bounce (5.x.x) goes to the fallback channel,
  else fails the notice. So a recipient that rejects every message ends ``failed`` after one send,
  and one that keeps deferring stops at ``deliver_within`` from creation.
* The fallback channel gets a window of its own, once; then the notice fails, with its requests.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from notifier.domain.models import NoticeState
from notifier.domain.notices import AttemptOutcome, MessageKind, Notice
from notifier.domain.retry import next_attempt


class Step(enum.StrEnum):
    """What a decision does to the notice."""

    DELIVERED = "delivered"  # the platform has it: the SLA clocks start
    AWAITING_SUBMISSION = "awaiting_submission"  # a portal notice rendered; staff file it
    RETRY = "retry"  # try again on the same channel at ``next_attempt_at``
    FALLBACK = "fallback"  # try again at once on the fallback channel, with a window of its own
    FAIL = "fail"  # retries and fallback spent: failed, with its requests; operations are alerted
    REQUEUE = "requeue"  # staff sent a failed notice again: queued on its primary channel
    IGNORE = "ignore"  # nothing changes (logged with ``reason``)
    CONTACT_BOUNCED = "contact_bounced"  # a reminder, escalation or alert bounced: nothing changes,
    # but the platform's (or the authority's) address is dead and operations are told


@dataclass(frozen=True, slots=True, kw_only=True)
class Channels:
    """How a platform is reached: its primary channel and, optionally, a fallback."""

    primary: str
    fallback: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryDecision:
    """A decided transition: the notice's state after it, and where and when it goes next."""

    step: Step
    before: NoticeState  # the state it was decided from: the store's compare-and-set
    state: NoticeState  # the state after it (``before`` when nothing changes)
    channel: str
    deliver_by: datetime
    fallback_used: bool
    next_attempt_at: datetime | None = None
    reason: str = ""

    @property
    def changes_anything(self) -> bool:
        return self.step not in (Step.IGNORE, Step.CONTACT_BOUNCED)


@dataclass(frozen=True, slots=True, kw_only=True)
class Bounce:
    """A bounce, as far as the rules care: which message, over which channel, soft or hard."""

    # The tag of the message that bounced: "notice", "reminder", "escalation", "escalation-2", "alert";
    # None when the mail did not say (the notice's own VERP address carries no tag).
    message: str | None
    channel: str  # the channel the bounced message went over ("email")
    status: str | None  # RFC 3464 status, e.g. "5.1.1"; None when the report gave none

    @property
    def soft(self) -> bool:
        """A 4.x.x status is a temporary failure; a bounce without a status counts as one too,
        so an unreadable report retries within the window rather than failing the notice."""
        return self.status is None or self.status.startswith("4.")


def _keep(notice: Notice, reason: str, step: Step = Step.IGNORE) -> DeliveryDecision:
    return DeliveryDecision(
        step=step,
        before=notice.state,
        state=notice.state,
        channel=notice.channel,
        deliver_by=notice.deliver_by,
        fallback_used=notice.fallback_used,
        next_attempt_at=notice.next_attempt_at,
        reason=reason,
    )


def failures_on_channel(notice: Notice) -> int:
    """Attempts made so far on the notice's current channel: what the backoff doubles on."""
    return sum(1 for attempt in notice.attempts if attempt.channel == notice.channel)


def _not_delivered(
    notice: Notice,
    *,
    before: NoticeState,
    transient: bool,
    at: datetime,
    channels: Channels,
    deliver_within: timedelta,
    rng: random.Random,
    retry_after: timedelta | None = None,
    reason: str,
) -> DeliveryDecision:
    """A retry within the window, else the fallback once, else failure — decided in this order."""
    if transient:
        retry = next_attempt(
            failures=1 + failures_on_channel(notice),
            now=at,
            deadline=notice.deliver_by,
            rng=rng,
            retry_after=retry_after,
        )
        if retry.retry_at is not None:
            return DeliveryDecision(
                step=Step.RETRY,
                before=before,
                state=NoticeState.RETRYING,
                channel=notice.channel,
                deliver_by=notice.deliver_by,
                fallback_used=notice.fallback_used,
                next_attempt_at=retry.retry_at,
                reason=reason,
            )
    fallback = channels.fallback
    if fallback is not None and not notice.fallback_used and notice.channel != fallback:
        return DeliveryDecision(
            step=Step.FALLBACK,
            before=before,
            state=NoticeState.RETRYING,
            channel=fallback,
            deliver_by=at + deliver_within,
            fallback_used=True,
            next_attempt_at=at,
            reason=reason,
        )
    return DeliveryDecision(
        step=Step.FAIL,
        before=before,
        state=NoticeState.FAILED,
        channel=notice.channel,
        deliver_by=notice.deliver_by,
        fallback_used=notice.fallback_used,
        reason=reason,
    )


def after_send(
    notice: Notice,
    *,
    outcome: AttemptOutcome,
    at: datetime,
    channels: Channels,
    deliver_within: timedelta,
    rng: random.Random,
    awaiting_submission: bool = False,
    retry_after: timedelta | None = None,
    reason: str = "",
) -> DeliveryDecision:
    """What follows a send of a claimed (``sending``) notice."""
    if notice.state is not NoticeState.SENDING:
        return _keep(notice, f"the notice is {notice.state.value}, not being sent")
    if outcome is AttemptOutcome.DELIVERED:
        state = NoticeState.AWAITING_SUBMISSION if awaiting_submission else NoticeState.DELIVERED
        return DeliveryDecision(
            step=Step.AWAITING_SUBMISSION if awaiting_submission else Step.DELIVERED,
            before=notice.state,
            state=state,
            channel=notice.channel,
            deliver_by=notice.deliver_by,
            fallback_used=notice.fallback_used,
            reason=reason,
        )
    return _not_delivered(
        notice,
        before=notice.state,
        transient=outcome is AttemptOutcome.TRANSIENT_ERROR,
        at=at,
        channels=channels,
        deliver_within=deliver_within,
        rng=rng,
        retry_after=retry_after,
        reason=reason,
    )


def after_bounce(
    notice: Notice,
    bounce: Bounce,
    *,
    at: datetime,
    channels: Channels,
    deliver_within: timedelta,
    rng: random.Random,
) -> DeliveryDecision:
    """What a bounce changes: only a bounce of the delivered notice itself, on its current channel."""
    if bounce.message not in (None, MessageKind.NOTICE.value):
        return _keep(notice, f"a bounce of the {bounce.message}, not of the notice", Step.CONTACT_BOUNCED)
    if bounce.channel != notice.channel:
        return _keep(notice, f"the notice went out over {notice.channel} since, not {bounce.channel}")
    if notice.state is not NoticeState.DELIVERED:
        return _keep(notice, f"the notice is {notice.state.value}, not delivered")
    return _not_delivered(
        notice,
        before=notice.state,
        transient=bounce.soft,
        at=at,
        channels=channels,
        deliver_within=deliver_within,
        rng=rng,
        reason=f"bounced ({bounce.status or 'no status'}) after delivery",
    )


def after_submission(notice: Notice) -> DeliveryDecision:
    """Staff filed a portal notice: that is its delivery."""
    if notice.state is not NoticeState.AWAITING_SUBMISSION:
        return _keep(notice, f"the notice is {notice.state.value}, not awaiting submission")
    return DeliveryDecision(
        step=Step.DELIVERED,
        before=notice.state,
        state=NoticeState.DELIVERED,
        channel=notice.channel,
        deliver_by=notice.deliver_by,
        fallback_used=notice.fallback_used,
    )


def after_retry_by_hand(
    notice: Notice, *, at: datetime, channels: Channels, deliver_within: timedelta
) -> DeliveryDecision:
    """Staff send a failed notice again: queued on its primary channel now, with a new window."""
    if notice.state is not NoticeState.FAILED:
        return _keep(notice, f"the notice is {notice.state.value}, only a failed notice can be retried")
    return DeliveryDecision(
        step=Step.REQUEUE,
        before=notice.state,
        state=NoticeState.QUEUED,
        channel=channels.primary,
        deliver_by=at + deliver_within,
        fallback_used=False,
        next_attempt_at=at,
    )
