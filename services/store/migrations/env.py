"""Alembic environment: runs on the connection ``services.store.migrate`` hands over (or ``sqlalchemy.url``)."""

from __future__ import annotations

from alembic import context

from latfarm.services.store.db import make_engine
from latfarm.services.store.models import Base

config = context.config


def run_on(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif (conn := config.attributes.get("connection")) is not None:
    run_on(conn)
else:
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise ValueError("migrations need sqlalchemy.url or a connection in the alembic config")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            run_on(conn)
    finally:
        engine.dispose()
