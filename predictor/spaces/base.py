"""The search-space interface: what every part of latfarm may ask of a space, whichever it is.

An arch has two forms: its **encoding**, a tuple of ``length`` choice indices (each in ``0..choices-1``), and its
**canonical string**, readable by people; ``parse`` accepts either and returns the encoding, ``to_string`` gives the
canonical string. A space may have a **reference set**, the archs a dataset indexes, by position (NB201: the
15,625 cells by official index); ``sample`` draws archs for spaces too large to enumerate. ``build`` gives the
PyTorch network at one of the space's ``input_variants`` (resolution, classes) with seeded weights.

Torch is imported only by ``build``: encodings and strings need nothing but Python and numpy.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from torch import nn

Encoding = tuple[int, ...]
"""An arch as one choice index per searchable position."""


class ArchError(ValueError):
    """An arch that is not valid in its space; the message names the space, what is wrong and where (position,
    token)."""


class UnknownSpace(ValueError):
    """A search-space name that is not registered; the message lists the registered ones."""


@dataclass(frozen=True)
class InputVariant:
    """The input a space's networks are built for: ``resolution`` (height = width, pixels) and ``classes``
    (output logits), named after the dataset that defines them (``cifar100``, ``imagenet``)."""

    name: str
    resolution: int
    classes: int


class SearchSpace(ABC):
    """One search space. Subclasses set ``name``, ``length`` (searchable positions), ``choices`` (options per
    position), ``input_variants``, ``default_variant`` and ``string_pattern``, and implement ``parse``,
    ``to_string`` and ``build``."""

    name: str
    length: int
    choices: int
    input_variants: Mapping[str, InputVariant]
    default_variant: str
    graphs: tuple[str, ...] = ("reference",)
    """The graph variants its networks are exported as (``export_network``); the first is the default."""
    string_pattern: str
    """A regular expression matching exactly the canonical strings (the REST schema shows it)."""
    enumerated: bool = False
    """True when the reference set holds every arch of the space (NB201): predictions are then tabulated and keyed
    by position; otherwise archs are keyed by canonical string and positions are a dataset's (FBNet's 5,000)."""

    @abstractmethod
    def parse(self, arch: str | Sequence[int]) -> Encoding:
        """The encoding of an arch given as its string or its index list; ``ArchError`` naming what is wrong."""

    @abstractmethod
    def to_string(self, encoding: Sequence[int]) -> str:
        """The canonical string of an encoding (validated: ``ArchError``)."""

    @abstractmethod
    def build(self, arch: str | Sequence[int], variant: str | None = None, seed: int = 0) -> nn.Module:
        """The network of ``arch`` at input variant ``variant`` (default ``default_variant``; ``ArchError`` when
        unknown), in eval mode with weights seeded by ``seed`` (same arch, variant and seed: same weights)."""

    def export_network(self, arch: str | Sequence[int], variant: InputVariant, graph: str) -> nn.Module:
        """The network measured for ``arch`` at ``variant`` (one of ``input_variants``) as graph variant ``graph``
        (one of ``graphs``): ``build`` at seed 0 unless the space overrides it."""
        if graph not in self.graphs:
            raise ArchError(f"{self.name}: unknown graph variant {graph!r}; known: {list(self.graphs)}")
        return self.build(arch, variant.name)

    def variant_at(self, resolution: int, classes: int) -> InputVariant | None:
        """The input variant with this resolution and classes; ``None`` when the space has none."""
        return next(
            (v for v in self.input_variants.values() if (v.resolution, v.classes) == (resolution, classes)), None
        )

    def reference_set(self) -> Sequence[Encoding] | None:
        """The archs a dataset of this space indexes, by position; ``None`` when the space has none."""
        return None

    def at(self, position: int) -> Encoding:
        """The arch at ``position`` of the reference set (NB201: the official index); ``ArchError`` when the space
        has no reference set or the position is outside it."""
        archs = self.reference_set()
        if archs is None:
            raise ArchError(
                f"{self.name} has no reference set: give an arch string or index list, not position {position}"
            )
        if not 0 <= position < len(archs):
            raise ArchError(f"{self.name}: reference position {position} is outside 0..{len(archs) - 1}")
        return tuple(archs[position])

    def read_reference(self, folder: Path) -> Sequence[Encoding]:
        """The archs a HELP-layout dataset folder of this space indexes, by position (what its ``latency/<device>.pt``
        lists follow); ``FileNotFoundError`` naming the files the layout needs when the folder lacks them,
        ``ValueError`` (``ArchError`` for a bad arch) naming a file that does not hold the layout."""
        raise FileNotFoundError(f"{folder}: {self.name} has no dataset layout with its own arch list")

    def canonical(self, arch: str | Sequence[int]) -> str:
        """The canonical string of an arch given in either form."""
        return self.to_string(self.parse(arch))

    def index_of(self, arch: str | Sequence[int]) -> int | None:
        """The arch's position in the reference set; ``None`` when it is not there or there is none."""
        return self._reference_positions.get(self.parse(arch))

    @cached_property
    def _reference_positions(self) -> dict[Encoding, int]:
        archs = self.reference_set() or ()
        return {arch: position for position, arch in reversed(list(enumerate(archs)))}  # first position wins

    def sample(self, n: int, seed: int) -> list[Encoding]:
        """``n`` archs drawn uniformly (with replacement) from all ``choices ** length``, seeded: the same ``n``
        and ``seed`` give the same archs."""
        if n < 0:
            raise ValueError(f"sample size must be >= 0, got {n}")
        rows = np.random.default_rng(seed).integers(0, self.choices, size=(n, self.length))
        return [tuple(int(v) for v in row) for row in rows]

    def variant(self, name: str | None = None) -> InputVariant:
        """The input variant called ``name`` (default ``default_variant``); ``ArchError`` naming the known ones."""
        key = self.default_variant if name is None else name
        if key not in self.input_variants:
            raise ArchError(f"{self.name}: unknown input variant {key!r}; known: {sorted(self.input_variants)}")
        return self.input_variants[key]

    def check_indices(self, values: Sequence[object]) -> Encoding:
        """An index list checked against ``length`` and ``choices``: ``ArchError`` naming the position and value."""
        if isinstance(values, str | bytes) or not isinstance(values, Sequence | np.ndarray):
            raise ArchError(f"{self.name}: arch must be a string or a list of {self.length} integers, got {values!r}")
        if len(values) != self.length:
            raise ArchError(f"{self.name}: arch has {len(values)} entries, expected {self.length}")
        out = []
        for position, value in enumerate(values):
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise ArchError(f"{self.name}: position {position} holds {value!r}, expected an integer")
            if not 0 <= value < self.choices:
                raise ArchError(f"{self.name}: position {position} holds {value}, outside 0..{self.choices - 1}")
            out.append(int(value))
        return tuple(out)
