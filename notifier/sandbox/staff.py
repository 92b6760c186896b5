"""Simulated platform staff: how each sandbox platform answers the notices it receives.

Every notice gets a behaviour drawn from its platform's mix of :class:`Profile` s, with random
delays from a generator seeded by the sandbox seed and the notice id, so a run is reproducible
whatever order concurrent sends arrive in. Staff answer the way real platforms do:

* email platforms: an RFC 3834 auto-reply with a ticket (a receipt), a human reply saying the
  notice was received (an acknowledgement), a later one saying the content was removed, or a
  soft bounce of the first delivery for a full mailbox (RFC 3464, ``Action: failed``, ``Status:
  4.2.2``) to the notice's VERP address (the notice is sent again within its delivery window), or
  nothing at all (the silent platform);
* the API platform: a ticket in the 2xx answer, then signed Standard Webhooks callbacks: received,
  then per item removed or rejected;
* the portal platform: after staff of the authority submit a notice on the :class:`Portal` and get
  its ticket, an email naming that ticket (no thread headers, no notice id) saying it was removed.

The parts live in :mod:`.behaviour` (profiles, the record), :mod:`.mail_staff`, :mod:`.bounces`,
:mod:`.api_staff` and :mod:`.portal`; this module gathers them.

Everything the staff do is kept in :attr:`Record.actions` with its business time, so tests can
compare what notifier recorded with what the platforms actually did.
"""

from notifier.sandbox.api_staff import ApiStaff
from notifier.sandbox.behaviour import HOUR, PROFILES, Action, Behaviour, Inbound, Profile, Record
from notifier.sandbox.mail_staff import MailStaff
from notifier.sandbox.portal import Portal

__all__ = [
    "HOUR",
    "PROFILES",
    "Action",
    "ApiStaff",
    "Behaviour",
    "Inbound",
    "MailStaff",
    "Portal",
    "Profile",
    "Record",
]
