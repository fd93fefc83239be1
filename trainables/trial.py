"""What one Tune trial does: prune the base model to a profile, fine-tune, evaluate, report.

:func:`prune_and_finetune` is the Ray Tune function trainable. Its ``config`` carries what the
searcher chose (``profile``, optionally ``finetune_steps``); everything fixed for the search
travels once in a :class:`TrialSetup` through ``tune.with_parameters`` (Ray's object store), not
in every trial's config. It reports accuracy, loss, every cost, which budgets are met, and a
checkpoint (profile, pruned weights, optimiser and LR-scheduler state) from which a retried
trial continues its fine-tune exactly, or the model is exported.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from prunetune.budgets import DEFAULT_COSTS, Budget, check_budgets, cost_functions, measure_costs, measure_intervals
from prunetune.budgets import report as R
from prunetune.trainables.base import DataSpec, ModelSpec, build, load_base
from prunetune.trainables.data.feed import TensorData, TrialData
from prunetune.trainables.groups import PruneSettings, PruningStructure, apply_profile
from prunetune.trainables.meter import measure_elsewhere
from prunetune.trainables.profiles import Profile
from prunetune.trainables.train import (
    EvalSettings,
    Recipe,
    evaluate,
    make_optimizer,
    recalibrate_bn,
    steps_per_epoch,
    to_device,
    train_batches,
)

PROFILE_FILE = "profile.json"
WEIGHTS_FILE = "model.pt"
STATE_FILE = "state.json"
OPTIM_FILE = "optim.pt"

OptimizerPair = tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]


@dataclass(frozen=True)
class TrialSetup:
    """Everything a trial needs that is the same for the whole search."""

    model: ModelSpec
    data: DataSpec
    base_checkpoint: str
    prune: PruneSettings = PruneSettings()
    finetune: Recipe = Recipe()
    budgets: tuple[Budget, ...] = ()
    seed: int = 0
    checkpoint_every: int = 0
    extra_costs: tuple[str, ...] = field(default=DEFAULT_COSTS)
    evaluate: EvalSettings = EvalSettings()
    # Report (with a checkpoint) every this many fine-tune steps, so a scheduler such as ASHA
    # can compare and stop trials at its rungs; 0: report at checkpoint_every and the end only.
    report_every: int = 0
    # Several base models of one architecture (the out-of-the-box profiles paper's multi-model
    # search): each trial also prunes, fine-tunes and evaluates its profile on every one of
    # ``others`` and reports the mean accuracy; ``label`` names a base's ``accuracy/<label>`` metric.
    label: str = ""
    others: tuple[TrialSetup, ...] = ()

    def open_data(self, device: torch.device) -> TrialData:
        """The data set as this search's trials read it on ``device`` (once per worker process:
        a node-cache mapping or a stream, see ``prunetune.trainables.data.feed``)."""
        return self.data.open(self.model.input_size, str(device), self.evaluate.val_images)

    def cost_functions(self) -> dict[str, object]:
        """Cost functions by metric key: the default costs plus one per budget."""
        return cost_functions(self.budgets, defaults=self.extra_costs)


def trial_device() -> torch.device:
    """The GPU Ray assigned this trial (Ray sets CUDA_VISIBLE_DEVICES), else the CPU."""
    import ray

    if ray.is_initialized() and ray.get_gpu_ids() and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def example_input(setup: TrialSetup) -> torch.Tensor:
    return example_of(setup.model)


def example_of(model: ModelSpec) -> torch.Tensor:
    """The seeded example input of ``model``'s architecture (one 3-channel image at its input
    size) that costs and group tracing run on."""
    size = model.input_size
    return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))


def pruned_model(setup: TrialSetup, profile: Profile, num_classes: int, calibration=None) -> nn.Module:
    """The base model with ``profile`` applied (channels physically removed), on the CPU.

    A pruned copy of the worker's cached base structure (see :func:`base_structure`): the same
    result as loading the base and calling ``apply_profile``, without tracing it every trial;
    under a dense ranking the trial only selects the channels ranked once per worker.
    """
    structure = base_structure(setup.model, num_classes, setup.base_checkpoint)
    return structure.pruned_copy(profile, setup.prune, calibration=calibration)


def base_structure(model: ModelSpec, num_classes: int, checkpoint: str) -> PruningStructure:
    """The dense base model traced into a :class:`PruningStructure`, once per worker process
    (reused actors keep it between trials), so the checkpoint is read and traced once.

    Keyed by the model spec (architecture, width, input size), the class count and the
    checkpoint file (path and modification time); the prune settings do not change the graph.
    Callers take ``pruned_copy()`` (or prune a ``copy()``), never prune the cached structure itself.
    """
    stamp = os.path.getmtime(checkpoint) if os.path.isfile(checkpoint) else 0.0
    return _traced_base(model, num_classes, checkpoint, stamp)


@functools.lru_cache(maxsize=4)  # the search's base and up to three extra bases
def _traced_base(model: ModelSpec, num_classes: int, checkpoint: str, stamp: float) -> PruningStructure:
    return PruningStructure.trace(load_base(model, num_classes, checkpoint), example_of(model))


def rebuild_from_checkpoint(setup: TrialSetup, directory: str | Path, num_classes: int) -> nn.Module:
    """The exact pruned model saved in a trial checkpoint: structure from the profile, weights
    from the file. Which channels the criterion chose does not matter: weights are replaced."""
    directory = Path(directory)
    profile = Profile.from_json((directory / PROFILE_FILE).read_text())
    model = build(setup.model, num_classes)
    structural = setup.prune.replace(criterion="l1")
    apply_profile(model, profile, example_input(setup), structural)
    model.load_state_dict(torch.load(directory / WEIGHTS_FILE, map_location="cpu", weights_only=True))
    return model


def finetune_checkpoint(
    setup: TrialSetup,
    directory: str | Path,
    num_classes: int,
    epochs: int,
    *,
    label: str = "",
    show_progress: bool = True,
) -> tuple[nn.Module, Recipe, float, float]:
    """Continue the pruned model of a trial checkpoint for ``epochs`` whole epochs of the
    training set with the search's fine-tune recipe (one cosine decay over the whole run), on
    the GPU when there is one, with a progress bar; returns the model (on the CPU), the recipe
    it ran, and its validation accuracy and loss."""
    from tqdm.auto import tqdm

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = setup.data.open(setup.model.input_size, str(device))  # the whole validation split
    recipe = setup.finetune.replace(steps=epochs * steps_per_epoch(len(data), setup.finetune.batch_size))
    model = to_device(rebuild_from_checkpoint(setup, directory, num_classes), device)
    torch.manual_seed(setup.seed)
    interval = 0.1 if sys.stderr.isatty() else 2.0  # a log file gets a line every 2 s
    with tqdm(
        total=recipe.steps, desc=f"fine-tuning {label}".strip(), disable=not show_progress, mininterval=interval
    ) as bar:
        teacher = dense_teacher(setup, num_classes, device) if recipe.distill else None
        train_batches(model, data.train_batches(recipe.batch_size, setup.seed), recipe, progress=bar, teacher=teacher)
    accuracy, loss = evaluate(model, data.eval_batches("val"))
    return model.cpu(), recipe, accuracy, loss


_DENSE: dict[tuple, dict[str, float]] = {}


def _dense_costs(setup: TrialSetup, num_classes: int) -> dict[str, float]:
    """Costs of the dense model, measured once per worker process on the trial's device, or
    on the measuring node for a budget that names one (a relative latency budget compares
    against the dense latency measured the same way)."""
    costs = setup.cost_functions()
    key = (setup.base_checkpoint, setup.model, tuple(sorted(costs)))
    if key not in _DENSE:
        dense = load_base(setup.model, num_classes, setup.base_checkpoint)
        _DENSE[key] = measure_costs(dense, example_input(setup), costs, elsewhere=measure_elsewhere)
    return _DENSE[key]


def save_trial_checkpoint(
    directory: Path, model: nn.Module, profile: Profile, state: dict, optimizer: OptimizerPair | None = None
) -> None:
    """Write a trial checkpoint (profile.json, model.pt, state.json) into ``directory``; the
    layout :func:`rebuild_from_checkpoint` reads (``prunetune finetune`` writes it too).

    ``optimizer`` (the pair :func:`~prunetune.trainables.train.make_optimizer` returns) adds
    optim.pt: the optimiser's and the LR scheduler's ``state_dict``, so a retried trial
    continues its fine-tune exactly (:func:`resume_finetune`).
    """
    (directory / PROFILE_FILE).write_text(profile.to_json())
    torch.save(model.state_dict(), directory / WEIGHTS_FILE)
    (directory / STATE_FILE).write_text(json.dumps(state))
    if optimizer is not None:
        sgd, scheduler = optimizer
        torch.save({"optimizer": sgd.state_dict(), "lr_scheduler": scheduler.state_dict()}, directory / OPTIM_FILE)


def resume_finetune(
    model: nn.Module, recipe: Recipe, device: torch.device, checkpoint: Path | None = None
) -> tuple[nn.Module, OptimizerPair, dict]:
    """The pruned ``model`` on ``device``, its optimiser pair and the trial's state, ready to
    fine-tune: fresh (state ``{}``), or as a trial checkpoint left them (weights, optimiser
    and scheduler state, ``state["step"]`` steps done), so the continued fine-tune is the one
    an uninterrupted trial runs. ``model`` must have the checkpoint's structure (same profile).
    """
    state: dict = {}
    if checkpoint is not None:
        state = json.loads((checkpoint / STATE_FILE).read_text())
        model.load_state_dict(torch.load(checkpoint / WEIGHTS_FILE, map_location="cpu", weights_only=True))
    model = to_device(model, device)
    optimizer = make_optimizer(model, recipe)
    if checkpoint is None:
        return model, optimizer, state
    if (checkpoint / OPTIM_FILE).is_file():
        saved = torch.load(checkpoint / OPTIM_FILE, map_location="cpu", weights_only=True)
        optimizer[0].load_state_dict(saved["optimizer"])
        optimizer[1].load_state_dict(saved["lr_scheduler"])
    else:  # written before optim.pt existed: no momentum to restore, only the schedule's step
        for _ in range(state["step"]):
            optimizer[1].step()
    return model, optimizer, state


Report = Callable[[dict, Path], None]


@dataclass(frozen=True)
class Confirmation:
    """A confirmation trial: a profile found by the search, fine-tuned again from the base at
    full length with training seed ``seed`` and evaluated on the test split as well.
    ``source`` is the search trial that found the profile; a ``reference`` profile (e.g.
    ``"uniform"``) was not found by the search but placed beside it to be compared with."""

    source: str
    seed: int = 0
    reference: str | None = None

    @classmethod
    def from_config(cls, config: dict | None) -> Confirmation | None:
        if not config:
            return None
        return cls(str(config["source"]), int(config.get("seed", 0)), config.get(R.REFERENCE) or None)


def report_points(steps: int, start: int, *every: int) -> list[int]:
    """The fine-tune steps after ``start`` at which a trial of ``steps`` steps reports: every
    multiple of each non-zero period in ``every``, and the last step (0 for a 0-step trial)."""
    points = {steps}
    for period in every:
        if period:
            points.update(range(period, steps, period))
    return sorted(p for p in points if p > start or p == steps)


def run_trial(
    setup: TrialSetup,
    profile: Profile,
    report: Report,
    *,
    steps: int | None = None,
    resume: Path | None = None,
    confirm: Confirmation | None = None,
) -> None:
    """Prune ``setup``'s base model to ``profile``, recalibrate its BatchNorm statistics
    (``setup.evaluate``), fine-tune it for ``steps`` (None: the recipe's) and measure it,
    calling ``report(metrics, checkpoint_dir)`` every ``setup.report_every`` and
    ``setup.checkpoint_every`` steps and at the end (``metrics["done"]``).

    Every report carries the pruned model's costs and budget checks (they depend only on which
    channels are kept), so a trial a scheduler stops early is still a measured point; search
    trials also report ``rung_steps``, the schedulers' clock. A ``confirm`` trial trains with its
    own seed, reports only at checkpoints and the end (no rung: schedulers never stop it) and
    adds ``test/accuracy``. ``checkpoint_dir`` is a temporary trial checkpoint, deleted after
    ``report`` returns; ``resume`` is such a folder from an earlier report, from which the
    fine-tune continues. Works without Ray; :func:`prune_and_finetune` wraps it for Tune.
    """
    recipe = setup.finetune if steps is None else setup.finetune.replace(steps=steps)
    seed = setup.seed + (confirm.seed if confirm else 0)
    device = trial_device()
    torch.manual_seed(seed)
    data = setup.open_data(device)
    model = pruned_model(setup, profile, data.num_classes, calibration_batch(data))
    costs = _cost_metrics(setup, model, data.num_classes)
    model, optimizer, state = resume_finetune(model, recipe, device, resume)
    pruned_eval = None  # a 0-step trial reports it as its final accuracy: evaluated once
    if not state:
        recalibrate_bn(model, data.sample(setup.evaluate.images(), seed)[0], setup.evaluate, seed=seed)
        pruned_eval = evaluate(model, data.eval_batches("val"))
        state = {"step": 0, R.ACCURACY_PRUNED: pruned_eval[0]}
    start = state["step"]
    batches = data.train_batches(recipe.batch_size, seed, start)  # one stream for every report
    teacher = dense_teacher(setup, data.num_classes, device) if recipe.distill else None
    for stop in report_points(recipe.steps, start, setup.checkpoint_every, 0 if confirm else setup.report_every):
        train_batches(model, batches, recipe, start=start, stop=stop, optimizer=optimizer, teacher=teacher)
        start, done = stop, stop >= recipe.steps
        accuracy, loss = pruned_eval if stop == 0 else evaluate(model, data.eval_batches("val"))
        metrics = {R.ACCURACY: accuracy, R.LOSS: loss, **costs}
        if done and setup.others:
            metrics.update(mean_over_bases(setup, accuracy, profile, recipe, device))
        if done and confirm:
            metrics[R.TEST_ACCURACY], metrics[R.TEST_LOSS] = evaluate(model, data.eval_batches("test"))
            metrics[R.CONFIRMS] = confirm.source
            if confirm.reference:
                metrics[R.REFERENCE] = confirm.reference
        if not confirm:
            metrics[R.RUNG_STEPS] = stop
        state["step"] = stop
        metrics.update(
            {
                R.FINETUNE_STEPS: stop,
                R.ACCURACY_PRUNED: state[R.ACCURACY_PRUNED],
                R.DONE: done,
                R.NODE_ID: _node_id(),
                R.PEAK_MEMORY: peak_memory_mb(),
            }
        )
        with tempfile.TemporaryDirectory() as directory:
            save_trial_checkpoint(Path(directory), model.cpu() if done else model, profile, state, optimizer)
            report(metrics, Path(directory))
        if done:
            return


def prune_and_finetune(config: dict, setup: TrialSetup) -> None:
    """Ray Tune function trainable: one profile (``config["profile"]``, optionally
    ``config["finetune_steps"]`` and ``config["confirm"]``), pruned, fine-tuned and measured by
    :func:`run_trial`; a retried or restored trial continues from its latest checkpoint."""
    from ray import tune

    profile = Profile(config["profile"])
    steps = int(config.get(R.FINETUNE_STEPS, setup.finetune.steps))
    confirm = Confirmation.from_config(config.get("confirm"))

    def report(metrics: dict, directory: Path) -> None:
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(directory)))

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        run_trial(setup, profile, report, steps=steps, confirm=confirm)
        return
    with checkpoint.as_directory() as directory:
        run_trial(setup, profile, report, steps=steps, resume=Path(directory), confirm=confirm)


def accuracy_on(setup: TrialSetup, profile: Profile, recipe: Recipe, device: torch.device) -> float:
    """Validation accuracy of ``setup``'s base model pruned to ``profile`` and fine-tuned with
    ``recipe``: what a trial measures, on another base model (no checkpoint, no costs)."""
    torch.manual_seed(setup.seed)
    data = setup.open_data(device)
    model = to_device(pruned_model(setup, profile, data.num_classes, calibration_batch(data)), device)
    recalibrate_bn(model, data.sample(setup.evaluate.images(), setup.seed)[0], setup.evaluate, seed=setup.seed)
    teacher = dense_teacher(setup, data.num_classes, device) if recipe.distill else None
    train_batches(model, data.train_batches(recipe.batch_size, setup.seed), recipe, teacher=teacher)
    return evaluate(model, data.eval_batches("val"))[0]


def mean_over_bases(
    setup: TrialSetup, accuracy: float, profile: Profile, recipe: Recipe, device: torch.device
) -> dict[str, float]:
    """``accuracy/<label>`` for the search's base (``accuracy``, already measured) and each of
    ``setup.others``, and ``accuracy``: their mean, the figure searchers rank (the RL reward).
    Costs stay those of the search's base: same architecture, same channels kept."""
    per_base = {setup.label: accuracy}
    per_base.update({other.label: accuracy_on(other, profile, recipe, device) for other in setup.others})
    return {
        **{R.per_base_key(label): value for label, value in per_base.items()},
        R.ACCURACY: sum(per_base.values()) / len(per_base),
    }


def peak_memory_mb() -> float:
    """This process's peak resident memory in MiB (Linux reports it in KiB, macOS in bytes)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def _node_id() -> str:
    """The Ray node running this trial (several nodes may share one IP address)."""
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""


def dense_teacher(setup: TrialSetup, num_classes: int, device: torch.device) -> nn.Module:
    """The dense base model on ``device`` in eval mode: what ``finetune.distill`` learns from."""
    teacher = to_device(load_base(setup.model, num_classes, setup.base_checkpoint), device).eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher


def calibration_batch(data: TrialData | TensorData) -> tuple[torch.Tensor, torch.Tensor]:
    """64 training images and labels on the CPU: what data-aware pruning criteria rank with."""
    x, y = data.sample(64)
    return x.cpu(), y.cpu()


def measure_point(
    setup: TrialSetup,
    model: nn.Module,
    num_classes: int,
    data: TrialData | TensorData,
    device: torch.device,
) -> dict[str, float]:
    """Validation accuracy and loss of ``model`` (evaluated on ``device``) with its costs and
    budget checks: what a trial's final report holds (the taper method's points use it)."""
    accuracy, loss = evaluate(to_device(model, device), data.eval_batches("val"))
    return {R.ACCURACY: accuracy, R.LOSS: loss, **_cost_metrics(setup, model.cpu(), num_classes)}


def _cost_metrics(setup: TrialSetup, model: nn.Module, num_classes: int) -> dict[str, float]:
    """Costs of the pruned ``model`` (on the CPU, before fine-tuning: they depend only on the
    channels kept), relative to the dense model, which budgets they meet, and the intervals of
    the measured ones. A budget on a measured cost is met when its interval's upper end is; a
    cost naming a node (``on``) is measured there, by the measuring actor."""
    measured = measure_intervals(model, example_input(setup), setup.cost_functions(), elsewhere=measure_elsewhere)
    values = {key: m.value for key, m in measured.items()}
    dense = _dense_costs(setup, num_classes)
    meets = check_budgets({key: m.high for key, m in measured.items()}, dense, setup.budgets)
    # Absolute limits, so a searcher can weigh by how much a budget is missed (rl's multiplier).
    limits = {b.key: b.limit(dense.get(b.key)) for b in setup.budgets}
    return {**R.budget_metrics(values, dense, meets, limits), **R.interval_metrics(measured)}
