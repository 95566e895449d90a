"""The agent service on an asyncio gRPC server (``grpc.aio``), its event loop on a thread of its own.

A call's handler (``servicer.AgentServicer``, synchronous: it holds a database session) runs on a thread of a
``pool.CallPool``, handed out by kind (heartbeats first); the loop only receives and answers calls. A long-poll
holds a thread only while it leases: between attempts it awaits a wake-up (``LocalNotifier.wait_async``) on the
loop, so any number of agents may wait for work at once.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, NoReturn

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from latfarm.proto.v1 import agent_pb2, agent_pb2_grpc
from latfarm.services.rpc.capacity import Kind
from latfarm.services.rpc.pool import CallPool
from latfarm.services.rpc.servicer import AgentServicer


INLINE = os.environ.get("LATFARM_GRPC_AIO") == "2"


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
        return tuple(self._metadata)

    def peer(self) -> str:
        return self._peer

    def time_remaining(self) -> float | None:
        return self.context.time_remaining()

    def is_active(self) -> bool:
        return self._callbacks is not None

    def add_callback(self, callback: Callable[[], None]) -> bool:
        with self._lock:
            if self._callbacks is None:
                return False
            self._callbacks.append(callback)
            return True

    def set_trailing_metadata(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self.trailing = tuple(metadata)

    def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        raise Aborted(code, details)


class AioAgentServicer(agent_pb2_grpc.AgentServiceServicer):
    """``AgentService`` on the loop: each call's handler runs on ``pool``, a long-poll waits on the loop."""

    def __init__(self, servicer: AgentServicer, pool: CallPool) -> None:
        self.servicer, self.pool = servicer, pool

    async def _run(self, kind: Kind, call: CallContext, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on a pool thread of ``kind``; its ``Aborted`` ends the call."""
        try:
            if INLINE:
                return fn(*args)
            return await asyncio.wrap_future(self.pool.submit_as(kind, fn, *args))
        except Aborted as err:
            await call.context.abort(err.code, err.details, call.trailing)

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
        while (response := await self._run(Kind.LEASE, call, servicer._lease_attempt, None, call, poll)) is None:
            left = poll.deadline - time.monotonic()
            await servicer.notifier.wait_async(poll.caller.device_id, left, after=poll.seen)
            poll.waited = True
        return response

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
        the loop and the pool; the event is set when done."""
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
