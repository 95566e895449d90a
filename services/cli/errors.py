"""How a command fails: the one place library errors become a printed line and exit status 1, and Ctrl-C one line
and exit status 130."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from latfarm.agents.errors import AgentError
from latfarm.services.core.errors import LatfarmError

if TYPE_CHECKING:
    from latfarm.services.core.config import _FromEnvironment

S = TypeVar("S", bound="_FromEnvironment")
T = TypeVar("T")
OUT_OF_BOUNDS = ("greater_than_equal", "greater_than", "less_than_equal", "less_than")  # pydantic's error types
INTERRUPTED = 130  # the exit status of a command stopped by Ctrl-C: 128 + SIGINT, as a shell reports one


def interrupted(line: str) -> typer.Exit:
    """Print ``line`` (what Ctrl-C stopped, and what became of its work) on stderr; returns the exit to raise."""
    typer.echo(line, err=True)
    return typer.Exit(INTERRUPTED)


@contextmanager
def exit_on_error(prefix: str, context: str = "") -> Iterator[None]:
    """Run the block; a ``LatfarmError`` or ``AgentError`` raised in it prints ``<prefix>: <message>`` on stderr,
    followed by `` (<context>)`` when given (e.g. the database read), and exits with status 1 (no traceback)."""
    try:
        yield
    except (LatfarmError, AgentError) as err:
        raise SystemExit(f"{prefix}: {err}" + (f" ({context})" if context else "")) from err


def settings_from_env(cls: type[S], prefix: str, **overrides: Any) -> S:
    """``cls.from_env(**overrides)``; a ``LATFARM_*`` variable it cannot use prints ``<prefix>: LATFARM_X: <why>``
    (the first such variable; a number out of bounds or not a number in the API's words) and exits with status 1."""
    from pydantic import ValidationError

    from latfarm.common.ranges import not_of_kind, out_of_range
    from latfarm.services.core.config import env_name

    try:
        return cls.from_env(**overrides)
    except ValidationError as err:
        first = err.errors()[0]
        name = env_name(str(first["loc"][0])) if first["loc"] else cls.__name__
        if first["type"] in OUT_OF_BOUNDS and first["loc"]:  # the whole range, in the API's words
            raise SystemExit(
                f"{prefix}: {name}: {out_of_range(first['input'], cls.bounds(str(first['loc'][0])))}"
            ) from err
        if (wrong_kind := not_of_kind(first["type"], repr(first["input"]))) is not None:
            raise SystemExit(f"{prefix}: {name}: {wrong_kind}") from err
        raise SystemExit(f"{prefix}: {name}: {first['msg']} (got {first['input']!r})") from err


def locked(command: str, take: Callable[[], T], rule: str = "") -> T:
    """``take()`` (checking or taking a ``common.lock`` lock); a lock another process holds, or one that cannot be
    taken (no permission), exits with one line naming ``command``, and ``rule`` after a held one's holder."""
    from latfarm.common.lock import Held

    try:
        return take()
    except Held as err:
        raise SystemExit(f"{command}: {err}{rule}") from err
    except OSError as err:
        raise SystemExit(f"{command}: cannot lock {err.filename}: {err.strerror or err}") from err
