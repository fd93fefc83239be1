"""Tiny CNNs for the budgets tests."""

from __future__ import annotations

import torch
from torch import nn


def tiny_cnn(width: int = 16, *, seed: int = 0) -> nn.Module:
    """Conv(3, w) -> BN -> ReLU -> Conv(w, 2w) -> BN -> ReLU -> pool -> Linear(2w, 10)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.BatchNorm2d(2 * width),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * width, 10),
    )
