"""A fast lane for ``POST /v1/predict``: the common request answered before FastAPI's routing, validation and
dependencies, with the bytes the route would send.

The lane answers only when every check the route makes would pass without the database or a thread: a bearer key
known for a few seconds (``auth.cached_principal``) with the ``predict`` permission that the failed-authentication
throttle lets be verified, ``content-type`` exactly ``application/json``, a body that is an object of ``device``,
optional ``space`` (position-keyed) and ``archs`` (plain positions in its reference set), and the device's table in
memory and current (``PredictionService.current_table``). Anything else goes to the route with the body replayed, which
then answers (or refuses: 401, 403, 404, 422, 429, 503) exactly as without the lane. The request is counted in the
metrics under the route's path (``infra.prometheus.ROUTE``).

On SQLite the table check runs on the event loop on a connection of the lane's own (one indexed statement, no
pool, a busy timeout of ``LOOP_BUSY_MS``: the loop never waits for a connection, nor long for a lock; a database
still busy then sends the request to the route). On PostgreSQL, a network round trip, it runs on
``app.state.predict_pool`` and is shared: requests for one device and space that arrive while a check is in flight
wait for the next one, which starts when that one ends and answers them all. Each request is still answered from
a check that started after it arrived, as the route's own check would be.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

from starlette.datastructures import State
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from latfarm.predictor import nb201
from latfarm.predictor.spaces import UnknownSpace
from latfarm.services.domain.predictions import PredictionService, keyed_by_position
from latfarm.services.infra.prometheus import ROUTE
from latfarm.services.store.db import detached_connection

from .auth import cached_principal
from .deps import request_positions
from .routes.predict import table_response

PATH = "/v1/predict"
FIELDS = frozenset({"device", "space", "archs"})
LOOP_BUSY_MS = 10  # SQLite: the longest the loop waits on a busy database (WAL reads rarely are: a checkpoint)


class PredictLane:
    """ASGI middleware: answers ``POST /v1/predict`` itself when it can (module docstring), else passes it on."""

    def __init__(self, app: ASGIApp, state: State) -> None:
        """In front of ``app``, with the app's shared objects ``state`` (``create_app``'s ``app.state``)."""
        self.app, self.state = app, state
        self._connection: Any = None  # SQLite: the lane's own, used on the event loop only
        # PostgreSQL, per (device, space): the check in flight, and the one that starts when it ends
        self._running: dict[tuple[str, str], asyncio.Task] = {}
        self._next: dict[tuple[str, str], asyncio.Task] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer the request, or pass it (with its body) on."""
        if scope["type"] == "lifespan":
            try:
                await self.app(scope, receive, send)
            finally:
                self._close()
            return
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        messages = [await receive()]
        while messages[-1]["type"] == "http.request" and messages[-1].get("more_body", False):
            messages.append(await receive())
        answer = await self._answer(scope, messages)
        if answer is not None:
            scope[ROUTE] = PATH
            await answer(scope, receive, send)
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _answer(self, scope: Scope, messages: list[Message]):
        """The route's answer when the lane can give it, else None."""
        authorization, content_type = _headers(scope)
        client = scope["client"][0] if scope.get("client") else "unknown"
        if content_type != "application/json" or messages[-1]["type"] != "http.request":
            return None
        principal = cached_principal(self.state, authorization, client)
        if principal is None or not principal.can("predict"):
            return None
        request = _plain_request(b"".join(message.get("body", b"") for message in messages))
        if request is None:
            return None
        device, space, archs = request
        service: PredictionService = self.state.predictions
        try:
            if service.engine.dialect.name == "sqlite":
                found = service.current_table(device, space, self._sqlite_connection())
            else:
                found = await self._shared_check((device, space))
        except Exception:  # noqa: BLE001 - the route meets the same failure and answers it (503)
            self._close()
            return None
        return None if found is None else table_response(*found, space, archs)

    async def _shared_check(self, key: tuple[str, str]):
        """``current_table(*key)`` from a check that starts after this call: the queued one, or a new one."""
        queued = self._next.get(key)
        if queued is None:
            queued = self._next[key] = asyncio.ensure_future(self._check_after(key, self._running.get(key)))
        return await asyncio.shield(queued)

    async def _check_after(self, key: tuple[str, str], previous: asyncio.Task | None):
        if previous is not None:
            await asyncio.wait([previous])
        del self._next[key]  # who comes from now on waits for the next check
        this = self._running[key] = cast("asyncio.Task", asyncio.current_task())
        try:
            service: PredictionService = self.state.predictions
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.state.predict_pool, service.current_table, *key)
        finally:
            if self._running.get(key) is this:
                del self._running[key]

    def _sqlite_connection(self) -> Any:
        if self._connection is None:
            connection = detached_connection(self.state.predictions.engine)
            cursor = connection.cursor()
            cursor.execute(f"PRAGMA busy_timeout={LOOP_BUSY_MS}")  # then the route waits, off the loop
            cursor.close()
            self._connection = connection
        return self._connection

    def _close(self) -> None:
        if self._connection is not None:
            self._connection, connection = None, self._connection
            connection.close()


def _headers(scope: Scope) -> tuple[str, str | None]:
    """The request's first ``authorization`` ('' when none) and ``content-type`` headers, as Starlette reads them."""
    authorization, content_type = None, None
    for name, value in scope["headers"]:
        if name == b"authorization" and authorization is None:
            authorization = value.decode("latin-1")
        elif name == b"content-type" and content_type is None:
            content_type = value.decode("latin-1")
    return authorization or "", content_type


def _plain_request(body: bytes) -> tuple[str, str, list[int]] | None:
    """(device, space, positions) of a body that ``PredictRequest`` takes as it is with every arch a plain position
    in a position-keyed space's reference set; None for anything else."""
    try:
        request = json.loads(body)
    except ValueError:
        return None
    if type(request) is not dict or not FIELDS.issuperset(request) or not {"device", "archs"} <= request.keys():
        return None
    device, space, archs = request["device"], request.get("space", nb201.SPACE), request["archs"]
    if type(device) is not str or not device or type(space) is not str or type(archs) is not list:
        return None
    try:
        if not keyed_by_position(space):
            return None
    except UnknownSpace:
        return None
    positions = request_positions(archs, space)
    return None if positions is None else (device, space, positions)
