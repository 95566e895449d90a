"""Deterministic weights for exported networks: one seed, one set of weights, whatever the global RNG holds."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def seeded_eval(make: Callable[[], ModuleT], seed: int) -> ModuleT:
    """``make()`` under ``torch.manual_seed(seed)``, its batch norms given non-trivial affine parameters and running
    statistics (weight, variance in [0.5, 1.5]; bias, mean in [-0.1, 0.1]) so numerical checks see every op, in eval
    mode. The global RNG is left untouched; the same ``make`` and ``seed`` give the same weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = make()
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                nn.init.uniform_(module.weight, 0.5, 1.5)
                nn.init.uniform_(module.bias, -0.1, 0.1)
                assert module.running_mean is not None and module.running_var is not None  # BN tracks statistics
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return net.eval()
