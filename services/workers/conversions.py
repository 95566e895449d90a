"""Slow-format conversions in child processes, several at once: a litert-torch conversion holds the GIL for tens of
seconds, and one that crashes (a segfault, the kernel's OOM killer) takes down only its own process.

Each of the ``size`` slots is one spawned child process that runs one call at a time and stays up for the next (a
child imports torch and litert-torch once); a call whose process dies raises ``ConversionCrashed``, and the slot's
next call starts a new process. The function and its arguments are pickled: a module-level function, or a bound
method of a picklable object (``ArtifactStore`` pickles as its root folder).
"""

from __future__ import annotations

import multiprocessing
import queue
import signal
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar

from latfarm.services.core.lifetime import die_with_parent

T = TypeVar("T")
_SPAWN = multiprocessing.get_context("spawn")  # no fork of a process with threads and torch state


class ConversionCrashed(RuntimeError):
    """The child process running a conversion died before answering (its exit code says how)."""


class ConversionStopped(RuntimeError):
    """The pool was closed while the conversion waited or ran."""


def _serve(conn: Connection) -> None:
    """A child's loop: run each ``(fn, args)`` received, answer ``(True, value)`` or ``(False, exception)``. It dies
    with the thread that started it, and leaves Ctrl-C to the server (which ends it)."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            fn, args = conn.recv()
        except EOFError:  # the parent closed the pipe
            return
        try:
            answer: tuple[bool, Any] = (True, fn(*args))
        except Exception as err:  # noqa: BLE001 - the parent raises it for this call
            answer = (False, err)
        try:
            conn.send(answer)
        except OSError:  # the parent is gone
            return
        except Exception as err:  # noqa: BLE001 - an answer that does not pickle
            conn.send((False, RuntimeError(f"{type(err).__name__}: {err}")))


class _Slot:
    """One child process and the pipe to it, started on first use and again after a crash. Only the thread that
    holds the slot (``ConversionPool.run``) touches its pipe; ``kill`` may come from any thread."""

    def __init__(self) -> None:
        self.process: BaseProcess | None = None
        self.conn: Connection | None = None

    def call(self, fn: Callable[..., T], args: tuple, closed: threading.Event) -> T:
        """``fn(*args)`` in the child, started first if need be; ``ConversionCrashed`` when it died or was killed,
        or when ``closed`` was set while it started (a ``kill`` then may have come before the process existed)."""
        if self.process is None or not self.process.is_alive():
            self._start()
            if closed.is_set():
                self.drop()
                raise ConversionCrashed("the pool closed while the conversion process started")
        assert self.conn is not None and self.process is not None
        try:
            self.conn.send((fn, args))
            ok, value = self.conn.recv()
        except (EOFError, OSError):  # died mid-call, or was killed
            self.process.join(timeout=5)
            code = self.process.exitcode
            self.drop()
            raise ConversionCrashed(f"the conversion process died (exit code {code})") from None
        if not ok:
            raise value
        return value

    def _start(self) -> None:
        self.drop()
        parent, child = _SPAWN.Pipe()
        self.process = _SPAWN.Process(target=_serve, args=(child,), name="latfarm-conversion", daemon=True)
        self.process.start()
        child.close()
        self.conn = parent

    def kill(self) -> None:
        """End the child process at once (a call in progress sees its pipe end)."""
        process = self.process
        if process is not None and process.is_alive():
            process.terminate()

    def drop(self) -> None:
        """End the child process and close the pipe (the holder's part)."""
        if self.process is not None:
            self.kill()
            self.process.join(timeout=5)
            self.process = None
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class ConversionPool:
    """``size`` child processes (at least 1) that run calls, one each at a time; ``run`` blocks its thread until
    a slot is free and its call has answered."""

    def __init__(self, size: int) -> None:
        """Start no process yet: each slot starts its own on its first call."""
        self.size = max(1, size)
        self._free: queue.SimpleQueue[_Slot] = queue.SimpleQueue()
        self._slots = [_Slot() for _ in range(self.size)]
        for slot in self._slots:
            self._free.put(slot)
        self._closed = threading.Event()

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a child process: its value, or the exception it raised; ``ConversionCrashed`` when the
        process died, ``ConversionStopped`` when the pool was closed."""
        while True:
            if self._closed.is_set():
                raise ConversionStopped("the export worker is stopping")
            try:
                slot = self._free.get(timeout=0.5)
                break
            except queue.Empty:
                continue
        try:
            if not self._closed.is_set():
                try:
                    return slot.call(fn, args, self._closed)
                except ConversionCrashed:
                    if not self._closed.is_set():
                        raise
            slot.drop()
            raise ConversionStopped("the export worker is stopping")
        finally:
            self._free.put(slot)

    def close(self) -> None:
        """End every child process: calls in progress raise ``ConversionStopped`` (their threads close their
        slots), later ones too."""
        self._closed.set()
        for slot in self._slots:
            slot.kill()
        idle = []
        while True:  # the free slots are this thread's to close
            try:
                idle.append(self._free.get_nowait())
            except queue.Empty:
                break
        for slot in idle:
            slot.drop()
            self._free.put(slot)


__all__ = ["ConversionCrashed", "ConversionPool", "ConversionStopped"]
