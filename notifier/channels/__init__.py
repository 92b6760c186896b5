"""The channels a notice travels over, and how a notice is rendered for them.

* :mod:`notifier.channels.email`: SMTP through a pool of reused aiosmtplib connections, one
  threaded email per notice (reminders and escalations reply in the same thread);
* :mod:`notifier.channels.api`: the platform's HTTP API, signed with Standard Webhooks;
* :mod:`notifier.channels.manual`: a portal that staff fill in by hand, fed from an outbox;
* :mod:`notifier.channels.rendering`: the Jinja2 templates of ``notifier/templates/<language>/``
  and the machine-readable attachments (CSV, XARF-style JSON) every channel shares.

Each channel implements :class:`notifier.ports.Channel` and raises
:class:`notifier.failures.DeliveryError`, classified transient or permanent, when a notice did not
reach the platform.
"""
