"""The one error hierarchy: every error latfarm reports to a client is a ``LatfarmError`` with a stable ``code``.

Codes are a closed set named after gRPC's canonical status codes; ``services/api/errors.py`` maps them onto HTTP
statuses and ``services/rpc/errors.py`` onto gRPC statuses, and only ``services/cli/`` turns them into an exit.
Dependency-free: the public client and the CLI import it.
"""

from __future__ import annotations

from typing import Literal, get_args

ErrorCode = Literal[
    "invalid_argument",  # the request itself is wrong
    "unauthenticated",  # no credential, or one the server does not know
    "permission_denied",  # the credential may not do this
    "resource_exhausted",  # the request is larger than a limit allows
    "not_found",  # it names something that does not exist
    "already_exists",  # it would create or start what exists or runs already
    "failed_precondition",  # the system is not in a state that allows it yet
    "unimplemented",  # this installation cannot do it (an optional extra is missing)
    "unavailable",  # the server could not be reached or is overloaded; retrying may help
    "internal",  # the server is inconsistent; an operator should look
]
CODES: tuple[ErrorCode, ...] = get_args(ErrorCode)


class LatfarmError(Exception):
    """An error a client may see: its ``code``, a ``message`` safe to show, and the request ``field`` it concerns.

    ``status`` is the HTTP status it arrived with when the public client raised it (0: no answer), else None.
    """

    code: str = "internal"

    def __init__(
        self, message: str, *, field: str | None = None, code: str | None = None, status: int | None = None
    ) -> None:
        """Carry ``message``; ``code`` overrides the class's code (the client passes the server's)."""
        super().__init__(f"{status}: {message}" if status else message)
        self.message = message
        self.field = field
        self.status = status
        if code is not None:
            self.code = code


class InvalidArgument(LatfarmError, ValueError):
    """The request is malformed or names an impossible value (a ``ValueError`` too)."""

    code = "invalid_argument"


class Unauthenticated(LatfarmError):
    """No credential was sent, or the server does not know it (unknown, expired or revoked)."""

    code = "unauthenticated"


class PermissionDenied(LatfarmError):
    """The credential is known but may not do this; the message names the permission."""

    code = "permission_denied"


class TooLarge(LatfarmError):
    """The request exceeds a size limit; the message states the limit."""

    code = "resource_exhausted"


class Throttled(LatfarmError):
    """The client failed authentication too often; ``retry_after_s`` says when it may try again."""

    code = "resource_exhausted"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        """Carry ``message`` and the seconds to wait."""
        super().__init__(message)
        self.retry_after_s = retry_after_s


class NotFound(LatfarmError):
    """The request names something that does not exist."""

    code = "not_found"


class Conflict(LatfarmError):
    """The request would create or start something that exists or runs already."""

    code = "already_exists"


class FailedPrecondition(LatfarmError):
    """The request is sound but the system's state does not allow it yet; the message says what is missing."""

    code = "failed_precondition"


class Unsupported(LatfarmError):
    """This installation cannot do it; the message says what to install."""

    code = "unimplemented"


class Unavailable(LatfarmError):
    """The server could not be reached or is overloaded; retrying later may succeed."""

    code = "unavailable"


class Internal(LatfarmError):
    """The server's state is inconsistent; not the caller's fault."""

    code = "internal"


__all__ = [
    "CODES",
    "Conflict",
    "ErrorCode",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "LatfarmError",
    "NotFound",
    "PermissionDenied",
    "Throttled",
    "TooLarge",
    "Unauthenticated",
    "Unavailable",
    "Unsupported",
]
