"""NAS-Bench-201 behind the search-space interface: delegates to ``predictor/nb201.py`` (grammar, official
indices) and ``predictor/network.py`` (the network), which stay the one place for those rules.

Encoding: the 6-op vector (LatBench's op ids, edge order of ``nb201.EDGES``); string: NB201's
``|op~0|+|op~0|op~1|+|...|``; reference set: the 15,625 cells by official NAS-Bench-201 index. Input variants are
NB201's three datasets; the network is resolution-agnostic, so a variant sets its classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

from latfarm.predictor import nb201
from latfarm.predictor.spaces.base import ArchError, Encoding, InputVariant, SearchSpace

if TYPE_CHECKING:
    from torch import nn


class NB201Space(SearchSpace):
    """NAS-Bench-201 cells (5 ops on 6 edges, 15,625 archs)."""

    name = nb201.SPACE
    length = len(nb201.EDGES)
    choices = len(nb201.OPS)
    input_variants = {
        v.name: v
        for v in (
            InputVariant("cifar10", 32, 10),
            InputVariant("cifar100", 32, 100),
            InputVariant("imagenet16-120", 16, 120),
        )
    }
    default_variant = "cifar10"
    graphs = nb201.GRAPHS
    enumerated = True
    string_pattern = (
        "^"
        + r"\+".join(r"\|" + r"\|".join(f"(?:{'|'.join(nb201.OPS)})~{j}" for j in range(n)) + r"\|" for n in (1, 2, 3))
        + "$"
    )

    def parse(self, arch: str | Sequence[int]) -> Encoding:
        """The 6-op vector of an NB201 arch string or op vector; ``ArchError`` naming the offending part."""
        try:
            return nb201.parse(arch) if isinstance(arch, str) else nb201.validate_ops(arch)
        except nb201.ArchError as exc:
            raise ArchError(f"{self.name}: {exc}") from exc

    def to_string(self, encoding: Sequence[int]) -> str:
        """NB201's arch string of a 6-op vector."""
        return nb201.to_string(self.parse(encoding))

    def export_network(self, arch: str | Sequence[int], variant: InputVariant, graph: str) -> nn.Module:
        """NB201's ``TinyNetwork`` as ``graph`` (``reference`` | ``pruned``) with the variant's classes, seed 0."""
        from latfarm.predictor.network import build

        return build(self.parse(arch), classes=variant.classes, graph=graph)

    def reference_set(self) -> Sequence[Encoding]:
        """The 15,625 op vectors by official NAS-Bench-201 index."""
        return _official_archs()

    def index_of(self, arch: str | Sequence[int]) -> int:
        """The official NAS-Bench-201 index (every cell has one)."""
        return nb201.official_index(self.parse(arch))

    def build(self, arch: str | Sequence[int], variant: str | None = None, seed: int = 0) -> nn.Module:
        """NB201's ``TinyNetwork`` (reference graph) with the variant's classes, seeded weights, eval mode."""
        from latfarm.predictor.network import build

        return build(self.parse(arch), classes=self.variant(variant).classes, seed=seed)


@lru_cache(maxsize=1)
def _official_archs() -> tuple[Encoding, ...]:
    return tuple(tuple(int(o) for o in row) for row in nb201.official_ops_table())
