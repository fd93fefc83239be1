"""User cost functions for the tests, importable as ``tests.budgets.userfuncs:<name>``."""

from __future__ import annotations

import torch

NOT_CALLABLE = 3


def bias_count(model: torch.nn.Module, example_input: torch.Tensor) -> float:
    """The sample user cost: how many bias parameters the model has."""
    biases = [m.bias for m in model.modules() if getattr(m, "bias", None) is not None]
    return float(sum(bias.numel() for bias in biases))


def scaled_params(model: torch.nn.Module, example_input: torch.Tensor, *, scale: float) -> float:
    return scale * sum(p.numel() for p in model.parameters())


def zero_weights(model: torch.nn.Module, example_input: torch.Tensor) -> float:
    """A careless user function: switches to eval mode and wipes the weights it was given."""
    model.eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
    return 1.0


def broken_meter(model: torch.nn.Module, example_input: torch.Tensor) -> float:
    raise RuntimeError("power meter offline")


def returns_text(model: torch.nn.Module, example_input: torch.Tensor) -> str:
    return "fast"


def returns_nan(model: torch.nn.Module, example_input: torch.Tensor) -> float:
    return float("nan")
