"""Use cases over the ports: intake lives in notifier.intake, the rest here."""
