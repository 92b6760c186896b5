"""notifier: takedown notices to online platforms, measured against each platform's bound."""

__version__ = "0.1.0"
