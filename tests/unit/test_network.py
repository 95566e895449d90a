"""The NB201 network builder: shapes, seeded weights, NB201's sum-over-edges semantics, both graph variants."""

from __future__ import annotations

import random

import pytest
import torch

from latfarm.predictor import nb201
from latfarm.predictor.network import Cell, NB201Network, Zero, build

DISCONNECTED = "|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|none~0|none~1|none~2|"
DEAD_END = "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"


def nb201_reference_cell(cell: Cell, x: torch.Tensor) -> torch.Tensor:
    """NB201's InferCell: every edge, ``none`` included as ``x * 0``."""
    nodes = [x]
    for dst in range(1, nb201.NUM_NODES):
        total = torch.zeros_like(x)
        for src in range(dst):
            key = f"{src}_{dst}"
            total = total + (cell.edges[key](nodes[src]) if key in cell.edges else nodes[src] * 0.0)
        nodes.append(total)
    return nodes[-1]


def sample_archs(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [nb201.to_string([rng.randrange(5) for _ in nb201.EDGES]) for _ in range(n)]


@pytest.mark.parametrize("graph", ["reference", "pruned"])
@pytest.mark.parametrize("arch", [*sample_archs(4), DISCONNECTED, DEAD_END, nb201.to_string([0] * 6)])
def test_cell_matches_nb201_semantics(arch, graph):
    net = build(arch, graph=graph)
    x = torch.randn(2, 16, 8, 8)
    for cell in (m for m in net.modules() if isinstance(m, Cell)):
        torch.testing.assert_close(cell(x), nb201_reference_cell(cell, x), rtol=0, atol=1e-6)
        break


def test_pruned_builds_only_non_none_edges():
    net = build(DEAD_END, graph="pruned")
    cell = next(m for m in net.modules() if isinstance(m, Cell))
    assert set(cell.edges) == {"0_1", "0_3"}
    assert cell.anchors == (1,)  # node 1 feeds only none edges, so it is anchored to the output


def test_reference_builds_every_edge_none_as_zero():
    net = build(DEAD_END)
    cell = next(m for m in net.modules() if isinstance(m, Cell))
    assert set(cell.edges) == {f"{s}_{d}" for s, d in nb201.EDGES}
    assert [isinstance(cell.edges[f"{s}_{d}"], Zero) for s, d in nb201.EDGES] == [op == 0 for op in cell.ops]
    assert cell.anchors == ()


@pytest.mark.parametrize("arch", [*sample_archs(3, seed=5), DISCONNECTED, DEAD_END])
def test_graph_variants_share_weights_and_outputs(arch):
    reference, pruned = build(arch), build(arch, graph="pruned")
    assert reference.state_dict().keys() == pruned.state_dict().keys()
    for name, value in reference.state_dict().items():
        assert torch.equal(value, pruned.state_dict()[name]), name
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(reference(x), pruned(x), rtol=1e-5, atol=1e-5)


def test_unknown_graph_is_rejected():
    with pytest.raises(ValueError, match="graph must be one of"):
        build(DEAD_END, graph="optimized")


def test_shapes_and_stages():
    net = build(sample_archs(1)[0], channels=16, classes=120)
    assert net(torch.randn(3, 3, 16, 16)).shape == (3, 120)
    assert sum(isinstance(m, Cell) for m in net.modules()) == 15
    assert net.classifier.in_features == 64
    assert not net.training


def test_seeded_weights_are_reproducible_and_leave_global_rng_alone():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a, b = build(DEAD_END), build(nb201.parse(DEAD_END))
    assert torch.equal(torch.random.get_rng_state(), before)
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(pa, pb), name
    c = build(DEAD_END, seed=1)
    assert not torch.equal(a.stem[0].weight, c.stem[0].weight)


def test_disconnected_cell_output_is_constant():
    net = build(DISCONNECTED)
    with torch.no_grad():
        y1, y2 = net(torch.randn(1, 3, 32, 32)), net(torch.randn(1, 3, 32, 32))
    torch.testing.assert_close(y1, y2)


def test_bad_arch_is_rejected():
    with pytest.raises(nb201.ArchError, match="unknown op"):
        build("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    with pytest.raises(nb201.ArchError):
        NB201Network([0, 1, 2])
