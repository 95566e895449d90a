"""The FBNet search space as HW-NAS-Bench defines it (Li et al., ICLR 2021), the space of HELP's FBNet release.

22 searchable layers, each one of 9 blocks (``BLOCKS``, index = HELP's ``op_idx_list`` value): 9^22 archs, so the
space is sampled, not enumerated. Encoding: the 22 block indices. String: the 22 block names joined by ``-``
(``SEPARATOR``; block names hold only letters, digits and ``_``), e.g. ``k3_e1-skip-...-k5_e6``; whitespace around
names is ignored. The network itself (blocks, stem, head) is built by ``fbnet_network.py``.

Reference set: the 5,000 archs of the HELP FBNet release by position (``arch.pt``; HELP, Lee et al., NeurIPS 2021,
MIT licence: ``predictor/data/HELP-LICENSE.txt``), shipped as ``predictor/data/fbnet_help_archs.npy`` ([5000, 22]
uint8, written by ``np.save(path, np.asarray(load_reference(folder), np.uint8))``). It indexes a dataset, not the
space: most archs have no position (``enumerated`` is false).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from latfarm.predictor.help_data import torch_file
from latfarm.predictor.spaces.base import ArchError, Encoding, InputVariant, SearchSpace

if TYPE_CHECKING:
    from torch import nn

BLOCKS: tuple[str, ...] = ("k3_e1", "k3_e1_g2", "k3_e3", "k3_e6", "k5_e1", "k5_e1_g2", "k5_e3", "k5_e6", "skip")
BLOCK_ID: dict[str, int] = {name: i for i, name in enumerate(BLOCKS)}
SEPARATOR = "-"
STAGE_LAYERS: tuple[int, ...] = (1, 4, 4, 4, 4, 4, 1)
STAGE_CHANNELS: tuple[int, ...] = (16, 24, 32, 64, 112, 184, 352)
NUM_LAYERS = sum(STAGE_LAYERS)  # 22


@dataclass(frozen=True)
class Block:
    """A block's shape: ``kernel`` (depthwise KxK), ``expansion`` (hidden = expansion x input channels),
    ``groups`` (of the two 1x1 convs); ``skip`` has none of them."""

    kernel: int = 0
    expansion: int = 0
    groups: int = 1

    @property
    def is_skip(self) -> bool:
        """True for ``skip``: identity, or 1x1 conv + BN + ReLU when the shape changes."""
        return self.kernel == 0


def block(name: str) -> Block:
    """The shape named by ``kK_eE[_gG]`` or ``skip`` (a name of ``BLOCKS``)."""
    if name == "skip":
        return Block()
    fields = {part[0]: int(part[1:]) for part in name.split("_")}
    return Block(kernel=fields["k"], expansion=fields["e"], groups=fields.get("g", 1))


@dataclass(frozen=True)
class MacroStructure:
    """The fixed part of one input variant: stem (3x3 conv to ``STAGE_CHANNELS[0]`` at ``stem_stride``, BN,
    ReLU), the first-layer stride of each stage (``stage_strides``; later layers of a stage have stride 1), the
    1x1 head conv to ``head_channels`` (BN, ReLU), global average pooling and a linear classifier."""

    stem_stride: int
    stage_strides: tuple[int, ...]
    head_channels: int

    def layers(self) -> list[tuple[int, int, int]]:
        """(input channels, output channels, stride) of each of the 22 searchable layers."""
        out, c_in = [], STAGE_CHANNELS[0]
        for count, c_out, stride in zip(STAGE_LAYERS, STAGE_CHANNELS, self.stage_strides, strict=True):
            for i in range(count):
                out.append((c_in, c_out, stride if i == 0 else 1))
                c_in = c_out
        return out


VARIANTS: dict[str, tuple[InputVariant, MacroStructure]] = {
    "cifar100": (InputVariant("cifar100", 32, 100), MacroStructure(1, (1, 1, 2, 2, 1, 2, 1), 1504)),
    "imagenet": (InputVariant("imagenet", 224, 1000), MacroStructure(2, (1, 2, 2, 2, 1, 2, 1), 1984)),
}
"""HW-NAS-Bench's two variants: CIFAR-100 (the one HELP's latencies were measured on) and ImageNet."""


class FBNetSpace(SearchSpace):
    """FBNet (HW-NAS-Bench): 22 layers x 9 blocks; its reference set is HELP's 5,000 archs unless one is given."""

    name = "fbnet"
    length = NUM_LAYERS
    choices = len(BLOCKS)
    input_variants = {name: variant for name, (variant, _) in VARIANTS.items()}
    default_variant = "cifar100"
    string_pattern = f"^(?:{'|'.join(BLOCKS)})(?:{SEPARATOR}(?:{'|'.join(BLOCKS)})){{{NUM_LAYERS - 1}}}$"

    def __init__(self, reference: Sequence[Encoding] | None = None) -> None:
        """The space with the shipped reference set, or ``reference`` (e.g. ``load_reference(folder)``), checked
        arch by arch (``ArchError``)."""
        self._reference = None if reference is None else tuple(self._check_reference(reference))

    def _check_reference(self, archs: Sequence[Sequence[int]]) -> list[Encoding]:
        checked = []
        for position, arch in enumerate(archs):
            try:
                checked.append(self.check_indices(list(arch)))
            except ArchError as exc:
                raise ArchError(f"reference arch {position}: {exc}") from exc
        return checked

    def parse(self, arch: str | Sequence[int]) -> Encoding:
        """The 22 block indices of ``k3_e1-skip-...`` or of a list of 22 indices; ``ArchError`` names the count,
        or the position and the unknown name or out-of-range index."""
        if not isinstance(arch, str):
            return self.check_indices(arch)
        names = [token.strip() for token in arch.split(SEPARATOR)]
        if len(names) != self.length:
            raise ArchError(
                f"{self.name}: {arch!r} has {len(names)} blocks joined by {SEPARATOR!r}, expected {self.length}"
            )
        for position, token in enumerate(names):
            if token not in BLOCK_ID:
                raise ArchError(
                    f"{self.name}: unknown block {token!r} at position {position}; expected one of {', '.join(BLOCKS)}"
                )
        return tuple(BLOCK_ID[token] for token in names)

    def to_string(self, encoding: Sequence[int]) -> str:
        """The 22 block names joined by ``-``."""
        return SEPARATOR.join(BLOCKS[i] for i in self.check_indices(encoding))

    def reference_set(self) -> Sequence[Encoding]:
        """The 5,000 archs of HELP's FBNet release by position (or those given to the constructor)."""
        return shipped_reference() if self._reference is None else self._reference

    def read_reference(self, folder: Path) -> Sequence[Encoding]:
        """The archs of a HELP FBNet folder by position (``load_reference``)."""
        return load_reference(folder)

    def build(self, arch: str | Sequence[int], variant: str | None = None, seed: int = 0) -> nn.Module:
        """The FBNet network (``fbnet_network.FBNetNetwork``) at the variant's macro structure and classes."""
        from latfarm.predictor.seeding import seeded_eval
        from latfarm.predictor.spaces.fbnet_network import FBNetNetwork

        encoding = self.parse(arch)
        inputs, macro = VARIANTS[self.variant(variant).name]
        return seeded_eval(lambda: FBNetNetwork([block(BLOCKS[i]) for i in encoding], macro, inputs.classes), seed)


def load_reference(folder: Path | str) -> tuple[Encoding, ...]:
    """The archs of a HELP FBNet folder by position: ``metainfo.pt`` (``arch[i]["op_idx_list"]``) if present, else
    ``arch.pt`` (a list of 22-index lists). ``FileNotFoundError`` when neither exists; ``ValueError`` naming the file
    when it is not a torch file or not that layout; ``ArchError`` on a bad arch."""
    folder = Path(folder)
    if (folder / "metainfo.pt").exists():
        meta = torch_file(folder / "metainfo.pt")
        try:
            archs = [entry["op_idx_list"] for entry in meta["arch"]]
        except (KeyError, TypeError, IndexError) as err:
            layout = "{'arch': [{'op_idx_list': [22 block indices]}, ...]}"
            raise ValueError(f"{folder / 'metainfo.pt'}: expected {layout} ({type(err).__name__}: {err})") from err
    elif (folder / "arch.pt").exists():
        archs = torch_file(folder / "arch.pt")
    else:
        raise FileNotFoundError(f"{folder}: neither metainfo.pt nor arch.pt (HELP FBNet layout)")
    return tuple(FBNetSpace(archs).reference_set())


@lru_cache(maxsize=1)
def shipped_reference() -> tuple[Encoding, ...]:
    """The 5,000 archs of HELP's FBNet release by position, from the package data (checked like any reference)."""
    with resources.files("latfarm.predictor.data").joinpath("fbnet_help_archs.npy").open("rb") as fh:
        table = np.load(fh)
    return tuple(FBNetSpace(table.astype(np.int64).tolist()).reference_set())
