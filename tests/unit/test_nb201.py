"""The NB201 search space: grammar, op vectors, enumeration, dead ops, graph encoding, official indices."""

from __future__ import annotations

import numpy as np
import pytest

from latfarm.predictor import nb201

ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


def test_parse_gives_latbench_op_vector_in_string_order():
    assert nb201.parse(ARCH) == (3, 3, 4, 1, 3, 1)
    assert nb201.to_string((3, 3, 4, 1, 3, 1)) == ARCH
    assert nb201.canonical(f"  {ARCH}\n") == ARCH
    assert nb201.EDGES == ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))


@pytest.mark.parametrize(
    ("arch", "names"),
    [
        ("", "3 node groups"),
        ("|nor_conv_3x3~0|", "found 1"),
        ("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|", "node 3 needs 3"),
        ("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown op 'conv' on edge 0->1"),
        ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "should come from node 0"),
        ("|none|+|none~0|none~1|+|none~0|none~1|none~2|", "lacks '~<source node>'"),
        ("none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "must start and end with '|'"),
        ("|none~0|+|none~0|none~1|none~2|+|none~0|none~1|none~2|", "node 2 needs 2"),
    ],
)
def test_invalid_strings_say_what_and_where(arch, names):
    with pytest.raises(nb201.ArchError) as err:
        nb201.parse(arch)
    assert names in str(err.value)


def test_invalid_op_vectors_and_types():
    for ops, names in [((1, 2, 3), "6 entries"), ((0, 0, 0, 0, 0, 5), "entry 5 is 5"), ("abcdef", "integers")]:
        with pytest.raises(nb201.ArchError) as err:
            nb201.validate_ops(ops)
        assert names in str(err.value)
    with pytest.raises(nb201.ArchError):
        nb201.parse(42)  # type: ignore[arg-type]


def test_enumeration_is_complete_and_round_trips():
    archs = list(nb201.enumerate_archs())
    assert len(archs) == nb201.NUM_ARCHS == 15_625
    assert len(set(archs)) == 15_625
    assert all(nb201.parse(nb201.to_string(ops)) == ops for ops in archs[::97])
    assert np.array_equal(nb201.ops_code(np.array(archs)), np.arange(15_625))


def test_disconnected_cells_and_live_edges():
    disconnected = [ops for ops in nb201.enumerate_archs() if nb201.is_disconnected(ops)]
    assert len(disconnected) == 341
    assert nb201.is_disconnected((0,) * 6)
    assert nb201.is_disconnected((1, 0, 0, 0, 0, 0))  # node 1 is fed but leads nowhere
    # edge 1->2 (index 2) is dead: node 1 has no input
    assert nb201.live_edges((0, 3, 3, 3, 0, 3)) == (False, True, False, True, False, True)
    assert nb201.live_edges(nb201.parse(ARCH)) == (True,) * 6


def test_graph_encoding_prunes_dead_nodes_and_links_the_global_node():
    adj, feat = nb201.graph((0, 3, 3, 3, 0, 3))
    assert adj.shape == (9, 9) and feat.shape == (9, len(nb201.NODE_TYPES))
    dead = [1, 3, 5]  # edges 0 (none), 2 (no input), 4 (none)
    assert not adj[dead].any() and not adj[:, dead].any() and not feat[dead].any()
    conv3 = nb201.NODE_TYPES.index("nor_conv_3x3")
    assert feat[[2, 4, 6], conv3].tolist() == [1, 1, 1]
    assert adj[0, 2] == 1 and adj[0, 4] == 1 and adj[2, 6] == 1  # input -> e1, input -> e3, e1 -> e5
    assert adj[4, 7] == 1 and adj[6, 7] == 1  # e3, e5 -> output
    assert adj[8, [0, 2, 4, 6, 7]].tolist() == [1] * 5 and adj[8, dead].sum() == 0
    adj_no_global, _ = nb201.graph((0, 3, 3, 3, 0, 3), global_node=False)
    assert adj_no_global.shape == (8, 8)


def test_official_index_table_is_a_bijection():
    table = nb201.official_ops_table()
    assert table.shape == (15_625, 6)
    assert len({tuple(row) for row in table}) == 15_625
    for index in (0, 1, 777, 15_624):
        ops = nb201.from_official_index(index)
        assert nb201.official_index(ops) == index
    with pytest.raises(nb201.ArchError, match="outside"):
        nb201.from_official_index(15_625)


def test_official_indices_match_the_help_release(help_dir):
    import torch

    mapping = torch.load(help_dir / "str_arch2idx.pt")
    for arch, index in list(mapping.items())[:500]:
        assert nb201.official_index(nb201.parse(arch)) == index
