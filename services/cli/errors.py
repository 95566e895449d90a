"""How a command fails: the one place library errors become a printed line and exit status 1."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from latfarm.agents.errors import AgentError
from latfarm.services.core.errors import LatfarmError


@contextmanager
def exit_on_error(prefix: str, context: str = "") -> Iterator[None]:
    """Run the block; a ``LatfarmError`` or ``AgentError`` raised in it prints ``<prefix>: <message>`` on stderr,
    followed by `` (<context>)`` when given (e.g. the database read), and exits with status 1 (no traceback)."""
    try:
        yield
    except (LatfarmError, AgentError) as err:
        raise SystemExit(f"{prefix}: {err}" + (f" ({context})" if context else "")) from err
