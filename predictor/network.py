"""The NAS-Bench-201 network in PyTorch, built from an arch string or a 6-op vector.

Macro skeleton as NB201's ``TinyNetwork``: stem (3x3 conv, BN), three stages of ``cells_per_stage`` cells with
C, 2C, 4C channels, a ``ResNetBasicblock`` (stride 2) between stages, head (BN, ReLU, global average pool, linear).
Every cell uses the same 6-op cell. Node ``j`` of a cell sums the ops on its incoming edges.

Two graph variants (``nb201.GRAPHS``), the same function (same weights for the same arch and seed, same outputs):
- ``reference``: NB201's own ``InferCell``. Every edge is its own op; a ``none`` edge is NB201's ``Zero`` op
  (``x.mul(0.)``), a real multiply in the exported graph. LatBench, HELP and HW-NAS-Bench measured this network.
  (The ONNX exporter still merges identical weight-free ops reading the same node, e.g. two ``none`` edges out
  of the input; onnxruntime's own common-subexpression pass would merge them anyway.)
- ``pruned``: what a deployment would run. ``none`` edges are not built: a node sums only its non-``none``
  inputs. Two ``Zero`` ops remain where dropping them would change what gets exported: a node with no
  non-``none`` input is ``input * 0`` (so ops that read it, dead but non-``none``, still appear in the graph), and
  an intermediate node whose outgoing edges are all ``none`` adds ``node * 0`` to the cell output (so the ops that
  feed it survive the exporter's dead-code elimination). Whether those dead ops run is left to the runtime.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from latfarm.predictor import nb201
from latfarm.predictor.seeding import seeded_eval


class ReLUConvBN(nn.Sequential):
    """ReLU, convolution (same padding), batch norm."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int) -> None:
        """A ``kernel`` x ``kernel`` convolution from ``c_in`` to ``c_out`` channels."""
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out),
        )


class ResNetBasicBlock(nn.Module):
    """NB201's reduction block: two ReLU-Conv-BN (the first with stride 2) plus an avgpool + 1x1 conv shortcut."""

    def __init__(self, c_in: int, c_out: int) -> None:
        """Halve the resolution, ``c_in`` to ``c_out`` channels."""
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1)
        self.downsample = nn.Sequential(nn.AvgPool2d(kernel_size=2, stride=2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images [n, c_in, h, w] -> [n, c_out, h / 2, w / 2]."""
        return self.downsample(x) + self.conv_b(self.conv_a(x))


def make_op(op: int, channels: int) -> nn.Module:
    """The module of one NB201 op (index into ``nb201.OPS``) at ``channels`` channels; ``none`` is ``Zero``."""
    name = nb201.OPS[op]
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1, 1)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3, 1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    if name == "none":
        return Zero()
    raise ValueError(f"unknown op {name!r}")


class Zero(nn.Module):
    """NB201's ``Zero`` op at stride 1: ``x.mul(0.)``, a zero tensor of the input's shape (kept in the graph)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Feature maps [n, c, h, w] -> zeros of the same shape."""
        return x.mul(0.0)


class Cell(nn.Module):
    """One NB201 cell (stride 1, same channels in and out); see the module docstring for the graph variants."""

    def __init__(self, ops: Sequence[int], channels: int, graph: str = "reference") -> None:
        """The cell of the 6-op vector ``ops`` at ``channels`` channels, ``graph`` one of ``nb201.GRAPHS``
        (``ValueError`` otherwise)."""
        super().__init__()
        if graph not in nb201.GRAPHS:
            raise ValueError(f"graph must be one of {nb201.GRAPHS}, got {graph!r}")
        self.ops = nb201.validate_ops(ops)
        self.graph = graph
        # reference: every edge, none as Zero; pruned: real ops only. Zero has no weights, so both draw the same ones
        built = {edge: op for op, edge in zip(self.ops, nb201.EDGES, strict=True) if op or graph == "reference"}
        self.edges = nn.ModuleDict({f"{src}_{dst}": make_op(op, channels) for (src, dst), op in built.items()})
        # pruned: intermediate nodes computed by real ops but read by none: anchor them to the output as x * 0
        self.anchors = tuple(
            j
            for j in range(1, nb201.NUM_NODES - 1)
            if graph == "pruned" and any(d == j for _, d in built) and not any(s == j for s, _ in built)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Feature maps [n, c, h, w] -> the cell output, same shape."""
        nodes = [x]
        for dst in range(1, nb201.NUM_NODES):
            terms = [self.edges[f"{src}_{dst}"](nodes[src]) for src in range(dst) if f"{src}_{dst}" in self.edges]
            if dst == nb201.NUM_NODES - 1:
                terms += [nodes[j] * 0.0 for j in self.anchors]
            nodes.append(_sum(terms) if terms else x * 0.0)
        return nodes[-1]


def _sum(terms: list[torch.Tensor]) -> torch.Tensor:
    out = terms[0]
    for t in terms[1:]:
        out = out + t
    return out


class NB201Network(nn.Module):
    """NB201's ``TinyNetwork`` with one fixed cell."""

    def __init__(
        self,
        ops: Sequence[int],
        channels: int = 16,
        classes: int = 10,
        cells_per_stage: int = 5,
        graph: str = "reference",
    ) -> None:
        """The network of the 6-op vector ``ops``: ``channels`` in the first stage, ``classes`` outputs, cells of
        the ``graph`` variant (one of ``nb201.GRAPHS``)."""
        super().__init__()
        self.ops = nb201.validate_ops(ops)
        self.graph = graph
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        layers: list[nn.Module] = []
        c = channels
        for stage in range(3):
            if stage:
                layers.append(ResNetBasicBlock(c, c * 2))
                c *= 2
            layers.extend(Cell(self.ops, c, graph) for _ in range(cells_per_stage))
        self.cells = nn.Sequential(*layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=False))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images [n, 3, h, w] -> logits [n, classes]."""
        out = self.lastact(self.cells(self.stem(x)))
        return self.classifier(torch.flatten(self.global_pooling(out), 1))


def as_ops(ops_or_arch: str | Sequence[int]) -> tuple[int, ...]:
    """A 6-op vector from an arch string or an op vector (validated)."""
    return nb201.parse(ops_or_arch) if isinstance(ops_or_arch, str) else nb201.validate_ops(ops_or_arch)


def build(
    ops_or_arch: str | Sequence[int],
    channels: int = 16,
    classes: int = 10,
    seed: int = 0,
    graph: str = "reference",
) -> NB201Network:
    """The network in eval mode with seeded weights (BN statistics included), leaving the global RNG untouched.

    ``graph`` is ``reference`` (NB201's network, the default) or ``pruned``; both variants of one arch and seed
    have the same weights and compute the same function.
    """
    ops = as_ops(ops_or_arch)
    return seeded_eval(lambda: NB201Network(ops, channels=channels, classes=classes, graph=graph), seed)
