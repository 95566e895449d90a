"""Process lifetime: a child process dies with its parent, even a parent killed with SIGKILL (Linux)."""

from __future__ import annotations

import ctypes
import signal
import sys

PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
"""Resolved once, in the parent: ``die_with_parent`` also runs between fork and exec (``preexec_fn``), where
loading a library could deadlock on a lock another thread held at the fork."""


def die_with_parent() -> None:
    """Have the kernel SIGKILL the calling process when the thread that started it exits; kept across ``exec``.
    No-op outside Linux. Call it in the child: first thing in ``main``, or as ``Popen(preexec_fn=...)``."""
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
