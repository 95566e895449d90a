"""BRP-NAS style graph convolutional network: cell graph -> arch embedding -> per-device latency residual.

Each cell is the BRP-NAS graph of ``nb201.graph`` (ops as nodes, dead ops pruned, a global node linked to every
live node). Graph-convolution layers propagate along both edge directions; the global node's final state is the
arch embedding. One learned head vector per device (its device embedding) maps arch embeddings to that device's
latency residual, i.e. what the additive op-cost model misses (op/position interactions).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import nn

from latfarm.predictor.nb201 import NODE_TYPES, graph, official_ops_table


@lru_cache(maxsize=1)
def all_graphs() -> tuple[np.ndarray, np.ndarray]:
    """(adjacency [15625, 9, 9], node features [15625, 9, 7]) of every arch, by official NB201 index."""
    pairs = [graph(ops) for ops in official_ops_table()]
    return np.stack([a for a, _ in pairs]), np.stack([f for _, f in pairs])


def normalised_propagation(adj: torch.Tensor) -> torch.Tensor:
    """Forward and backward propagation matrices (row-normalised, with self loops), stacked on dim 1."""
    eye = torch.eye(adj.shape[-1], dtype=adj.dtype)
    out = []
    for a in (adj.transpose(-1, -2), adj):  # messages from producers, then from consumers
        a = a + eye
        out.append(a / a.sum(-1, keepdim=True))
    return torch.stack(out, 1)


class GraphConv(nn.Module):
    """One layer: h' = relu(W_self h + W_in P_in h + W_out P_out h), then layer norm."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        """A layer from ``dim_in`` to ``dim_out`` node features."""
        super().__init__()
        self.self_lin = nn.Linear(dim_in, dim_out)
        self.in_lin = nn.Linear(dim_in, dim_out, bias=False)
        self.out_lin = nn.Linear(dim_in, dim_out, bias=False)
        self.norm = nn.LayerNorm(dim_out)

    def forward(self, h: torch.Tensor, prop: torch.Tensor) -> torch.Tensor:
        """Node features [n, 9, dim_in] and propagation matrices [n, 2, 9, 9] -> [n, 9, dim_out]."""
        msg_in = prop[:, 0] @ h
        msg_out = prop[:, 1] @ h
        return self.norm(torch.relu(self.self_lin(h) + self.in_lin(msg_in) + self.out_lin(msg_out)))


class LatencyGCN(nn.Module):
    """Arch encoder (GCN -> global-node embedding) plus one learned embedding (head) per training device."""

    def __init__(self, num_devices: int, hidden: int = 32, layers: int = 3, embed_dim: int = 8) -> None:
        """``layers`` graph convolutions of width ``hidden``, embeddings of ``embed_dim``, one head per device."""
        super().__init__()
        dims = [len(NODE_TYPES)] + [hidden] * layers
        self.convs = nn.ModuleList(GraphConv(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.embed = nn.Linear(hidden, embed_dim)
        self.device_heads = nn.Parameter(torch.zeros(num_devices, embed_dim))

    def encode(self, adj: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        """Arch embeddings [n, embed_dim] from adjacency [n, 9, 9] and node features [n, 9, 7]."""
        prop = normalised_propagation(adj)
        h = feat
        for conv in self.convs:
            h = conv(h, prop)
        return self.embed(h[:, -1])  # the global node

    def forward(self, adj: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        """Residual predictions [n, num_devices]."""
        return self.encode(adj, feat) @ self.device_heads.T


def train_gcn(
    residuals: np.ndarray,
    *,
    epochs: int = 12,
    seed: int = 0,
    batch_size: int = 1024,
    lr: float = 3e-3,
    progress=None,
) -> LatencyGCN:
    """Fit a GCN to residuals [15625, devices] (NaN = not measured) by masked mean squared error."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    adj_np, feat_np = all_graphs()
    adj, feat = torch.from_numpy(adj_np), torch.from_numpy(feat_np)
    scale = float(np.nanstd(residuals)) or 1.0
    target = torch.from_numpy(np.nan_to_num(residuals / scale)).float()
    mask = torch.from_numpy(~np.isnan(residuals)).float()
    model = LatencyGCN(residuals.shape[1])
    nn.init.normal_(model.device_heads, std=0.1)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    rows = np.flatnonzero(mask.sum(1).numpy() > 0)
    for _ in range(epochs):
        model.train()
        order = rows[rng.permutation(len(rows))]
        for start in range(0, len(order), batch_size):
            batch = torch.from_numpy(order[start : start + batch_size])
            pred = model(adj[batch], feat[batch])
            loss = ((pred - target[batch]) ** 2 * mask[batch]).sum() / mask[batch].sum().clamp(min=1)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        if progress is not None:
            progress()
    model.eval()
    return model


@torch.no_grad()
def embed_all(model: LatencyGCN) -> np.ndarray:
    """Arch embeddings [15625, embed_dim] of every arch, by official NB201 index."""
    adj, feat = all_graphs()
    return model.encode(torch.from_numpy(adj), torch.from_numpy(feat)).numpy().astype(np.float64)
