"""The agent service on an asyncio gRPC server (``grpc.aio``), its event loop on a thread of its own.

A call's handler (``servicer.AgentServicer``, synchronous: it holds a database session) runs on one of the
``LATFARM_GRPC_WORKERS`` threads of a ``pool.CallPool``, handed out by kind (heartbeats first); the loop only
receives and answers calls. A long-poll holds a thread only while it leases: between attempts it awaits a wake-up
(``LocalNotifier.wait_async``) on the loop, so any number of agents may wait for work at once.

Admission: a call waits for a thread at most its kind's ``capacity.Limits.wait_s`` and never past 1 s before its
deadline; a call still queued then, or one finding its kind's queue full, is refused RESOURCE_EXHAUSTED with a retry
hint (``errors.refuse_busy``). A long-poll that waited for work already answers empty instead.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, NoReturn

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from latfarm.proto.v1 import agent_pb2, agent_pb2_grpc
from latfarm.services.rpc.capacity import RETRY_AFTER_KEY, Busy, Kind
from latfarm.services.rpc.pool import CallPool
from latfarm.services.rpc.servicer import AgentServicer

DEADLINE_MARGIN_S = 1.0  # a call queued for a thread is refused this long before its deadline at the latest


class Aborted(Exception):
    """``CallContext.abort``: the call ends with ``code`` and ``details`` (the loop sends them)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code, self.details = code, details


class CallContext:
    """What the servicer uses of ``grpc.ServicerContext``, for a call of the aio server, usable on a pool thread:
    ``abort`` raises ``Aborted``; trailing metadata is kept for the answer; ``is_active`` is False and the
    ``add_callback`` callbacks have run once the call is done (answered, cancelled, or the server stopped)."""

    def __init__(self, context: grpc.aio.ServicerContext) -> None:
        self.context = context
        self.trailing: tuple[tuple[str, str], ...] = ()
        self._metadata = context.invocation_metadata() or ()
        self._peer = context.peer()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] | None = []  # None: done
        context.add_done_callback(self._done)

    def _done(self, _context: object) -> None:
        with self._lock:
            callbacks, self._callbacks = self._callbacks or [], None
        for callback in callbacks:
            callback()

    def invocation_metadata(self) -> tuple:
        """The call's metadata."""
        return tuple(self._metadata)

    def peer(self) -> str:
        """The caller's address."""
        return self._peer

    def time_remaining(self) -> float | None:
        """Seconds to the call's deadline (None: none)."""
        return self.context.time_remaining()

    def is_active(self) -> bool:
        """Whether the call is still on (not answered, cancelled or stopped)."""
        return self._callbacks is not None

    def add_callback(self, callback: Callable[[], None]) -> bool:
        """Run ``callback`` once the call is done; False (not added) when it is done already."""
        with self._lock:
            if self._callbacks is None:
                return False
            self._callbacks.append(callback)
            return True

    def set_trailing_metadata(self, metadata: tuple[tuple[str, str], ...]) -> None:
        """Send ``metadata`` with the answer."""
        self.trailing = tuple(metadata)

    def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        """End the call: raises ``Aborted``."""
        raise Aborted(code, details)


class AioAgentServicer(agent_pb2_grpc.AgentServiceServicer):
    """``AgentService`` on the loop: each call's handler runs on ``pool``, a long-poll waits on the loop."""

    def __init__(self, servicer: AgentServicer, pool: CallPool) -> None:
        self.servicer, self.pool = servicer, pool

    async def _run(self, kind: Kind, call: CallContext, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on a pool thread of ``kind``; its ``Aborted`` ends the call, and so does ``Busy`` (no
        thread within the kind's wait) with RESOURCE_EXHAUSTED and the retry hint."""
        try:
            return await self._on_thread(kind, call, fn, *args)
        except Busy as err:
            await call.context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED, str(err), ((RETRY_AFTER_KEY, str(err.retry_after_ms)),)
            )
        except Aborted as err:
            await call.context.abort(err.code, err.details, call.trailing)

    async def _on_thread(self, kind: Kind, call: CallContext, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on a pool thread; ``Busy`` when none is free within the wait ``_run`` describes.

        Cancelling the call raises ``CancelledError`` here even when ``fn`` finishes in the same loop step (hence
        ``asyncio.wait``: ``asyncio.wait_for`` returns the result then, and the call would go on), and ``fn`` never
        runs if no thread has started it."""
        wait_s = self.pool.limits[kind].wait_s if self.pool.limits else None
        if (remaining := call.time_remaining()) is not None:
            wait_s = min(wait_s if wait_s is not None else remaining, remaining - DEADLINE_MARGIN_S)
        future = self.pool.submit_as(kind, fn, *args)
        done = asyncio.wrap_future(future)
        try:
            await asyncio.wait((done,), timeout=wait_s)
        except asyncio.CancelledError:
            future.cancel()
            raise
        if not done.done() and future.cancel():  # still queued: refused; else it runs now and answers
            raise self.pool.busy(kind)
        return await done

    async def _unary(self, kind: Kind, method: Callable[..., Any], request: Any, context: Any) -> Any:
        call = CallContext(context)
        return await self._run(kind, call, method, request, call)

    async def Register(self, request, context):  # noqa: D102 - as AgentServicer's
        return await self._unary(Kind.WRITE, self.servicer.Register, request, context)

    async def Heartbeat(self, request, context):  # noqa: D102
        return await self._unary(Kind.HEARTBEAT, self.servicer.Heartbeat, request, context)

    async def ReportResults(self, request, context):  # noqa: D102
        return await self._unary(Kind.WRITE, self.servicer.ReportResults, request, context)

    async def ReleaseJobs(self, request, context):  # noqa: D102
        return await self._unary(Kind.WRITE, self.servicer.ReleaseJobs, request, context)

    async def LeaseJobs(self, request: agent_pb2.LeaseRequest, context) -> agent_pb2.LeaseResponse:
        """``AgentServicer.LeaseJobs``, its waits for work on the loop (cancelling the call ends the wait)."""
        call = CallContext(context)
        servicer = self.servicer
        poll = await self._run(Kind.LEASE, call, servicer._lease_poll, request, call)
        while True:
            if not poll.waited:
                response = await self._run(Kind.LEASE, call, servicer._lease_attempt, None, call, poll)
            else:  # a long-poll that waited for work answers empty when refused: the agent asks again
                try:
                    response = await self._on_thread(Kind.LEASE, call, servicer._lease_attempt, None, call, poll)
                except Busy:
                    response = agent_pb2.LeaseResponse(lease_seconds=servicer.settings.lease_seconds)
                except Aborted as err:
                    await call.context.abort(err.code, err.details, call.trailing)
            if response is not None:
                return response
            left = poll.deadline - time.monotonic()
            await servicer.notifier.wait_async(poll.caller.device_id, left, after=poll.seen)
            poll.waited = True

    async def FetchArtifact(self, request, context) -> AsyncIterator[agent_pb2.ArtifactChunk]:  # noqa: D102
        call = CallContext(context)
        chunks: Iterator[agent_pb2.ArtifactChunk] = self.servicer.FetchArtifact(request, call)
        while (chunk := await self._run(Kind.WRITE, call, next, chunks, None)) is not None:
            yield chunk


class AioServer:
    """A ``grpc.aio`` server driven from synchronous code: ``start()``; ``stop(grace)`` returns a
    ``threading.Event`` set once it stopped (as ``grpc.Server``'s)."""

    def __init__(
        self,
        servicer: AgentServicer,
        pool: CallPool,
        options: list[tuple[str, Any]],
        address: str,
        credentials: grpc.ServerCredentials | None,
        service_name: str,
    ) -> None:
        """Build the server and bind ``address``; raises ``OSError`` when it cannot be bound."""
        self.pool = pool
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="grpc-aio", daemon=True)
        self._started = threading.Event()
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()
        self._stopping = False
        self.server, self.port = self.loop.run_until_complete(
            self._build(AioAgentServicer(servicer, pool), options, address, credentials, service_name)
        )

    @staticmethod
    async def _build(
        servicer: AioAgentServicer,
        options: list[tuple[str, Any]],
        address: str,
        credentials: grpc.ServerCredentials | None,
        service_name: str,
    ) -> tuple[grpc.aio.Server, int]:
        server = grpc.aio.server(options=options)
        agent_pb2_grpc.add_AgentServiceServicer_to_server(servicer, server)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        for name in ("", service_name):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
        if not port:
            raise OSError(f"cannot bind the gRPC address {address}")
        return server, port

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.start())
        self._started.set()
        self.loop.run_forever()
        self.loop.close()

    def start(self) -> None:
        """Serve from now on (returns once the server accepts calls)."""
        self._thread.start()
        self._started.wait()

    def stop(self, grace: float | None = None) -> threading.Event:
        """Refuse new calls, let those in flight finish for ``grace`` seconds (None: cancel them now), then stop
        the loop and the pool; the event is set when done. A second call returns the first one's event."""
        with self._stop_lock:
            stopping, self._stopping = self._stopping, True
        if stopping:
            return self._stopped
        if not self._thread.is_alive():
            self._stopped.set()
            return self._stopped

        async def stop() -> None:
            await self.server.stop(grace)
            calls = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in calls:  # long-polls waiting for a wake-up end now
                task.cancel()
            await asyncio.gather(*calls, return_exceptions=True)
            self.pool.shutdown(wait=False, cancel_futures=True)
            self._stopped.set()
            self.loop.stop()

        asyncio.run_coroutine_threadsafe(stop(), self.loop)
        return self._stopped
