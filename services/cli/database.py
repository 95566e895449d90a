"""Which database a command reads, and the rule for commands that only read: they never create one."""

from __future__ import annotations

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
