"""The store: notifier's durable state, on SQLite (embedded default) or PostgreSQL (scale-out).

``store = await create_store(url)`` opens the database and brings its schema up to date;
:func:`acquire_run_lock` keeps a second
``notifier run`` off a SQLite file.
"""

from notifier.store.runlock import RunLock, acquire_run_lock
from notifier.store.sql import SqlStore, create_store, open_existing_store

__all__ = ["RunLock", "SqlStore", "acquire_run_lock", "create_store", "open_existing_store"]
