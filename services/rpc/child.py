"""A child gRPC server process of ``latfarm serve`` (see ``processes``): ``python -m latfarm.services.rpc.child PORT
PARENT_PID``, its settings in the ``LATFARM_*`` environment. Serves the agent service on ``PORT`` until SIGTERM or
SIGINT, or until the parent process is gone."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

from latfarm.services.core.config import Settings
from latfarm.services.core.lifetime import die_with_parent
from latfarm.services.rpc.server import build_grpc_server, server_credentials
from latfarm.services.runtime import Runtime

GRACE_S = 3.0  # calls in flight get this long to finish at the end (as the main process's)


def main(argv: list[str]) -> None:
    """Serve on port ``argv[1]`` for parent ``argv[2]``."""
    port, parent = int(argv[1]), int(argv[2])
    die_with_parent()  # the parent may be SIGKILLed: it could not stop this process itself
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s %(levelname)s grpc-{os.getpid()} %(name)s: %(message)s"
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    settings = Settings.from_env()
    with Runtime(settings) as runtime:
        server, _ = build_grpc_server(
            settings,
            runtime.sessions,
            runtime.read_sessions,
            runtime.artifacts,
            runtime.notifier,
            credentials=server_credentials(settings),
            port=port,
            guard=runtime.auth_guard,
        )
        server.start()
        while not stop.wait(1.0) and os.getppid() == parent:
            pass
        server.stop(GRACE_S).wait(GRACE_S + 2)


if __name__ == "__main__":
    main(sys.argv)
