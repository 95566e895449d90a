"""FBNet arch features without torch: per-layer block one-hots and device-agnostic costs of the built network.

Costs follow ``spaces/fbnet_network.py`` layer by layer at batch 1 of an input variant: multiply-accumulates
(``flops``), parameters (conv and BN weights and biases, classifier), activation memory traffic (elements read
and written by every kernel) and kernels launched (each conv, BN, ReLU, channel shuffle and residual add; the
identity launches none). Stem, head and classifier are included (the same for every arch).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from latfarm.predictor.spaces.fbnet import BLOCKS, NUM_LAYERS, STAGE_CHANNELS, VARIANTS, block

COSTS: tuple[str, ...] = ("kernels", "flops", "memory", "params")
"""The cost columns, in this order, of ``layer_costs`` and ``network_costs``."""


def conv_bn(c_in: int, c_out: int, kernel: int, size_in: int, stride: int, groups: int, relu: bool) -> np.ndarray:
    """Costs of conv + BN (+ ReLU) on a ``size_in`` x ``size_in`` map (same padding)."""
    size = (size_in + stride - 1) // stride
    n_in, n_out = c_in * size_in * size_in, c_out * size * size
    flops = n_out * kernel * kernel * c_in // groups
    params = c_out * kernel * kernel * c_in // groups + 2 * c_out
    memory = (n_in + n_out) + 2 * n_out + (2 * n_out if relu else 0)
    return np.array([2 + relu, flops, memory, params], dtype=np.float64)


def _layer(choice: int, c_in: int, c_out: int, stride: int, size: int) -> np.ndarray:
    """Costs of one searchable layer: block ``choice`` from ``c_in`` to ``c_out`` channels at ``stride``."""
    shape = block(BLOCKS[choice])
    if shape.is_skip:
        if stride == 1 and c_in == c_out:
            return np.zeros(len(COSTS))
        return conv_bn(c_in, c_out, 1, size, stride, 1, True)
    hidden = shape.expansion * c_in
    out = conv_bn(c_in, hidden, 1, size, 1, shape.groups, True)
    if shape.groups > 1:
        out = out + [1, 0, 2 * hidden * size * size, 0]
    out = out + conv_bn(hidden, hidden, shape.kernel, size, stride, hidden, True)
    size_out = (size + stride - 1) // stride
    out = out + conv_bn(hidden, c_out, 1, size_out, 1, shape.groups, False)
    if stride == 1 and c_in == c_out:
        out = out + [1, 0, 3 * c_out * size_out * size_out, 0]
    return out


@lru_cache(maxsize=4)
def layer_costs(variant: str = "cifar100") -> tuple[np.ndarray, np.ndarray]:
    """(per-layer costs [22, 9 blocks, len(COSTS)], fixed costs [len(COSTS)] of stem, head and classifier)."""
    inputs, macro = VARIANTS[variant]
    size = inputs.resolution
    fixed = conv_bn(3, STAGE_CHANNELS[0], 3, size, macro.stem_stride, 1, True)
    size = (size + macro.stem_stride - 1) // macro.stem_stride
    table = np.zeros((NUM_LAYERS, len(BLOCKS), len(COSTS)))
    for position, (c_in, c_out, stride) in enumerate(macro.layers()):
        for choice in range(len(BLOCKS)):
            table[position, choice] = _layer(choice, c_in, c_out, stride, size)
        size = (size + stride - 1) // stride
    fixed = fixed + conv_bn(STAGE_CHANNELS[-1], macro.head_channels, 1, size, 1, 1, True)
    pooled = macro.head_channels * size * size
    fixed = fixed + [2, macro.head_channels * inputs.classes, pooled + 2 * macro.head_channels + inputs.classes,
                     (macro.head_channels + 1) * inputs.classes]  # fmt: skip
    table.setflags(write=False)
    return table, fixed


def network_costs(encodings: np.ndarray, variant: str = "cifar100") -> np.ndarray:
    """[n, len(COSTS)] whole-network costs of encodings [n, 22]."""
    table, fixed = layer_costs(variant)
    enc = np.asarray(encodings, dtype=np.int64).reshape(-1, NUM_LAYERS)
    return table[np.arange(NUM_LAYERS), enc].sum(1) + fixed


def one_hot(encodings: np.ndarray) -> np.ndarray:
    """[n, 22 * 9] per-layer block one-hots."""
    enc = np.asarray(encodings, dtype=np.int64).reshape(-1, NUM_LAYERS)
    out = np.zeros((len(enc), NUM_LAYERS, len(BLOCKS)))
    out[np.arange(len(enc))[:, None], np.arange(NUM_LAYERS), enc] = 1.0
    return out.reshape(len(enc), NUM_LAYERS * len(BLOCKS))
