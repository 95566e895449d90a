"""Reference costs of a built torch network, counted by forward hooks: what the analytic cost features are checked
against."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any


def torch_macs(net: Any, size: int, skipped: Collection[int] = ()) -> int:
    """Multiply-accumulates of one forward pass of ``net`` on a zero batch-1 ``3 x size x size`` input: every
    ``Conv2d`` (output elements x input channels per group x kernel area) and ``Linear``; modules whose ``id`` is in
    ``skipped`` are not counted."""
    import torch

    macs = 0

    def hook(module, _inputs, output) -> None:
        nonlocal macs
        if id(module) in skipped:
            return
        if isinstance(module, torch.nn.Conv2d):
            kh, kw = module.kernel_size
            macs += output.numel() * module.in_channels // module.groups * kh * kw
        elif isinstance(module, torch.nn.Linear):
            macs += module.in_features * module.out_features

    handles = [module.register_forward_hook(hook) for module in net.modules()]
    try:
        with torch.no_grad():
            net(torch.zeros(1, 3, size, size))
    finally:
        for handle in handles:
            handle.remove()
    return macs
