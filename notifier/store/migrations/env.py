"""Alembic environment of the notifier store.

notifier runs its migrations itself (``notifier.store.migrate.upgrade``) on a connection it has
opened, locked and begun a transaction on, passed in ``config.attributes["connection"]``: the
migrations run inside that transaction, so they apply entirely or not at all. For maintenance by
hand, ``alembic -c your.ini upgrade head`` with ``script_location`` pointing at this folder and
``sqlalchemy.url`` set to a synchronous URL makes this file open its own connection.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, pool

from notifier.store.tables import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things in place; batch mode recreates the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection given and no sqlalchemy.url configured")
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("notifier migrations run online only")
run_migrations_online()
