"""Alembic environment for the modelbuilder store.

`Store.open()` and `modelbuilder db upgrade` run migrations programmatically and hand over their own
connection (already inside a transaction, and on PostgreSQL holding the migration advisory lock).
A developer can also run Alembic by hand to write the next revision:

    alembic -c src/modelbuilder/core/alembic.ini revision --autogenerate -m "what changed"

which uses `sqlalchemy.url` from that file if set, otherwise the settings' store URL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context
from sqlalchemy.engine import Connection

from modelbuilder.config import get_settings
from modelbuilder.core._rows import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or get_settings().store_url


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    given = config.attributes.get("connection")
    if given is not None:
        _configure(given)
    else:
        engine = sa.create_engine(_url())
        with engine.begin() as connection:
            _configure(connection)
        engine.dispose()
