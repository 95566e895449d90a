"""NAS-Bench-201 search space: the one place for the arch-string grammar.

A cell is a DAG on 4 nodes; each of its 6 edges (j <- i, i < j) carries one of 5 ops. The string form is
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``: group ``j`` lists the edges entering node ``j`` from nodes ``0..j-1``.
LatBench's 6-op vector lists the op ids in the same edge order. Pure Python + numpy: no torch needed.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from functools import lru_cache
from importlib import resources

import numpy as np

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
"""Op names; the position is LatBench's op id (none 0, skip 1, conv1x1 2, conv3x3 3, avgpool 4)."""
OP_ID: dict[str, int] = {name: i for i, name in enumerate(OPS)}
NUM_NODES = 4
EDGES: tuple[tuple[int, int], ...] = tuple((src, dst) for dst in range(1, NUM_NODES) for src in range(dst))
"""The 6 edges as (source, destination), in string order: (0,1), (0,2), (1,2), (0,3), (1,3), (2,3)."""
NUM_ARCHS = len(OPS) ** len(EDGES)  # 15,625


def _paths(node: int = 0) -> list[tuple[int, ...]]:
    if node == NUM_NODES - 1:
        return [()]
    return [(k, *rest) for k, (src, dst) in enumerate(EDGES) if src == node for rest in _paths(dst)]


PATHS: tuple[tuple[int, ...], ...] = tuple(_paths())
"""The 4 input-output paths of the cell as edge indices: (0, 2, 5), (0, 4), (1, 5), (3,)."""
SPACE = "nb201"
# How an NB201 cell becomes a network: "reference" as the benchmark defines it, or "pruned" (ops without effect
# removed); predictor/network.py builds both
GRAPHS = ("reference", "pruned")


class ArchError(ValueError):
    """An arch string or op vector that is not a valid NB201 cell; the message says what and where."""


def parse(arch: str) -> tuple[int, ...]:
    """Parse an arch string into its 6-op vector, with an error that names the offending part."""
    if not isinstance(arch, str):
        raise ArchError(f"arch must be a string, got {type(arch).__name__}")
    text = arch.strip()
    groups = text.split("+")
    if len(groups) != NUM_NODES - 1:
        raise ArchError(f"{arch!r}: expected {NUM_NODES - 1} node groups joined by '+', found {len(groups)}")
    ops: list[int] = []
    for dst, group in enumerate(groups, start=1):
        if not (group.startswith("|") and group.endswith("|") and len(group) > 1):
            raise ArchError(f"{arch!r}: node {dst} group {group!r} must start and end with '|'")
        entries = group[1:-1].split("|")
        if len(entries) != dst:
            raise ArchError(f"{arch!r}: node {dst} needs {dst} incoming edge(s), found {len(entries)}")
        for src, entry in enumerate(entries):
            name, sep, idx = entry.partition("~")
            if not sep:
                raise ArchError(f"{arch!r}: edge {entry!r} into node {dst} lacks '~<source node>'")
            if name not in OP_ID:
                raise ArchError(f"{arch!r}: unknown op {name!r} on edge {src}->{dst}; expected one of {', '.join(OPS)}")
            if idx != str(src):
                raise ArchError(f"{arch!r}: edge {entry!r} into node {dst} should come from node {src}")
            ops.append(OP_ID[name])
    return tuple(ops)


def to_string(ops: Sequence[int]) -> str:
    """The canonical arch string of a 6-op vector."""
    ops = validate_ops(ops)
    groups, k = [], 0
    for dst in range(1, NUM_NODES):
        groups.append("|" + "|".join(f"{OPS[ops[k + src]]}~{src}" for src in range(dst)) + "|")
        k += dst
    return "+".join(groups)


def validate_ops(ops: Sequence[int]) -> tuple[int, ...]:
    """Check a 6-op vector and return it as a tuple of ints."""
    try:
        out = tuple(int(o) for o in ops)
    except (TypeError, ValueError) as exc:
        raise ArchError(f"op vector must be {len(EDGES)} integers, got {ops!r}") from exc
    if len(out) != len(EDGES):
        raise ArchError(f"op vector must have {len(EDGES)} entries, got {len(out)}")
    for k, o in enumerate(out):
        if not 0 <= o < len(OPS):
            raise ArchError(f"op vector entry {k} is {o}; op ids are 0..{len(OPS) - 1}")
    return out


def canonical(arch: str) -> str:
    """Normalise an arch string (whitespace, validation)."""
    return to_string(parse(arch))


def enumerate_archs() -> Iterator[tuple[int, ...]]:
    """All 15,625 op vectors, in lexicographic op-id order."""
    return itertools.product(range(len(OPS)), repeat=len(EDGES))


def _from_input(ops: Sequence[int]) -> list[bool]:
    """For each node: does a path of non-``none`` ops reach it from the input (node 0)?"""
    from_input = [True] + [False] * (NUM_NODES - 1)
    for k, (src, dst) in enumerate(EDGES):
        if ops[k] and from_input[src]:
            from_input[dst] = True
    return from_input


def live_edges(ops: Sequence[int]) -> tuple[bool, ...]:
    """For each edge: is it a non-``none`` op on some path from the input (node 0) to the output (node 3)?

    Ops that are not live never affect the output's value.
    """
    from_input = _from_input(ops)
    return tuple(out and from_input[s] for out, (s, _) in zip(output_edges(ops), EDGES, strict=True))


def output_edges(ops: Sequence[int]) -> tuple[bool, ...]:
    """For each edge: is it a non-``none`` op from whose result a path of non-``none`` ops reaches the output?

    A runtime that prunes the ops whose result is never used (pixel3's) drops the others; an op that reaches the
    output but not from the input (it computes on zeros) still runs there.
    """
    to_output = [False] * (NUM_NODES - 1) + [True]
    for k in reversed(range(len(EDGES))):
        src, dst = EDGES[k]
        if ops[k] and to_output[dst]:
            to_output[src] = True
    return tuple(bool(ops[k]) and to_output[d] for k, (_, d) in enumerate(EDGES))


def run_edges(ops: Sequence[int]) -> tuple[bool, ...]:
    """For each edge: does a runtime that prunes the ops it finds unused (pixel3's) run it?

    Every op of ``output_edges`` runs; besides, a ``none`` (a multiply by 0) keeps a convolution or skip result it
    reads, never a pool's. The ``none`` on (2, 3) keeps node 2 when at most one op enters it: that op runs. The op on
    (0, 1) runs when an op on (1, 3) or a running op on (1, 2) reads node 1, or, with (1, 2) ``none``, when node 2
    feeds the output through an op or no op enters node 2. Ops of a node 2 that two ops enter and none leaves do not
    run, nor does the ``none`` on (1, 3) keep node 1. In a cut-off cell (no live op) ops whose input is all zeros (not
    reached from the input) do not run. Measured on pixel3, op by op in each pattern of ``none`` edges: a
    least-squares fit of its latency on ``features`` with these ops as the ones it runs scores Spearman 0.982 on 20%
    of its archs, 0.970 with ``output_edges`` (fitted on the other 80%, mean of 5 splits).
    """
    pool = OP_ID["avg_pool_3x3"]
    runs = list(output_edges(ops))
    into2 = [k for k in (1, 2) if ops[k]]
    kept2 = not ops[5] and len(into2) <= 1  # node 2 kept by the ``none`` on (2, 3) alone
    if kept2 and into2 and ops[into2[0]] != pool:
        runs[into2[0]] = True
    kept1 = bool(ops[4]) or (runs[2] if ops[2] else bool(ops[5]) or (kept2 and not into2))
    if ops[0] not in (0, pool) and kept1:
        runs[0] = True
    if not any(live_edges(ops)):
        from_input = _from_input(ops)
        runs = [r and from_input[s] for r, (s, _) in zip(runs, EDGES, strict=True)]
    return tuple(runs)


def is_disconnected(ops: Sequence[int]) -> bool:
    """True when no path of non-``none`` ops links the input to the output (341 of the 15,625 cells)."""
    return not any(live_edges(ops))


# --- BRP-NAS graph encoding -------------------------------------------------------------------------------
# Ops become nodes: [input, edge 0..5, output]; a global node, if asked for, links to every live node.
NODE_TYPES: tuple[str, ...] = ("input", "output", "global") + OPS[1:]
"""One-hot columns of the node features: input, output, global, then the 4 non-``none`` ops."""
NUM_GRAPH_NODES = len(EDGES) + 2


def graph(ops: Sequence[int], global_node: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """BRP-NAS encoding: (adjacency [n, n], features [n, len(NODE_TYPES)]) with dead op nodes pruned.

    ``adjacency[a, b] = 1`` means data flows from node a to node b. Pruned nodes (``none`` ops and ops off every
    input-output path) keep their slot with zero rows, columns and features, so every cell has the same shape.
    """
    ops = validate_ops(ops)
    live = live_edges(ops)
    n = NUM_GRAPH_NODES + int(global_node)
    out_idx = NUM_GRAPH_NODES - 1
    adj = np.zeros((n, n), dtype=np.float32)
    feat = np.zeros((n, len(NODE_TYPES)), dtype=np.float32)
    feat[0, NODE_TYPES.index("input")] = 1
    feat[out_idx, NODE_TYPES.index("output")] = 1
    for k, (src, dst) in enumerate(EDGES):
        if not live[k]:
            continue
        node = k + 1
        feat[node, NODE_TYPES.index(OPS[ops[k]])] = 1
        # inputs: the graph input, or every live op entering ``src``
        producers = [0] if src == 0 else [j + 1 for j, (_, d) in enumerate(EDGES) if d == src and live[j]]
        consumers = [out_idx] if dst == NUM_NODES - 1 else []
        consumers += [j + 1 for j, (s, _) in enumerate(EDGES) if s == dst and live[j]]
        for p in producers:
            adj[p, node] = 1
        for c in consumers:
            adj[node, c] = 1
    if global_node:
        g = n - 1
        feat[g, NODE_TYPES.index("global")] = 1
        alive = [0, out_idx] + [k + 1 for k in range(len(EDGES)) if live[k]]
        adj[g, alive] = 1
        adj[alive, g] = 1
    return adj, feat


# --- official NAS-Bench-201 indices ----------------------------------------------------------------------
@lru_cache(maxsize=1)
def official_ops_table() -> np.ndarray:
    """[15625, 6] uint8: row i is the op vector of official NB201 index i (shipped with the package)."""
    with resources.files("latfarm.predictor.data").joinpath("nb201_index_ops.npy").open("rb") as fh:
        return np.load(fh)


@lru_cache(maxsize=1)
def _index_of_code() -> np.ndarray:
    table = official_ops_table().astype(np.int64)
    inverse = np.empty(NUM_ARCHS, dtype=np.int64)
    inverse[ops_code(table)] = np.arange(NUM_ARCHS)
    return inverse


def ops_code(ops: np.ndarray) -> np.ndarray:
    """Base-5 code of op vectors ([..., 6] -> [...]), a dense id in 0..15624 in lexicographic order."""
    weights = len(OPS) ** np.arange(len(EDGES) - 1, -1, -1)
    return (np.asarray(ops, dtype=np.int64) * weights).sum(-1)


def official_index(ops: Sequence[int]) -> int:
    """The official NAS-Bench-201 index of a cell."""
    return int(_index_of_code()[ops_code(np.asarray(validate_ops(ops)))])


def from_official_index(index: int) -> tuple[int, ...]:
    """The op vector of an official NAS-Bench-201 index."""
    if not 0 <= int(index) < NUM_ARCHS:
        raise ArchError(f"NB201 index {index} is outside 0..{NUM_ARCHS - 1}")
    return tuple(int(o) for o in official_ops_table()[int(index)])
