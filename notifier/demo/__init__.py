"""``notifier demo``: the real daemon against the sandbox platforms, a month on a simulated clock."""
