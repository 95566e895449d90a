"""Additive features, the cell's paths and the GCN: encoding and a training step."""

import numpy as np
import torch

from latfarm.predictor import nb201
from latfarm.predictor.features import FEATURE_NAMES, all_features, arch_features, zero_fed_as_dead
from latfarm.predictor.gcn import LatencyGCN, all_graphs


def _col(name: str) -> int:
    return FEATURE_NAMES.index(name)


def test_feature_counts_follow_live_edges():
    all_conv = nb201.parse(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    )
    dead_pool = nb201.parse("|avg_pool_3x3~0|+|none~0|none~1|+|nor_conv_1x1~0|none~1|none~2|")
    cut = nb201.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|none~1|none~2|")
    f = arch_features(np.array([all_conv, dead_pool, cut]))
    assert f[:, _col("intercept")].tolist() == [1, 1, 1]
    assert f[0, _col("live_nor_conv_3x3")] == 6 and f[0, _col("dead_nor_conv_3x3")] == 0
    assert f[1, _col("live_nor_conv_1x1")] == 1 and f[1, _col("dead_avg_pool_3x3")] == 1
    assert f[1, _col("live_avg_pool_3x3")] == 0 and f[1, _col("edge3_nor_conv_1x1")] == 1
    assert f[2, _col("disconnected")] == 1 and f[2, _col("dead_nor_conv_3x3")] == 3


def test_ops_reaching_the_output_but_not_from_the_input_are_zero_fed():
    # node 1 gets no input: the pool on 1->2 and the conv on 2->3 compute on zeros yet reach the output
    zero_fed = nb201.parse("|none~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|")
    # nodes 1 and 2 lead nowhere: their convs never reach the output
    dead = nb201.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|")
    assert nb201.output_edges(zero_fed) == (False, False, True, True, False, True)
    assert nb201.live_edges(zero_fed) == (False, False, False, True, False, False)
    f = arch_features(np.array([zero_fed, dead]))
    assert f[0, _col("zerofed_avg_pool_3x3")] == 1 and f[0, _col("zerofed_nor_conv_1x1")] == 1
    assert f[0, _col("live_skip_connect")] == 1 and f[0, [_col(f"dead_{o}") for o in nb201.OPS[1:]]].sum() == 0
    assert f[1, _col("dead_nor_conv_3x3")] == 3 and f[1, _col("live_skip_connect")] == 1
    assert f[1, [_col(f"zerofed_{o}") for o in nb201.OPS[1:]]].sum() == 0


def test_a_none_keeps_the_convolution_it_reads():
    # the none on (2, 3) reads node 2, one conv's result: pixel3's runtime runs that conv, not a pool there
    kept = nb201.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|none~2|")
    pool = nb201.parse("|nor_conv_3x3~0|+|avg_pool_3x3~0|none~1|+|skip_connect~0|none~1|none~2|")
    assert nb201.run_edges(kept) == (False, True, False, True, False, False)
    assert nb201.run_edges(pool) == (False, False, False, True, False, False)
    # node 1's conv, read by the none on (1, 2) into a node 2 that feeds the output, runs
    via_node2 = nb201.parse("|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|skip_connect~0|none~1|nor_conv_1x1~2|")
    assert nb201.run_edges(via_node2) == (True, True, False, True, False, True)
    # a cut-off cell: the convs on zeros reach the output but do not run
    cut = nb201.parse("|none~0|+|none~0|nor_conv_3x3~1|+|none~0|nor_conv_3x3~1|nor_conv_3x3~2|")
    assert nb201.output_edges(cut) == (False, False, True, False, True, True)
    assert not any(nb201.run_edges(cut))
    f = arch_features(np.array([kept, pool, cut]))
    assert f[0, _col("zerofed_nor_conv_3x3")] == 1 and f[0, _col("dead_nor_conv_3x3")] == 1
    assert f[1, _col("dead_avg_pool_3x3")] == 1 and f[1, _col("dead_nor_conv_3x3")] == 1
    assert f[2, _col("dead_nor_conv_3x3")] == 3


def test_sample_selection_sees_zero_fed_ops_as_dead():
    zero_fed = nb201.parse("|none~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|")
    phi = np.hstack([arch_features(np.array([zero_fed])), [[0.5, -2.0]]])  # two embedding columns
    seen = zero_fed_as_dead(phi)
    assert seen[0, _col("dead_avg_pool_3x3")] == 1 and seen[0, _col("dead_nor_conv_1x1")] == 1
    assert seen[0, [_col(f"zerofed_{o}") for o in nb201.OPS[1:]]].sum() == 0
    untouched = [i for i, n in enumerate(FEATURE_NAMES) if not n.startswith(("zerofed", "dead"))] + [-2, -1]
    np.testing.assert_array_equal(seen[:, untouched], phi[:, untouched])
    assert phi[0, _col("zerofed_avg_pool_3x3")] == 1  # the input is left as it was


def test_all_features_by_official_index():
    feats = all_features()
    assert feats.shape == (nb201.NUM_ARCHS, len(FEATURE_NAMES))
    assert int(feats[:, _col("disconnected")].sum()) == 341
    table = nb201.official_ops_table()
    nonzero = (table > 0).sum(1)
    counted = feats[:, 2:14].sum(1)  # live + zero-fed + dead op counts
    np.testing.assert_array_equal(counted, nonzero)
    np.testing.assert_array_equal(feats[123], arch_features(table[123:124])[0])


def test_graph_tensors_match_nb201_encoding():
    adj, feat = all_graphs()
    assert adj.shape == (nb201.NUM_ARCHS, 9, 9) and feat.shape == (nb201.NUM_ARCHS, 9, len(nb201.NODE_TYPES))
    a, f = nb201.graph(nb201.from_official_index(777))
    np.testing.assert_array_equal(adj[777], a)
    np.testing.assert_array_equal(feat[777], f)


def test_gcn_training_steps_reduce_loss():
    torch.manual_seed(0)
    adj, feat = all_graphs()
    adj, feat = torch.from_numpy(adj[:512]), torch.from_numpy(feat[:512])
    ops = nb201.official_ops_table()[:512]
    interaction = ((ops[:, 0] == 3) & (ops[:, 5] == 3)).astype(np.float32)  # what op counts cannot express
    target = torch.from_numpy(np.stack([interaction, 2 * interaction + (ops[:, 3] == 1)], 1)).float()
    model = LatencyGCN(num_devices=2)
    torch.nn.init.normal_(model.device_heads, std=0.1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = ((model(adj, feat) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_paths_are_the_four_input_output_chains():
    assert nb201.PATHS == ((0, 2, 5), (0, 4), (1, 5), (3,))
    for path in nb201.PATHS:
        nodes = [nb201.EDGES[path[0]][0]] + [nb201.EDGES[k][1] for k in path]
        assert nodes[0] == 0 and nodes[-1] == nb201.NUM_NODES - 1
        assert all(nb201.EDGES[a][1] == nb201.EDGES[b][0] for a, b in zip(path, path[1:], strict=False))
