"""Channel pruning with a tapering resource constraint (the tapering paper, arXiv:1812.07060), as one Tune trainable.

One run fine-tunes the dense model while the cost allowed to it is lowered step by step, and
leaves a real pruned model at every requested budget level on the way down: the whole frontier.
The paper publishes the idea but not the details; the choices below are ours (docs/taper.md):

- **Gates.** One gate ``g = sigmoid(theta)`` per channel of every coupled group
  (:mod:`prunetune.trainables.gates`), trained by their own optimiser (SGD with momentum by default; Adam
  moves every gate at the same speed and drops whole layers at once), apart from the weights'
  SGD. The forward pass uses the hard gate ``theta > 0`` (straight-through gradient), so the
  network that trains is always a pruned network and hardening it loses little.
- **Constraint.** ``c(g) = M(g) / M(1) = R(t)``: the analytic cost at the gates' channel counts,
  relative to dense. Loss ``task + lambda * (c - R) + penalty / 2 * (c - R)^2`` (an augmented
  Lagrangian: the quadratic term damps dual ascent's oscillation); after every step
  ``lambda += dual_lr * (c - R)`` (an equality constraint: lambda may go negative).
- **Taper.** ``R(0)`` is the cost of the initial gates, ``R(t+1) = R(t) - rate``. Every
  ``control_every`` steps a :class:`TaperController` compares the rise per step of the held-out
  loss (an EMA of the loss on ``holdout`` validation samples) with ``tolerance``: faster, and the
  rate is multiplied by ``slow_factor``; otherwise by ``speed_factor``; clamped to
  ``[min_rate, max_rate]``.
- **Hardening.** When R crosses a level, the channels are taken in descending gate order (each
  group first keeps its ``min_channels`` best) and added while the analytic cost stays within the
  level; a channel that does not fit is skipped. A copy of the model is pruned by torch-pruning
  with ``sigmoid(theta)`` as the channel scores (not L1), so it computes what the gated model
  computes with that mask. It is fine-tuned
  for ``finetune_steps`` and reported like a searched profile. If ``max_steps`` runs out first,
  the remaining levels are hardened from the gates as they are.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import ClassVar, Literal

import torch
from pydantic import Field, field_validator
from torch import nn

from prunetune.budgets import Budget
from prunetune.budgets import report as R
from prunetune.budgets.analytic import AnalyticCostModel
from prunetune.trainables.data.feed import TensorData, TrialData, as_data
from prunetune.trainables.gates import GroupGates, SoftCost, gate_points
from prunetune.trainables.groups import PruneSettings, apply_profile, find_groups
from prunetune.trainables.profiles import Profile, ProfileError
from prunetune.trainables.structure import extract_cost_model
from prunetune.trainables.train import (
    DivergedError,
    EvalSettings,
    Recipe,
    Settings,
    evaluate,
    recalibrate_bn,
    to_device,
    train_batches,
)

TAPER_STATE = "taper.json"
TAPER_TENSORS = "taper.pt"


class TaperSettings(Settings):
    """The taper method's options: the search config's ``taper`` section is a subclass (adding
    ``sweep``). ``lr`` and ``finetune_steps`` None: the fine-tune recipe's. ``levels`` are kept
    distinct and in descending order."""

    label: ClassVar[str] = "taper settings"
    cost: Literal["macs", "params"] = "macs"
    levels: tuple[float, ...] = (0.75, 0.5, 0.3)
    rate: float = Field(0.002, gt=0, lt=1)
    min_rate: float = Field(0.0002, gt=0, lt=1)
    max_rate: float = Field(0.02, gt=0, lt=1)
    control_every: int = Field(20, ge=1)
    tolerance: float = Field(0.002, ge=0)
    slow_factor: float = Field(0.5, gt=0, le=1)
    speed_factor: float = Field(1.25, ge=1)
    ema: float = Field(0.5, ge=0, lt=1)
    holdout: int = Field(256, ge=1)
    gate_optimizer: Literal["sgd", "adam"] = "sgd"
    gate_lr: float = Field(5.0, gt=0)
    # Near the threshold: from 3.0 the hard cost cannot move for ~60 steps while the multiplier
    # winds up, and then whole expensive groups cross zero together (issue 25).
    gate_init: float = Field(0.5, gt=0)
    dual_lr: float = Field(0.2, ge=0)
    penalty: float = Field(20.0, ge=0)
    lr: float | None = Field(None, gt=0)
    finetune_steps: int | None = Field(None, ge=0)
    max_steps: int = Field(5000, ge=1)

    @field_validator("levels")
    @classmethod
    def _fractions(cls, levels: tuple[float, ...]) -> tuple[float, ...]:
        if not levels or not all(0 < v < 1 for v in levels):
            raise ValueError("levels are fractions of the dense cost in (0, 1), e.g. [0.75, 0.5, 0.3]")
        return tuple(sorted(set(levels), reverse=True))


@dataclass
class TaperController:
    """Our taper-rate law: slow down while the held-out loss rises faster than ``tolerance``.

    :meth:`observe` is called every ``every`` steps with the held-out loss; it keeps an EMA
    (weight ``beta`` on the past) and compares its rise per step since the last call with
    ``tolerance``. The first call only sets the reference.
    """

    rate: float
    min_rate: float
    max_rate: float
    tolerance: float
    slow_factor: float
    speed_factor: float
    beta: float
    every: int
    smoothed: float | None = None
    previous: float | None = None

    @classmethod
    def from_settings(cls, s: TaperSettings) -> TaperController:
        return cls(s.rate, s.min_rate, s.max_rate, s.tolerance, s.slow_factor, s.speed_factor, s.ema, s.control_every)

    def observe(self, loss: float) -> float:
        """Fold in one held-out loss; return the (possibly changed) taper rate."""
        self.smoothed = loss if self.smoothed is None else self.beta * self.smoothed + (1 - self.beta) * loss
        if self.previous is not None:
            rise = (self.smoothed - self.previous) / self.every
            factor = self.slow_factor if rise > self.tolerance else self.speed_factor
            self.rate = min(self.max_rate, max(self.min_rate, self.rate * factor))
        self.previous = self.smoothed
        return self.rate


@dataclass
class Multiplier:
    """The Lagrange multiplier of ``c(g) = R``, updated by dual ascent on the violation."""

    step_size: float
    value: float = 0.0

    def update(self, violation: float) -> float:
        self.value += self.step_size * violation
        return self.value


@dataclass
class TaperState:
    """Everything besides tensors that a resumed run needs."""

    step: int = 0
    start: float = 1.0
    target: float = 1.0
    levels_done: int = 0
    controller: dict = field(default_factory=dict)
    multiplier: float = 0.0


@dataclass(frozen=True)
class Hardened:
    """One frontier point as hardened from the gates (before its fine-tune)."""

    level: float
    model: nn.Module
    profile: Profile
    kept: dict[str, int]
    gated_cost: float
    live_cost: float
    step: int
    target: float
    multiplier: float
    rate: float


def _gate_optimizer(settings: TaperSettings, parameters) -> torch.optim.Optimizer:
    """The gates' own optimiser. SGD (momentum 0.9) by default: its steps scale with each gate's
    gradient, so gates whose cost outweighs their use fall first; Adam's per-parameter
    normalisation moves every gate at about the same speed and prunes whole layers at once."""
    if settings.gate_optimizer == "adam":
        return torch.optim.Adam(parameters, lr=settings.gate_lr)
    if settings.gate_optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=settings.gate_lr, momentum=0.9)
    raise ProfileError(f"taper gate_optimizer {settings.gate_optimizer!r} is unknown; use 'sgd' or 'adam'")


def floor_channels(channels: int, prune: PruneSettings) -> int:
    """The fewest channels a group of ``channels`` keeps: ``min_channels`` rounded up to a unit
    of ``round_to`` (at least one unit). Hardening keeps them, and so do the live gates."""
    unit = prune.round_to
    return min(channels, max(unit, math.ceil(prune.min_channels / unit) * unit))


def harden_counts(
    gates: Mapping[str, torch.Tensor], cost_model: AnalyticCostModel, cost: str, limit: float, prune: PruneSettings
) -> dict[str, int]:
    """Channels per group kept when hardening at ``limit``: descending gate order, each group's
    ``min_channels`` first, adding units of ``round_to`` channels while the cost stays within
    ``limit`` (a unit that does not fit is skipped; cheaper ones after it may still fit)."""
    kept, candidates = {}, []
    for name, values in gates.items():
        order = torch.sort(values.detach().cpu(), descending=True, stable=True).values
        channels, unit = len(order), prune.round_to
        kept[name] = floor_channels(channels, prune)
        for stop in range(kept[name] + unit, channels + unit, unit):
            candidates.append((float(order[min(stop, channels) - 1]), name, min(stop, channels)))
    for _, name, stop in sorted(candidates, key=lambda c: -c[0]):
        if stop - kept[name] > prune.round_to or stop <= kept[name]:
            continue  # an earlier unit of this group was skipped: keep groups contiguous
        trial = {**kept, name: stop}
        if cost_model.evaluate(trial)[cost] <= limit:
            kept = trial
    return kept


def hard_mask(values: torch.Tensor, keep: int) -> torch.Tensor:
    """1 for the ``keep`` highest gates (ties: the later index wins, as the pruner drops the
    earlier), else 0: the channels ``apply_profile`` keeps with these gates as scores."""
    mask = torch.ones_like(values)
    mask[torch.argsort(values.detach(), stable=True)[: len(values) - keep]] = 0.0
    return mask


class TaperRun:
    """The taper loop on one model: gates, both optimisers, the multiplier and the controller.

    ``model`` (already on its device) is trained in place. :meth:`points` runs steps and yields
    a :class:`Hardened` point as R crosses each level; :meth:`save`/:meth:`load` checkpoint the
    whole state between points, so a resumed run continues exactly where it stopped.
    """

    def __init__(
        self,
        model: nn.Module,
        settings: TaperSettings,
        recipe: Recipe,
        prune: PruneSettings,
        data: TrialData | TensorData | tuple[torch.Tensor, ...],
        example_input: torch.Tensor,
        seed: int = 0,
    ) -> None:
        self.model, self.settings, self.recipe, self.prune, self.seed = model, settings, recipe, prune, seed
        self.data = as_data(data)
        self.holdout = next(self.data.eval_batches("val", settings.holdout))
        self.example_input = example_input
        device = next(model.parameters()).device
        cpu_model = copy.deepcopy(model).cpu()
        groups = find_groups(cpu_model, example_input)
        self.cost_model = extract_cost_model(cpu_model, example_input)
        self.cost = SoftCost(self.cost_model, settings.cost)
        self.gates = GroupGates(groups, gate_points(cpu_model, example_input, groups), settings.gate_init).to(device)
        self.gates.attach(model)
        self.floors = {g.name: floor_channels(g.channels, prune) for g in groups}
        lr = settings.lr or recipe.lr
        self.weights_opt = torch.optim.SGD(
            model.parameters(),
            lr=lr,
            momentum=recipe.momentum,
            weight_decay=recipe.weight_decay,
            nesterov=recipe.momentum > 0,
        )
        self.gates_opt = _gate_optimizer(settings, self.gates.parameters())
        self.controller = TaperController.from_settings(settings)
        self.multiplier = Multiplier(settings.dual_lr)
        start = self.relative_cost().item()
        self.state = TaperState(start=start, target=start)

    def relative_cost(self, values: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """``M(g) / M(1)``: the gated model's cost relative to dense (differentiable)."""
        return self.cost(self.gates.counts(values)) / self.cost.dense

    def points(self) -> Iterator[Hardened]:
        """Run the taper, yielding each level's hardened model as R crosses it."""
        levels = self.settings.levels
        batches = self._batches()
        while self.state.levels_done < len(levels):
            level = levels[self.state.levels_done]
            if self.state.target > level and self.state.step < self.settings.max_steps:
                self._step(next(batches))
                continue
            hardened = self.harden(level)
            self.state.levels_done += 1
            yield hardened

    def _batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # from the resumed step on: the data replays its order up to it
        return self.data.train_batches(self.recipe.batch_size, self.seed, self.state.step)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        state, settings = self.state, self.settings
        self.model.train()
        x, y = batch
        violation = self.relative_cost().float() - state.target
        task = nn.functional.cross_entropy(self.model(x), y)
        if not math.isfinite(task.item()):
            raise DivergedError(f"taper diverged: loss is {task.item()} at step {state.step}")
        constraint = self.multiplier.value * violation + 0.5 * settings.penalty * violation**2
        loss = task + constraint
        self.weights_opt.zero_grad(set_to_none=True)
        self.gates_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.weights_opt.step()
        self.gates_opt.step()
        self.gates.keep_on(self.floors)
        self.multiplier.update(violation.item())
        state.step += 1
        state.target = max(0.0, state.target - self.controller.rate)
        if state.step % settings.control_every == 0:
            _, held_out = evaluate(self.model, *self.holdout)
            self.controller.observe(held_out)

    def harden(self, level: float) -> Hardened:
        """The real pruned model at ``level`` (a fraction of dense cost) from the current gates."""
        values = {k: v.cpu() for k, v in self.gates.soft_values().items()}
        kept = harden_counts(values, self.cost_model, self.settings.cost, level * self.cost.dense, self.prune)
        masks = {name: hard_mask(v, kept[name]) for name, v in values.items()}
        self.gates.detach_hooks()  # hooks must not travel into the copy
        pruned = copy.deepcopy(self.model).cpu()
        self.gates.attach(self.model)
        ratios = {name: k / len(values[name]) for name, k in kept.items()}
        profile = Profile(ratios)
        apply_profile(pruned, profile, self.example_input, self.prune, scores=values)
        return Hardened(
            level=level,
            model=pruned,
            profile=profile,
            kept=kept,
            gated_cost=self.cost(self.gates.counts(masks)).item(),
            live_cost=self.relative_cost().item(),
            step=self.state.step,
            target=self.state.target,
            multiplier=self.multiplier.value,
            rate=self.controller.rate,
        )

    def save(self, directory: Path) -> None:
        """Write the run's state (tensors and counters) into ``directory``."""
        state = replace(self.state, controller=asdict(self.controller), multiplier=self.multiplier.value)
        (directory / TAPER_STATE).write_text(json.dumps(asdict(state)))
        tensors = {
            "model": self.model.state_dict(),
            "gates": self.gates.state_dict(),
            "weights_opt": self.weights_opt.state_dict(),
            "gates_opt": self.gates_opt.state_dict(),
        }
        torch.save(tensors, directory / TAPER_TENSORS)

    def load(self, directory: Path) -> None:
        """Continue from what :meth:`save` wrote."""
        device = next(self.model.parameters()).device
        tensors = torch.load(directory / TAPER_TENSORS, map_location=device, weights_only=True)
        self.model.load_state_dict(tensors["model"])
        self.gates.load_state_dict(tensors["gates"])
        self.weights_opt.load_state_dict(tensors["weights_opt"])
        self.gates_opt.load_state_dict(tensors["gates_opt"])
        self.state = TaperState(**json.loads((directory / TAPER_STATE).read_text()))
        self.controller = TaperController(**self.state.controller)
        self.multiplier = Multiplier(self.settings.dual_lr, self.state.multiplier)


def level_budgets(budgets: tuple[Budget, ...], cost: str, level: float) -> tuple[Budget, ...]:
    """The budgets a point at ``level`` is checked against: the search's budgets, with the one
    on the taper's cost (if any) replaced by ``cost <= level * dense``."""
    others = tuple(b for b in budgets if b.cost != cost or b.options)
    return (Budget(cost=cost, max=level, relative=True), *others)


def finetune_point(
    hardened: Hardened,
    recipe: Recipe,
    data: TrialData | TensorData | tuple[torch.Tensor, ...],
    measure: Callable[[nn.Module], dict],
    cost: str,
    seed: int = 0,
    calibration: EvalSettings | None = None,
) -> tuple[nn.Module, dict]:
    """Fine-tune a hardened model for ``recipe.steps`` and measure it; the metrics a searched
    trial reports (via ``measure``) plus the taper's own: level, the gated ``cost``, the run's state.
    ``calibration`` re-estimates BatchNorm statistics first, as a searched trial does."""
    data = as_data(data)
    model = to_device(hardened.model, data.device)
    if calibration is not None:
        recalibrate_bn(model, data.sample(calibration.images())[0], calibration, seed=seed)
    accuracy_pruned, _ = evaluate(model, data.eval_batches("val"))
    train_batches(model, data.train_batches(recipe.batch_size, seed), recipe)
    model = model.cpu()
    metrics = measure(model)
    metrics.update(
        {
            R.ACCURACY_PRUNED: accuracy_pruned,
            R.FINETUNE_STEPS: recipe.steps,
            R.LEVEL: hardened.level,
            R.gated_key(cost): hardened.gated_cost,
            R.TAPER_COST: hardened.live_cost,
            R.TAPER_STEP: hardened.step,
            R.TAPER_TARGET: hardened.target,
            R.TAPER_LAMBDA: hardened.multiplier,
            R.TAPER_RATE: hardened.rate,
        }
    )
    return model, metrics
