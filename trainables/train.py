"""Training, fine-tuning and evaluation.

Split like torchvision's reference script: :func:`train_batches` (the loop, over a trial's
batch stream, see ``prunetune.trainables.data``), :func:`train_steps` (the same over in-memory
tensors), :func:`evaluate`, :func:`train_base` (the dense model, with a progress bar). On CUDA
the step runs in bfloat16 autocast with channels-last memory, which needs no loss scaler.

:class:`Settings` is the base of every option set a trial reads (:class:`Recipe` here,
``PruneSettings``, ``TaperSettings``): frozen pydantic models that the search config subclasses,
so each option, its default and its constraint are defined once.
"""

from __future__ import annotations

import contextlib
import functools
import math
import sys
from collections.abc import Iterable, Iterator
from typing import Annotated, Any, ClassVar, Self

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from prunetune.budgets.errors import ConfigError


class DivergedError(RuntimeError):
    """The loss became NaN or infinite; the trial ends with this reason."""


class Settings(BaseModel):
    """Frozen, validated options (hashable and picklable: they travel to Ray workers).

    Built in Python, ``Settings(...)`` takes the fields by keyword or in declaration order and
    raises a one-line :class:`ConfigError` for a bad value. Validated from a mapping (a search
    config section, ``model_validate``) it raises pydantic's ``ValidationError``, which keeps
    the key's location for the config's own message. ``label`` names the set in messages.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    label: ClassVar[str] = "settings"

    def __init__(self, *args: Any, **values: Any) -> None:
        names = list(type(self).model_fields)
        if len(args) > len(names):
            raise TypeError(f"{type(self).__name__} takes at most {len(names)} positional arguments, got {len(args)}")
        for name, value in zip(names, args):
            if name in values:
                raise TypeError(f"{type(self).__name__} got two values for {name!r}")
            values[name] = value
        try:
            super().__init__(**values)
        except ValidationError as err:
            raise ConfigError(self._one_line(err)) from None

    # Tell pydantic this __init__ only maps arguments (as RootModel's does): validating nested
    # data (a config section) then skips it and reports errors with their location.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @classmethod
    def _one_line(cls, err: ValidationError) -> str:
        error = err.errors()[0]
        key = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            return f"{cls.label} has no option {key!r}; valid options: {', '.join(cls.model_fields)}"
        message = error["msg"].removeprefix("Value error, ")
        if not key:
            return f"{cls.label}: {message}"
        return f"{cls.label} option {key!r}: {message} (got {error.get('input')!r})"

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes``, validated again (pydantic's ``model_copy`` does not validate)."""
        return type(self)(**{**self.model_dump(), **changes})


# Constraints shared by the trainables' recipe and the config sections that change its defaults.
Steps = Annotated[int, Field(ge=0)]
LearningRate = Annotated[float, Field(gt=0, allow_inf_nan=False)]  # .inf/.nan would train to NaN
BatchSize = Annotated[int, Field(ge=1)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class Distill(Settings):
    """Knowledge distillation from the dense base model (Hinton et al., 2015): the loss is
    ``(1 - alpha) * cross_entropy + alpha * T^2 * KL(teacher_T || student_T)``, both soft
    distributions at ``temperature`` T."""

    label: ClassVar[str] = "distill"
    alpha: float = Field(0.5, ge=0, le=1)
    temperature: float = Field(4.0, gt=0, allow_inf_nan=False)


class Recipe(Settings):
    """An SGD recipe: ``steps`` optimiser steps with a cosine learning-rate decay, after
    ``warmup`` steps of linear warm-up; ``label_smoothing`` for the cross-entropy; ``distill``
    to learn from the dense model as well as the labels (fine-tunes only: the base has no teacher).

    The search config's ``finetune`` and ``base`` sections are subclasses with their own defaults.
    """

    label: ClassVar[str] = "training recipe"
    steps: Steps = 100
    lr: LearningRate = 0.01
    batch_size: BatchSize = 64
    momentum: NonNegative = 0.9
    weight_decay: NonNegative = 5e-4
    warmup: Steps = 0
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    distill: Distill | None = None

    def as_recipe(self) -> Recipe:
        """Just the recipe (a subclass's extra fields dropped): what names a trained base."""
        return Recipe(**{name: getattr(self, name) for name in Recipe.model_fields})


class EvalSettings(Settings):
    """How a pruned model is evaluated (the search config's ``evaluate`` section).

    ``recalibrate_bn``: batches of training images run through the pruned model in train mode,
    without gradients, after BatchNorm's running statistics are reset (EagleEye's adaptive-BN
    evaluation, ECCV 2020); 0 turns it off. Removing channels shifts every later layer's
    activation statistics, so the dense model's running means and variances no longer fit;
    re-estimating them is a few forward passes. ``batch_size`` is the size of those batches.
    """

    label: ClassVar[str] = "evaluate"
    recalibrate_bn: Steps = 20
    batch_size: BatchSize = 64
    # Validation images a trial evaluates on: a fixed seeded subset (None: the whole split).
    # Confirmation and the base model always use whole splits. See BENCHMARKS.md for the default.
    val_images: int | None = Field(2000, ge=1)

    def images(self) -> int:
        """Training images the BatchNorm recalibration draws its batches from."""
        return max(1, self.recalibrate_bn * self.batch_size)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, x: torch.Tensor, settings: EvalSettings, *, seed: int = 0) -> int:
    """Re-estimate every BatchNorm layer's running statistics of ``model`` from
    ``settings.recalibrate_bn`` seeded batches of ``x`` (on the model's device); returns the
    number of batches run (0: nothing changed, e.g. no BatchNorm or the setting is 0).

    The statistics are the plain average over the batches (``momentum=None``), not an
    exponential one, so a few batches give a stable estimate. Leaves the model in eval mode.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms or settings.recalibrate_bn == 0:
        return 0
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    generator = torch.Generator().manual_seed(seed)
    batches = batch_indices(len(x), min(settings.batch_size, len(x)), generator)
    model.train()
    for _ in range(settings.recalibrate_bn):
        with _autocast(x.device):
            model(x[next(batches).to(x.device)])
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.eval()
    return settings.recalibrate_bn


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


def steps_per_epoch(train_size: int, batch_size: int) -> int:
    """Optimiser steps that see each training example once (the last partial batch dropped,
    as :func:`batch_indices` drops it)."""
    return max(1, train_size // min(batch_size, train_size))


def seeded_batches(n: int, batch_size: int, seed: int, start: int = 0) -> Iterator[torch.Tensor]:
    """:func:`batch_indices` for ``seed`` (batches of at most ``n``) from batch ``start`` on: the
    order is replayed up to ``start``, so batch ``k`` is the same whatever ``start`` (a resumed
    fine-tune sees the batches an uninterrupted one would have)."""
    order = batch_indices(n, min(batch_size, n), torch.Generator().manual_seed(seed))
    for _ in range(start):
        next(order)
    return order


def make_optimizer(
    model: nn.Module, recipe: Recipe
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """SGD over ``model``'s parameters (Nesterov when there is momentum) and its cosine decay
    over ``recipe.steps`` steps: the pair :func:`train_steps` steps and a trial checkpoints."""
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=recipe.lr,
        momentum=recipe.momentum,
        weight_decay=recipe.weight_decay,
        nesterov=recipe.momentum > 0,
    )
    if recipe.warmup == 0:  # the schedule of checkpoints written before warm-up existed, unchanged
        return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, recipe.steps))
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, functools.partial(lr_factor, recipe))


def lr_factor(recipe: Recipe, step: int) -> float:
    """The learning rate at ``step`` as a fraction of ``recipe.lr``: a linear rise over
    ``warmup`` steps (1/warmup at step 0, reaching 1 at step ``warmup``), then a cosine decay
    to 0 at ``steps``."""
    if step < recipe.warmup:
        return (step + 1) / recipe.warmup
    decay = max(1, recipe.steps - recipe.warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - recipe.warmup) / decay)))


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
    """Run optimiser steps ``start..stop`` of ``recipe`` on in-memory tensors ``(x, y)`` (on the
    model's device, used as they are: no augmentation); return the last loss.

    Passing ``start``/``stop`` and the same ``optimizer`` pair lets a caller train in chunks
    with results identical to one call: the batch order depends only on ``seed`` and the step.
    """
    order = seeded_batches(len(x), recipe.batch_size, seed, start)
    batches = ((x[idx], y[idx]) for idx in (i.to(x.device) for i in order))
    return train_batches(model, batches, recipe, start=start, stop=stop, optimizer=optimizer, progress=progress)


def train_batches(
    model: nn.Module,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    recipe: Recipe,
    *,
    start: int = 0,
    stop: int | None = None,
    optimizer: tuple[torch.optim.Optimizer, object] | None = None,
    progress=None,
    teacher: nn.Module | None = None,
) -> float:
    """Run optimiser steps ``start..stop`` of ``recipe``, one batch of ``batches`` (already on
    the model's device, e.g. a trial's augmented stream) each; return the last loss.
    ``teacher`` (in eval mode, on the same device) is what ``recipe.distill`` learns from.

    Raises :class:`DivergedError` on a non-finite loss.
    """
    stop = recipe.steps if stop is None else stop
    if stop <= start:
        return float("nan")
    optimizer, scheduler = optimizer or make_optimizer(model, recipe)
    model.train()
    loss_value = float("nan")
    for step in range(start, stop):
        xb, yb = next(batches)
        with _autocast(xb.device):
            logits = model(xb)
            loss = nn.functional.cross_entropy(logits, yb, label_smoothing=recipe.label_smoothing)
            if recipe.distill is not None and teacher is not None:
                loss = distilled(loss, logits, teacher, xb, recipe.distill)
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


def distilled(task: torch.Tensor, logits: torch.Tensor, teacher: nn.Module, x: torch.Tensor, settings: Distill):
    """``task`` (the label loss) blended with the KL divergence from ``teacher``'s softened
    predictions on ``x``, scaled by T^2 so its gradients keep their size across temperatures."""
    with torch.no_grad():
        target = nn.functional.log_softmax(teacher(x).float() / settings.temperature, dim=1)
    student = nn.functional.log_softmax(logits.float() / settings.temperature, dim=1)
    soft = nn.functional.kl_div(student, target, log_target=True, reduction="batchmean")
    return (1 - settings.alpha) * task + settings.alpha * settings.temperature**2 * soft


@torch.inference_mode()
def evaluate(
    model: nn.Module, x: torch.Tensor | Iterable[tuple[torch.Tensor, torch.Tensor]], y=None, batch_size: int = 512
) -> tuple[float, float]:
    """Top-1 accuracy (0..1) and mean cross-entropy of ``model`` on tensors ``(x, y)`` or on
    ``x``, an iterable of ``(images, labels)`` batches (``y`` None)."""
    batches = x if y is None else _slices(x, y, batch_size)
    model.eval()
    correct, loss_sum, count = 0, 0.0, 0
    for xb, yb in batches:
        with _autocast(xb.device):
            logits = model(xb)
        loss_sum += nn.functional.cross_entropy(logits.float(), yb, reduction="sum").item()
        correct += (logits.argmax(1) == yb).sum().item()
        count += len(yb)
    return correct / max(1, count), loss_sum / max(1, count)


def _slices(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for start in range(0, len(x), batch_size):
        yield x[start : start + batch_size], y[start : start + batch_size]


def train_base(
    model: nn.Module,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    recipe: Recipe,
    *,
    show_progress: bool = True,
) -> float:
    """Train the dense base model for ``recipe.steps`` steps of ``batches``, showing progress
    on stderr: a bar on a terminal, a plain line at each quarter of the steps in a log file or CI."""
    if not show_progress:
        return train_batches(model, batches, recipe)
    if not sys.stderr.isatty():
        return train_batches(model, batches, recipe, progress=PlainProgress(recipe.steps, "training base model"))
    from tqdm.auto import tqdm

    with tqdm(total=recipe.steps, desc="training base model", mininterval=0.1) as bar:
        return train_batches(model, batches, recipe, progress=bar)


class PlainProgress:
    """A progress report for logs: one line on stderr when 25, 50, 75 and 100% of ``total``
    steps are done, with the latest postfix (the loss). Duck-types the part of tqdm that
    :func:`train_steps` calls (``update`` then ``set_postfix``)."""

    def __init__(self, total: int, description: str, parts: int = 4) -> None:
        self.total, self.description = total, description
        self.marks = sorted({math.ceil(total * i / parts) for i in range(1, parts + 1)})
        self.done = 0
        self._due: int | None = None

    def update(self, n: int = 1) -> None:
        before, self.done = self.done, self.done + n
        if any(before < mark <= self.done for mark in self.marks):
            self._due = self.done

    def set_postfix(self, **values: object) -> None:
        if self._due is None:
            return
        extra = "".join(f", {key} {value}" for key, value in values.items())
        print(
            f"{self.description}: {self._due / self.total:.0%} ({self._due}/{self.total} steps){extra}",
            file=sys.stderr,
            flush=True,
        )
        self._due = None
