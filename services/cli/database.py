"""Which database a command reads, the rule for commands that only read (they never create one), and how a
database that cannot be used ends a command."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from latfarm.services.core.config import Settings
from latfarm.services.core.errors import NotFound


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (``sqlite:///path``); None for other databases and in-memory SQLite."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).resolve()


def server_lock(url: str) -> tuple[Path, str] | None:
    """The lock (``common.lock``) a server of the database ``url`` holds, and how a refusal names what it guards:
    ``<file>.lock`` beside a SQLite file (an embedded database takes one server); None for a database that server
    replicas share (PostgreSQL)."""
    path = sqlite_file(url)
    return None if path is None else (path.with_name(f"{path.name}.lock"), f"the SQLite database {path}")


def describe(url: str) -> str:
    """How a command names its database: the SQLite file's path, else the URL without its password."""
    from sqlalchemy.engine import make_url

    path = sqlite_file(url)
    return str(path) if path else make_url(url).render_as_string(hide_password=True)


def existing_database(settings: Settings) -> str:
    """The settings' database, described, for a command that only reads it.

    Raises ``NotFound`` naming the path (and ``--data-dir`` / ``--db``) when it is a SQLite file that does not
    exist: opening it would create an empty database, and the command would then report "no such device"."""
    url = settings.database_url
    path = sqlite_file(url)
    if path is not None and not path.is_file():
        raise NotFound(
            f"no database at {path}: run it where the server's data folder is, or pass --data-dir (the folder "
            "holding latfarm.db) or --db (a database URL)"
        )
    return describe(url)


@contextmanager
def reachable_database(prefix: str, url: str) -> Iterator[None]:
    """Run the block; a database that is down or refuses the connection, or a URL SQLAlchemy cannot use, exits
    with one line ``<prefix>: cannot use the database <url>: <why> (--db / LATFARM_DB_URL)`` (status 1)."""
    from sqlalchemy.exc import ArgumentError

    from latfarm.services.store.db import DATABASE_DOWN

    try:
        yield
    except (*DATABASE_DOWN, ArgumentError) as err:
        why = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
        try:
            where = describe(url)
        except ArgumentError:  # not a URL at all: not echoed, it may hold a password
            where = "at an unparsable URL"
        raise SystemExit(f"{prefix}: cannot use the database {where}: {why} (--db / LATFARM_DB_URL)") from err
