"""Training, fine-tuning and evaluation on in-memory tensors.

Split like torchvision's reference script: :func:`train_steps` (the loop), :func:`evaluate`,
:func:`train_base` (the dense model, with a progress bar). Data sets here are small tensors
already in memory (see ``prunetune.trainables.data``), so batches are index slices: no per-epoch decoding
and no DataLoader worker start-up in short trials. On CUDA the step runs in bfloat16 autocast
with channels-last memory, which needs no loss scaler.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from prunetune.budgets.errors import PrunetuneError


class DivergedError(RuntimeError):
    """The loss became NaN or infinite; the trial ends with this reason."""


@dataclass(frozen=True)
class Recipe:
    """An SGD recipe: ``steps`` optimiser steps with a cosine learning-rate decay."""

    steps: int = 100
    lr: float = 0.01
    batch_size: int = 64
    momentum: float = 0.9
    weight_decay: float = 5e-4

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size < 1 or self.lr <= 0:
            raise PrunetuneError(
                f"training recipe needs steps >= 0, batch_size >= 1 and lr > 0; got {self}"
            )


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(model: nn.Module, device: torch.device) -> nn.Module:
    """Move ``model`` to ``device``; channels-last on CUDA, where convs run faster in it."""
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def batch_indices(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless shuffled minibatch indices, reshuffled every epoch."""
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - batch_size + 1 if n >= batch_size else 1, batch_size):
            yield order[start : start + batch_size]


def make_optimizer(model: nn.Module, recipe: Recipe) -> tuple[torch.optim.Optimizer, object]:
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=recipe.lr,
        momentum=recipe.momentum,
        weight_decay=recipe.weight_decay,
        nesterov=recipe.momentum > 0,
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, recipe.steps))
    return optimizer, scheduler


def train_steps(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    recipe: Recipe,
    *,
    seed: int = 0,
    start: int = 0,
    stop: int | None = None,
    optimizer: tuple[torch.optim.Optimizer, object] | None = None,
    progress=None,
) -> float:
    """Run optimiser steps ``start..stop`` of ``recipe`` on ``(x, y)``; return the last loss.

    ``x``/``y`` already live on the model's device. Passing ``start``/``stop`` and the same
    ``optimizer`` pair lets a caller train in chunks (to checkpoint between them) with results
    identical to one call: the batch order depends only on ``seed`` and the step number.
    Raises :class:`DivergedError` on a non-finite loss.
    """
    stop = recipe.steps if stop is None else stop
    if stop <= start:
        return float("nan")
    device = x.device
    optimizer, scheduler = optimizer or make_optimizer(model, recipe)
    generator = torch.Generator().manual_seed(seed)
    batches = batch_indices(len(x), min(recipe.batch_size, len(x)), generator)
    for _ in range(start):  # replay the batch order up to ``start``
        next(batches)
    model.train()
    loss_value = float("nan")
    for step in range(start, stop):
        idx = next(batches).to(device)
        with _autocast(device):
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise DivergedError(f"fine-tune diverged: loss is {loss_value} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{loss_value:.3f}")
    return loss_value


@torch.inference_mode()
def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512
) -> tuple[float, float]:
    """Top-1 accuracy (0..1) and mean cross-entropy of ``model`` on ``(x, y)``."""
    model.eval()
    correct, loss_sum = 0, 0.0
    for start in range(0, len(x), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        with _autocast(x.device):
            logits = model(xb)
        loss_sum += nn.functional.cross_entropy(logits.float(), yb, reduction="sum").item()
        correct += (logits.argmax(1) == yb).sum().item()
    return correct / max(1, len(x)), loss_sum / max(1, len(x))


def train_base(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    recipe: Recipe,
    *,
    seed: int = 0,
    show_progress: bool = True,
) -> float:
    """Train the dense base model for ``recipe.steps`` steps with a progress bar."""
    from tqdm.auto import tqdm

    # Redraw at most every 2 s when the output is a log file rather than a terminal.
    interval = 0.1 if sys.stderr.isatty() else 2.0
    with tqdm(total=recipe.steps, desc="training base model", disable=not show_progress, mininterval=interval) as bar:
        return train_steps(model, x, y, recipe, seed=seed, progress=bar)
