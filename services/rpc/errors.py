"""The one mapping of errors onto gRPC statuses: servicer methods raise ``LatfarmError``, ``@translate_errors``
aborts the call with the status its code names and its message as the details; ``capacity.Busy`` with
RESOURCE_EXHAUSTED and its retry hint."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import grpc

from latfarm.services.core.errors import ErrorCode, LatfarmError, Unavailable
from latfarm.services.rpc.capacity import RETRY_AFTER_KEY, Busy
from latfarm.services.store.db import DATABASE_DOWN, UNAVAILABLE_MESSAGE

log = logging.getLogger(__name__)

GRPC_STATUS: dict[ErrorCode, grpc.StatusCode] = {
    "invalid_argument": grpc.StatusCode.INVALID_ARGUMENT,
    "unauthenticated": grpc.StatusCode.UNAUTHENTICATED,
    "permission_denied": grpc.StatusCode.PERMISSION_DENIED,
    "resource_exhausted": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "not_found": grpc.StatusCode.NOT_FOUND,
    "already_exists": grpc.StatusCode.ALREADY_EXISTS,
    "failed_precondition": grpc.StatusCode.FAILED_PRECONDITION,
    "unimplemented": grpc.StatusCode.UNIMPLEMENTED,
    "unavailable": grpc.StatusCode.UNAVAILABLE,
    "internal": grpc.StatusCode.INTERNAL,
}

Method = TypeVar("Method", bound=Callable[..., Any])


def grpc_status(err: LatfarmError) -> grpc.StatusCode:
    """The gRPC status of ``err`` by its code (INTERNAL for a code outside the closed set)."""
    return GRPC_STATUS.get(err.code, grpc.StatusCode.INTERNAL)  # type: ignore[call-overload]


def abort(context: grpc.ServicerContext, err: LatfarmError) -> NoReturn:
    """End the call with ``err``'s status and message."""
    end_call(context, grpc_status(err), err.message)


def end_call(context: grpc.ServicerContext, status: grpc.StatusCode, message: str) -> NoReturn:
    """End the call with ``status`` and ``message``: ``context.abort`` raises, so this never returns."""
    context.abort(status, message)
    raise AssertionError("grpc.ServicerContext.abort returned")  # abort always raises


def refuse_busy(context: grpc.ServicerContext, err: Busy) -> NoReturn:
    """End the call RESOURCE_EXHAUSTED with the retry hint (``retry-after-ms`` trailing metadata)."""
    context.set_trailing_metadata(((RETRY_AFTER_KEY, str(err.retry_after_ms)),))
    end_call(context, grpc.StatusCode.RESOURCE_EXHAUSTED, str(err))


def _database_down(err: Exception) -> Unavailable:
    log.warning("database unavailable: %s", err)
    return Unavailable(UNAVAILABLE_MESSAGE)


TRANSLATED = (LatfarmError, Busy, *DATABASE_DOWN)  # what ``translate_errors`` ends a call with a status for


def _end_with_status(context: grpc.ServicerContext, err: Exception) -> NoReturn:
    """End the call for ``err``, one of ``TRANSLATED``: its own status, RESOURCE_EXHAUSTED with the retry hint, or
    UNAVAILABLE for a database that cannot serve it."""
    if isinstance(err, LatfarmError):
        abort(context, err)
    if isinstance(err, Busy):
        refuse_busy(context, err)
    abort(context, _database_down(err))


def translate_errors(method: Method) -> Method:
    """Wrap a servicer method ``(self, request, context)``, unary or streaming, so a ``LatfarmError`` it raises
    ends the call with its gRPC status, and a database that cannot serve it with UNAVAILABLE (agents retry that)."""
    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def streaming(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
            try:
                yield from method(self, request, context)
            except TRANSLATED as err:
                _end_with_status(context, err)

        return streaming  # type: ignore[return-value]

    @functools.wraps(method)
    def unary(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except TRANSLATED as err:
            _end_with_status(context, err)

    return unary  # type: ignore[return-value]
