"""Everything that can fail because of the user's config, before a file is written or Ray runs.

:func:`prepare` checks names and options, loads the data, derives the profile space with its
exact cost model (refusing budgets no profile can meet), trains or loads the base model and
measures the dense model's costs: a :class:`Prepared` search. An experiment of the same name
and config is prepared for resuming instead (``Prepared.resume``);
:func:`~prunetune.search.run.tuner.run_search` then runs it.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from prunetune.budgets import ANALYTIC_COSTS, AnalyticCostModel, Budget, cost_functions, measure_costs
from prunetune.budgets.errors import BudgetError, ConfigError
from prunetune.search.config import SearchConfig, is_uri
from prunetune.search.run.devices import check_devices, placed_budgets
from prunetune.search.run.methods import Method, check_config, get_method
from prunetune.search.run.reachable import check_measured_budgets
from prunetune.search.run.resources import check_address, check_local
from prunetune.search.run.schedulers import check_scheduler
from prunetune.search.run.screen import screen_by_latency
from prunetune.search.setup import data_spec, specs, trial_setup, with_extra_bases
from prunetune.search.space import ProfileSpace
from prunetune.search.store.manifest import MANIFEST, check_unchanged, read_manifest
from prunetune.trainables import (
    CostModelError,
    DivergedError,
    TrialSetup,
    build_model,
    dataset_names,
    ensure_base_checkpoint,
    example_input,
    extract_cost_model,
    find_groups,
    load_base,
)


@dataclass(frozen=True)
class Prepared:
    """A validated search, ready to run."""

    config: SearchConfig
    setup: TrialSetup
    space: ProfileSpace
    dense_costs: dict[str, float]
    storage: Path
    num_classes: int
    resume: bool = False  # the experiment exists: run_search continues it via Tuner.restore
    train_images: int | None = None  # the training split's size, which resolved any epochs to steps
    val_images: int | None = None  # the validation images each trial evaluates on (None when resumed)

    @property
    def experiment_dir(self) -> Path:
        return self.storage / self.config.name

    @property
    def storage_uri(self) -> str:
        """Where Tune writes trials: the configured ``s3://``/``gs://`` URI or local folder."""
        return self.config.storage_path if is_uri(self.config.storage_path) else str(self.storage)

    @property
    def experiment_uri(self) -> str:
        return experiment_uri(self.config, self.storage)

    @property
    def method(self) -> Method:
        return get_method(self.config.method)

    @property
    def frontier_cost(self) -> str:
        return self.method.frontier_cost(self.config)


def _check_names(config: SearchConfig) -> None:
    check_config(config)  # the method, scheduler and searcher names and options, before anything is written
    for where, data in [("data", config.data)] + [
        (f"bases[{i}].data", b.data) for i, b in enumerate(config.bases) if b.data
    ]:
        if data.name not in dataset_names():
            raise ConfigError(f"unknown data set {data.name!r} in {where}; choose one of {', '.join(dataset_names())}")
    for index, extra in enumerate(config.bases):
        if extra.checkpoint and not Path(extra.checkpoint).is_file():
            raise ConfigError(
                f"bases[{index}].checkpoint {extra.checkpoint!r} does not exist; "
                "give a trained checkpoint or null to train one"
            )
    cost_functions(config.budgets)  # two budgets on one cost (absolute and relative, say)
    # Building raises the registry's error (with close matches) for a bad name or width. On the
    # meta device: a width too big for memory is _check_memory's to refuse, not this build's to swap.
    import torch

    try:
        with torch.device("meta"):
            build_model(config.model.name, num_classes=10, input_size=config.model.input_size, width=config.model.width)
    except (NotImplementedError, RuntimeError):
        pass  # an operation meta tensors lack: the model is real enough to get this far


def _check_cluster(config: SearchConfig) -> None:
    """Before the base model is trained: a cluster address that answers, and a trial that fits
    a private local Ray (a joined cluster is checked once joined, see ``tuner.start``)."""
    if config.address:
        check_address(config.address)
    else:
        check_local(config.resources.cpu, config.resources.gpu)
    check_devices(config)  # a budget measured on a named node: that node, and its runtime


def analytic_limits(budgets: Sequence[Budget], cost_model: AnalyticCostModel) -> dict[str, float]:
    """Absolute limits of the budgets the cost model computes exactly (``macs``, ``params``),
    keyed by cost key; a relative budget's limit is ``max`` times the dense model's cost."""
    dense = cost_model.dense()
    return {b.key: b.limit(dense[b.cost]) for b in budgets if b.cost in ANALYTIC_COSTS and not b.options}


def check_reachable(space: ProfileSpace, budgets: Sequence[Budget]) -> None:
    """A BudgetError for an analytic budget that no profile of ``space`` can meet."""
    smallest = space.min_costs()
    dense = space.cost_model.dense() if space.cost_model else {}
    for budget in budgets:
        limit = space.limits.get(budget.key)
        if limit is None or smallest[budget.key] <= limit * (1 + 1e-9):
            continue
        reach = smallest[budget.key] / dense[budget.key]
        raise BudgetError(
            f"budget {budget.label} cannot be met: with every group at its smallest ratio the model "
            f"still has {smallest[budget.key]:,.0f} {budget.key} ({reach:.1%} of dense), above the limit "
            f"{limit:,.0f}; raise the budget's max to at least {reach:.4g} (relative) or "
            f"{smallest[budget.key]:,.0f} (absolute), or lower space.low (or the smallest space.levels)"
        )


def build_space(config: SearchConfig, num_classes: int) -> ProfileSpace:
    """The profile space of ``config``'s model, with its exact analytic cost model and the
    analytic budgets' limits; a budget below the smallest reachable cost is a BudgetError.

    Needs only the architecture (costs do not depend on weights), so it runs before the base
    model is trained and before any file is written. A model the cost model cannot represent
    exactly gets a space without one (a warning): its budgets are then checked by trials only.
    """
    spec, _, _ = specs(config)
    sample = example_input(trial_setup(config))
    architecture = build_model(spec.name, num_classes=num_classes, input_size=spec.input_size, width=spec.width)
    channels = {g.name: g.channels for g in find_groups(architecture, sample)}
    try:
        cost_model = extract_cost_model(architecture, sample)
    except CostModelError as err:
        warnings.warn(f"no exact cost model for {spec.name} ({err}); profiles are not screened", stacklevel=2)
        cost_model = None
    space = ProfileSpace.build(
        channels,
        low=config.space.low,
        high=config.space.high,
        levels=config.space.levels,
        overrides=config.space.overrides,
        round_to=config.prune.round_to,
        min_channels=config.prune.min_channels,
        cost_model=cost_model,
        limits=analytic_limits(config.budgets, cost_model) if cost_model else {},
    )
    check_reachable(space, config.budgets)
    return space


def local_storage(config: SearchConfig) -> Path:
    """The local results folder: ``storage_path``, or ``local_dir`` when that is a URI (base
    checkpoints, MLflow's SQLite file, the manifest and the frontier stay on this machine)."""
    if is_uri(config.storage_path):
        return Path(config.local_dir or "results").resolve()
    return Path(config.storage_path).resolve()


def writable_storage(config: SearchConfig) -> Path:
    """The local results folder (:func:`local_storage`), refused unless it is, or can be made,
    a folder this user may write: the first check of a run, before its lock or any file."""
    storage = local_storage(config)
    key = "local_dir" if is_uri(config.storage_path) else "storage_path"
    existing = next(p for p in (storage, *storage.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(
            f"{key} {str(storage)!r} cannot hold results: {existing} is a file; choose a folder (--set {key}=...)"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{key} {str(storage)!r} cannot hold results: {existing} is not writable for this user; "
            f"choose another folder (--set {key}=...)"
        )
    return storage


def experiment_uri(config: SearchConfig, storage: Path) -> str:
    """Tune's experiment folder: under the ``storage_path`` URI, or the local results folder."""
    root = config.storage_path if is_uri(config.storage_path) else str(storage)
    return f"{root.rstrip('/')}/{config.name}"


_FREE = {"address", "resources.wait_s"}


def config_differences(old: SearchConfig, new: SearchConfig) -> list[str]:
    """``key: old -> new`` for every setting that differs (``address`` and ``resources.wait_s``
    may change freely: they say where and how patiently to run, not what)."""

    def flat(blob: dict, prefix: str = "") -> dict:
        out = {}
        for key, value in blob.items():
            if isinstance(value, dict) and value:
                out.update(flat(value, f"{prefix}{key}."))
            else:
                out[f"{prefix}{key}"] = value
        return out

    # As written: steps resolved from epochs are no setting of the user's.
    a, b = flat(old.as_written().model_dump(mode="json")), flat(new.as_written().model_dump(mode="json"))
    return [
        f"{k}: {a.get(k)!r} -> {b.get(k)!r}"
        for k in sorted(a.keys() | b.keys())
        if k not in _FREE and a.get(k) != b.get(k)
    ]


def _existing(config: SearchConfig, storage: Path, trust: bool) -> Prepared | None:
    """The search to resume when ``config``'s experiment already exists (same config), else None.
    A folder of another user's is refused unless ``trust`` (resuming unpickles its state)."""
    from ray.tune import Tuner

    from prunetune.search.store.trust import check_owner

    directory = storage / config.name
    if not directory.exists():
        return None
    check_owner(directory, trust=trust)
    if not (directory / MANIFEST).is_file() or not Tuner.can_restore(experiment_uri(config, storage)):
        raise ConfigError(
            f"experiment {config.name!r} already exists in {storage} but has no search state to resume; "
            f"choose a new name (--set name=...) or remove {directory}"
        )
    manifest = read_manifest(directory)
    check_unchanged(manifest)
    differences = config_differences(manifest.config, config)
    if differences:
        raise ConfigError(
            f"experiment {config.name!r} in {storage} was started with a different config "
            f"({'; '.join(differences)}); resume it unchanged or choose a new name (--set name=...)"
        )
    return from_manifest(manifest, address=config.address)


def ensure_extra_bases(config: SearchConfig, storage: Path, *, show_progress: bool = True) -> list[str]:
    """A trained checkpoint for each of ``config.bases``: the given one, else trained once and
    cached under ``<storage>/base`` beside the search's own base."""
    model, _, recipe = specs(config)
    paths = []
    for extra in config.bases:
        if extra.checkpoint:
            paths.append(str(Path(extra.checkpoint).resolve()))
            continue
        seed = config.seed if extra.seed is None else extra.seed
        data = data_spec(extra.data or config.data)
        paths.append(
            str(ensure_base_checkpoint(model, data, recipe, storage / "base", seed=seed, show_progress=show_progress))
        )
    return paths


def from_manifest(manifest, *, address: str | None = None) -> Prepared:
    """The prepared search an experiment manifest describes, marked for resuming: in the
    manifest's folder (a renamed one included), never under the name it was started with."""
    config = manifest.config.model_copy(update={"address": address}) if address else manifest.config
    cost_functions(config.budgets)  # a user cost module that no longer imports: one line, before Ray starts
    check_config(config)  # so does a user searcher's, which Tune's restore unpickles by its module
    if manifest.directory.name != config.name:  # read_manifest renames all but object storage's
        raise ConfigError(
            f"{manifest.directory} was renamed, but its trials are in "
            f"{experiment_uri(config, manifest.directory.parent)}; "
            f"rename the folder back to {config.name!r} to resume it"
        )
    space = build_space(config, manifest.num_classes)
    storage = manifest.directory.parent
    return Prepared(
        config,
        manifest.setup(),
        space,
        manifest.dense_costs,
        storage,
        manifest.num_classes,
        resume=True,
        train_images=manifest.train_images,
    )


def available_memory() -> int | None:
    """Bytes this process may still allocate: MemAvailable, capped by a cgroup v2 limit (a
    container's); None where neither can be read."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            found.append(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def dense_training_memory(config: SearchConfig) -> tuple[int, int] | None:
    """(parameters, activation elements of one batch) of ``config``'s dense model, from the
    model built on the meta device (nothing allocated); None where it cannot be built so."""
    import torch

    from prunetune.budgets.errors import PrunetuneError

    spec, batch = config.model, max(config.base.batch_size, config.finetune.batch_size)
    elements = []

    def count(module, inputs, output) -> None:
        if isinstance(output, torch.Tensor) and not list(module.children()):
            elements.append(output.numel())

    try:
        with torch.device("meta"):
            model = build_model(spec.name, num_classes=10, input_size=spec.input_size, width=spec.width)
            hooks = [m.register_forward_hook(count) for m in model.modules()]
            model(torch.empty(batch, 3, spec.input_size, spec.input_size))
    except (PrunetuneError, NotImplementedError, RuntimeError, TypeError, ValueError):
        return None  # a model meta tensors cannot run: training will tell
    for hook in hooks:
        hook.remove()
    return sum(p.numel() for p in model.parameters()), batch * spec.input_size**2 * 3 + sum(elements)


def evaluated_images(data) -> int:
    """How many validation images a trial evaluates on: the split, or ``evaluate.val_images`` of it."""
    count = len(data.splits["val"])
    return count if data.val_images is None else min(data.val_images, count)


def describe_data(config: SearchConfig, data) -> str:
    """One line on how trials read the data: the mode chosen (and why, under ``auto``), the
    augmentation, the validation images a trial evaluates on."""
    counts = {split: len(source) for split, source in data.splits.items()}
    why = " (chosen by data.mode: auto)" if config.data.mode == "auto" else ""
    val = evaluated_images(data)
    return (
        f"data: {config.data.name}, {counts['train']:,} train / {counts['val']:,} val / {counts['test']:,} test "
        f"images, {'one decoded copy per node' if data.mode == 'memory' else 'streamed'}{why}; "
        f"augmentation: {data.augment.describe()}; trials evaluate on {val:,} val images"
    )


def describe_lengths(config: SearchConfig) -> str | None:
    """One line with each training length given in epochs and the steps it became (None when
    every length is in steps), e.g. ``finetune: 2 epochs = 1,874 steps of 64 images``."""
    parts = [
        f"{key}: {section.epochs:g} epoch{'s' if section.epochs != 1 else ''} = {section.steps:,} steps "
        f"of {config.batch_of(key)} images"
        for key, section in config.in_epochs().items()
    ]
    return "; ".join(parts) or None


def _check_memory(config: SearchConfig) -> None:
    """Refuse a width or input size whose dense model cannot train in this machine's memory,
    before the data is resized to it or a model allocated (torch would fail deep inside, or
    the machine swap to a halt). Float32: weights, gradients and momentum, plus the batch's
    activations kept for the backward pass and their gradients."""
    sizes = dense_training_memory(config)
    available = available_memory()
    if sizes is None or available is None:
        return
    params, activations = sizes
    need = 4 * (3 * params + 2 * activations)
    if need <= available:
        return
    spec = config.model
    raise ConfigError(
        f"model.width {spec.width:g} with model.input_size {spec.input_size} needs about {need / 2**30:,.1f} GiB to "
        f"train {spec.name} ({params:,} parameters, {activations:,} activation values per batch of "
        f"{max(config.base.batch_size, config.finetune.batch_size)}), "
        f"but this machine has {available / 2**30:,.1f} GiB "
        f"available; lower model.width or model.input_size (or the batch sizes)"
    )


@contextlib.contextmanager
def _out_of_memory(config: SearchConfig) -> Iterator[None]:
    """Torch's (or numpy's) out-of-memory error while the data is resized or the dense model
    built, traced or trained, as a one-line ConfigError naming what to lower."""
    import torch

    try:
        yield
    except (torch.OutOfMemoryError, MemoryError, RuntimeError) as err:
        text = str(err)
        if (
            isinstance(err, RuntimeError)
            and not isinstance(err, torch.OutOfMemoryError)
            and not ("not enough memory" in text or "DefaultCPUAllocator" in text or "out of memory" in text)
        ):
            raise
        detail = text.splitlines()[0] if text else type(err).__name__
        spec = config.model
        raise ConfigError(
            f"out of memory preparing {spec.name} at model.width {spec.width:g} and model.input_size {spec.input_size} "
            f"({detail}); lower model.width or model.input_size (or the batch sizes)"
        ) from None


def prepare(config: SearchConfig, *, show_progress: bool = True, trust: bool = False) -> Prepared:
    """Validate, load data, train or load the base model and derive the profile space.

    An experiment of the same name that Tune can restore, started with the same config, is
    prepared for resuming instead (``Prepared.resume``); a different config is an error, and
    so is another user's folder unless ``trust``.
    """
    _check_names(config)
    _check_cluster(config)
    storage = writable_storage(config)
    existing = _existing(config, storage, trust)
    if existing is not None:
        return existing
    _check_memory(config)  # before the data is resized to input_size or a model built
    with _out_of_memory(config):  # an estimate above can be low: torch's own error, in one line
        splits = data_spec(config.data).open(config.model.input_size, "cpu", config.evaluate.val_images)
        # A missing data set failed above. Lengths in epochs become steps now, once, from the
        # training split's size: everything below (base, trials, scheduler, summary) counts steps.
        config = config.resolved(len(splits))
        check_scheduler(config)  # a finetune.epochs shorter than scheduler.grace_steps
        model, data, recipe = specs(config)
        if show_progress:
            print(describe_data(config, splits), flush=True)
            lengths = describe_lengths(config)
            if lengths:
                print(lengths, flush=True)
        space = build_space(config, splits.num_classes)  # so does an unreachable budget
        check_measured_budgets(space, trial_setup(config), splits.num_classes)  # and a bad cost, before training
        space = screen_by_latency(config, space, trial_setup(config), splits.num_classes)  # a latency table
        checkpoint = config.base.checkpoint
        try:
            if checkpoint is None:
                checkpoint = str(
                    ensure_base_checkpoint(
                        model, data, recipe, storage / "base", seed=config.seed, show_progress=show_progress
                    )
                )
            setup = replace(trial_setup(config), base_checkpoint=str(Path(checkpoint).resolve()))
            setup = with_extra_bases(config, setup, ensure_extra_bases(config, storage, show_progress=show_progress))
        except DivergedError as err:  # the recipe's fault: the config's to fix
            raise ConfigError(
                f"training the base model diverged ({err}); "
                f"lower base.lr (now {config.base.lr:g}) or give base.checkpoint"
            ) from None
        dense = load_base(model, splits.num_classes, setup.base_checkpoint)
        # A cost measured on a named node is measured by the trials, through its measuring actor.
        elsewhere = {b.key for b in placed_budgets(setup.budgets)}
        costs = {key: cost for key, cost in setup.cost_functions().items() if key not in elsewhere}
        dense_costs = measure_costs(dense, example_input(setup), costs)
        return Prepared(
            config,
            setup,
            space,
            dense_costs,
            storage,
            splits.num_classes,
            train_images=len(splits),
            val_images=evaluated_images(splits),
        )
