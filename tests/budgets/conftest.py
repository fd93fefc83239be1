"""Fixtures: a dense tiny CNN, the same with half the channels, and an input batch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.budgets.nets import tiny_cnn


@pytest.fixture
def dense() -> nn.Module:
    return tiny_cnn(16)


@pytest.fixture
def pruned() -> nn.Module:
    return tiny_cnn(8)


@pytest.fixture
def example_input() -> torch.Tensor:
    # A batch of 2: costs must use only the first item.
    return torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))
