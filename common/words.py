"""Counts and batch lists in messages, as a person writes them. Dependency-free: the agent-only install imports it."""

from __future__ import annotations

from collections.abc import Sequence


def counted(count: int, noun: str) -> str:
    """``count`` and ``noun``, plural unless ``count`` is 1: ``1 job``, ``3 jobs``, ``0 jobs``."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def named_batches(ids: Sequence[str]) -> str:
    """``batch ID`` for one batch, ``batches ID1, ID2`` for several (``ids`` not empty)."""
    return f"batch {ids[0]}" if len(ids) == 1 else f"batches {', '.join(ids)}"
