"""The agent's errors. The agent installs without the server, so these stand apart from ``LatfarmError``; the
``latfarm agent`` command prints an ``AgentError``'s message and exits."""

from __future__ import annotations


class AgentError(Exception):
    """The agent cannot run as asked (bad option, unreadable file, not registered, rejected); the message says why."""


class Stopped(Exception):
    """The agent was asked to stop while waiting for the server."""


class Unauthenticated(Exception):
    """The server does not know this agent's credential (or enrollment token)."""
