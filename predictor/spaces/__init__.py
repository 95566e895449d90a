"""Search spaces behind one interface (``base.SearchSpace``), by name: ``get_space("fbnet")``.

Adding a space: one module with a ``SearchSpace`` subclass, and its instance in ``SPACES`` below.
"""

from __future__ import annotations

import re

from latfarm.predictor.spaces.base import ArchError, Encoding, InputVariant, SearchSpace, UnknownSpace
from latfarm.predictor.spaces.fbnet import FBNetSpace
from latfarm.predictor.spaces.nb201 import NB201Space

SPACES: dict[str, SearchSpace] = {space.name: space for space in (NB201Space(), FBNetSpace())}
"""The registered spaces by name."""


def get_space(name: str) -> SearchSpace:
    """The registered space called ``name``; ``UnknownSpace`` listing the registered ones."""
    if name not in SPACES:
        raise UnknownSpace(f"unknown search space {name!r}; known: {', '.join(sorted(SPACES))}")
    return SPACES[name]


def other_space_hint(arch: object, space: str) -> str:
    """For an arch refused in ``space``: ``"; it is an arch of space OTHER"`` when it is the canonical string of
    another registered space's arch, else ''."""
    if not isinstance(arch, str):
        return ""
    others = [s.name for s in SPACES.values() if s.name != space and re.fullmatch(s.string_pattern, arch)]
    return f"; it is an arch of space {others[0]}" if others else ""


def index_column(space: str) -> str:
    """The column of an arch's reference position in a table of ``space``'s archs (exports, ``measure --out``):
    ``nb201_index``; it names the space of a CSV read back."""
    return f"{space}_index"


__all__ = [
    "SPACES",
    "ArchError",
    "Encoding",
    "InputVariant",
    "SearchSpace",
    "UnknownSpace",
    "get_space",
    "index_column",
    "other_space_hint",
]
