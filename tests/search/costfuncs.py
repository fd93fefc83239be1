"""User cost functions for the search tests (importable as ``tests.search.costfuncs:NAME``)."""

from __future__ import annotations

import torch


def stem_width_meter(model: torch.nn.Module, example_input: torch.Tensor) -> float:
    """A meter that cannot measure a pruned stem: raises unless the stem is at full width (4)."""
    width = model.stem[0].out_channels
    if width < 4:
        raise ValueError(f"meter cannot handle a stem of {width} channels")
    return float(width)


def negative_meter(model: torch.nn.Module, example_input: torch.Tensor) -> float:
    """A broken meter: every model costs -5."""
    return -5.0


def failing_meter(model: torch.nn.Module, example_input: torch.Tensor) -> float:
    """A meter that cannot measure any model."""
    raise RuntimeError("meter unplugged")
