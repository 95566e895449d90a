"""A network link tests can cut: a TCP relay on 127.0.0.1."""

from __future__ import annotations

import contextlib
import socket
import threading


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
