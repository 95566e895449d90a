"""Counts in messages, as a person writes them. Dependency-free: the agent-only install imports it."""

from __future__ import annotations


def counted(count: int, noun: str) -> str:
    """``count`` and ``noun``, plural unless ``count`` is 1: ``1 job``, ``3 jobs``, ``0 jobs``."""
    return f"{count} {noun}" + ("" if count == 1 else "s")
