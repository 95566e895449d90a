"""Network helpers for tests: a child started on a free port (``on_a_free_port``), a link tests can cut (a TCP relay
on 127.0.0.1)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
PORT_ATTEMPTS = 5


class PortTaken(Exception):
    """A child could not listen on the port it was given (EADDRINUSE): something took it after it was picked."""


def on_a_free_port(start: Callable[[int], T], attempts: int = PORT_ATTEMPTS) -> T:
    """``start(port)`` on a port free when picked (the OS's pick on 127.0.0.1), on another one while it raises
    ``PortTaken``; the last attempt's ``PortTaken`` propagates.

    For a child that cannot pick its port and report it (``latfarm serve`` can: give it port 0 and read the port it
    prints). Between the pick and the child's bind another process may take the port (the OS hands the same
    ephemeral ports to outgoing connections), which no pick prevents; the child failing to bind is the sign.
    ``start`` raises ``PortTaken`` only once sure its child failed to bind: something listening on the port may be
    someone else."""
    for attempt in range(attempts):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        try:
            return start(port)
        except PortTaken:
            if attempt == attempts - 1:
                raise
    raise ValueError(f"attempts must be at least 1, got {attempts}")


class CuttableLink:
    """A TCP relay to a port on 127.0.0.1 (a server's gRPC port, PostgreSQL). ``cut`` makes it a dead link (bytes
    are read and dropped, connections stay open, as when a network goes away); ``mend`` resets the connections of the
    cut and relays again. ``accepted`` counts the connections made through it."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.dead = threading.Event()
        self.lock = threading.Lock()
        self.open: list[socket.socket] = []
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                upstream = None if self.dead.is_set() else socket.create_connection(("127.0.0.1", self.target_port))
                self.open += [client] + ([upstream] if upstream else [])
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            if upstream is not None:
                threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket | None) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if target is not None and not self.dead.is_set():
                    target.sendall(data)
        for sock in (source, target):
            if sock is not None:
                sock.close()

    def cut(self) -> None:
        self.dead.set()

    def mend(self) -> None:
        with self.lock:
            broken, self.open = self.open, []
            self.dead.clear()
        for sock in broken:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.listener.close()
        self.mend()
