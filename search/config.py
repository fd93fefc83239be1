"""The search config: YAML validated by pydantic, with one-line errors a user can act on.

``load_config(path, overrides)`` reads YAML, applies ``--set key=value`` overrides (dotted keys,
values parsed as YAML) and validates. Every mistake becomes a :class:`ConfigError` naming the
key, the bad value and what is allowed; the CLI prints it on one line and exits with code 2.

The sections a trial reads are the trainables' own option types (``Recipe``, ``PruneSettings``,
``TaperSettings``), subclassed here only where the config changes a default or adds a key, so
each option, its default and its constraint are defined once.
"""

from __future__ import annotations

import difflib
import math
import re
import typing
from pathlib import Path
from typing import Annotated, Any, ClassVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from prunetune.budgets import Budget
from prunetune.budgets.errors import ConfigError
from prunetune.trainables.groups import PruneSettings
from prunetune.trainables.taper import TaperSettings
from prunetune.trainables.train import BatchSize, EvalSettings, LearningRate, Recipe, Steps, steps_per_epoch

# A training length in passes over the training split (0.5: half of one), the alternative to
# ``steps`` in ``base``, ``finetune`` and ``confirm``: converted to steps once, when a search is
# prepared and the split's size is known (``SearchConfig.resolved``).
Epochs = Annotated[float, Field(gt=0, allow_inf_nan=False)]


def _steps_or_epochs(data: Any, section: str) -> Any:
    """Before a length section validates: ``epochs`` stands in for ``steps``, which stays None
    until the search resolves it; both given, or neither (``steps: null``), is the user's to fix."""
    if not isinstance(data, dict):
        return data
    if data.get("epochs") is None:
        if "steps" in data and data["steps"] is None:
            raise ValueError(
                f"give {section}.steps (optimiser steps) or {section}.epochs (passes over the training split)"
            )
        return data
    if data.get("steps") is not None:
        raise ValueError(
            f"give {section}.steps or {section}.epochs, not both: remove one "
            f"(on the command line, --set {section}.steps=null)"
        )
    return {**data, "steps": None}


def steps_for(epochs: float, train_images: int, batch_size: int) -> int:
    """The optimiser steps of ``epochs`` passes over ``train_images`` in batches of ``batch_size``:
    an epoch is ``steps_per_epoch`` (the last partial batch dropped, as the batch order drops
    it), the product rounded up, at least one step."""
    return max(1, math.ceil(round(epochs * steps_per_epoch(train_images, batch_size), 6)))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Named(_Section):
    """A section whose bare name is shorthand for ``{name: ...}`` (``model: resnet20``)."""

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


class ModelConfig(_Named):
    name: str = "resnet20"
    width: float = Field(1.0, gt=0)
    input_size: int = Field(32, ge=8)
    weights: str | None = None


class AugmentConfig(_Section):
    """``data.augment`` as a mapping: the fields given replace the data set's standard ones."""

    crop: typing.Literal["pad", "resized", "none"] | None = None
    flip: bool | None = None
    padding: int | None = Field(None, ge=0)
    scale: tuple[float, float] | None = None
    ratio: tuple[float, float] | None = None


class DataConfig(_Named):
    """The data set (``name``, ``root``, ``seed``, the loader's ``options``) and how trials read
    it: ``mode`` (auto, memory: one decoded copy per node; stream: decoded per batch),
    ``augment`` (standard: the set's usual augmentation; none; or a mapping), the node cache's
    folder on each machine's local disk and the streaming DataLoader ``workers``."""

    name: str = "digits"
    root: str | None = None
    seed: int = 0
    options: dict[str, Any] = Field(default_factory=dict)
    mode: typing.Literal["auto", "memory", "stream"] = "auto"
    augment: typing.Any = "standard"  # "standard", "none" or an AugmentConfig (checked below)
    cache_dir: str | None = None
    workers: int | None = Field(None, ge=0)

    @field_validator("augment", mode="before")
    @classmethod
    def _augment(cls, value: Any) -> Any:
        if value in ("standard", "none") or isinstance(value, AugmentConfig):
            return value
        if isinstance(value, dict):
            try:
                return AugmentConfig.model_validate(value)
            except ValidationError as err:
                error = err.errors()[0]
                key = ".".join(str(part) for part in error["loc"])
                raise ValueError(f"data.augment.{key}: {error['msg']} (got {error.get('input')!r})") from None
        raise ValueError("use standard, none or a mapping such as {crop: pad, flip: true}")

    @model_validator(mode="after")
    def _augment_ranges(self) -> DataConfig:
        if isinstance(self.augment, AugmentConfig):
            from prunetune.trainables.data.augment import resolve

            try:
                resolve(self.augment.model_dump(exclude_none=True), "small")
            except ConfigError as error:
                raise ValueError(str(error)) from None
        return self


class BaseConfig(Recipe):
    """The dense model: a checkpoint to load, or the recipe to train one (``steps`` or
    ``epochs`` long)."""

    section: ClassVar[str] = "base"
    steps: Steps | None = 400  # None: given in epochs, not yet resolved
    lr: LearningRate = 0.05
    batch_size: BatchSize = 128
    checkpoint: str | None = None
    epochs: Epochs | None = None

    @model_validator(mode="before")
    @classmethod
    def _length(cls, data: Any) -> Any:
        return _steps_or_epochs(data, cls.section)

    @field_validator("distill")
    @classmethod
    def _no_teacher(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError("the base model has no teacher to distill from; use finetune.distill")
        return value


# ``criterion`` is checked against the registered criteria (trainables.groups.CRITERIA).
PruneConfig = PruneSettings


class SpaceConfig(_Section):
    low: float = Field(0.25, gt=0, le=1)
    high: float = Field(1.0, gt=0, le=1)
    levels: list[float] | None = Field(None, min_length=1)  # null: continuous low..high
    overrides: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("overrides")
    @classmethod
    def _override_keys(cls, overrides: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for group, spec in overrides.items():
            unknown = sorted(set(spec) - {"low", "high", "levels"})
            if unknown:
                raise ValueError(
                    f"space.overrides.{group} has unknown key {unknown[0]!r}; a group override sets low, high or levels"
                )
        return overrides


class FinetuneConfig(Recipe):
    """Every trial's fine-tune: the trainables' recipe, 50 steps by default, or ``epochs``."""

    section: ClassVar[str] = "finetune"
    steps: Steps | None = 50  # None: given in epochs, not yet resolved
    epochs: Epochs | None = None

    @model_validator(mode="before")
    @classmethod
    def _length(cls, data: Any) -> Any:
        return _steps_or_epochs(data, cls.section)


class SearcherConfig(_Named):
    """``name`` is a registered searcher or a user's ``module:Class``, and ``options`` its
    options: both checked by the search method before anything is written (config sits below
    the registries; see ``run.methods.check_config``)."""

    name: str = "random"
    seed: int = 0
    options: dict[str, Any] = Field(default_factory=dict)


class TaperConfig(TaperSettings):
    """``method: taper`` (docs/taper.md): one run tapers the cost and hardens a pruned model
    at every level. ``sweep`` maps option names to lists of values: one Tune trial each
    (grid over all of them), e.g. ``{rate: [0.001, 0.003]}``. ``lr`` and ``finetune_steps``
    default to the ``finetune`` section's."""

    sweep: dict[str, list[Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _valid_sweep(self) -> TaperConfig:
        options = list(TaperSettings.model_fields)
        for name, values in self.sweep.items():
            if name not in options:
                raise ValueError(f"taper.sweep names unknown option {name!r}; sweepable: {', '.join(options)}")
            if not values:
                raise ValueError(f"taper.sweep.{name} is empty; give a list of values")
            for value in values:
                try:
                    TaperSettings.model_validate({name: value})
                except ValidationError as err:
                    raise ValueError(f"taper.sweep.{name} value {value!r}: {err.errors()[0]['msg']}") from None
        return self

    def settings(self) -> dict[str, Any]:
        """The options a taper trial reads (without ``sweep``), as plain JSON values for Tune's
        config; ``TaperSettings(**settings)`` rebuilds them."""
        return self.model_dump(mode="json", exclude={"sweep"})


# ``recalibrate_bn`` batches re-estimate BatchNorm statistics after pruning (docs/searchers.md).
EvaluateConfig = EvalSettings


class SchedulerConfig(_Named):
    """Multi-fidelity scheduling by Ray Tune's own schedulers (docs/searchers.md).

    ``fifo`` (the default) runs every trial to the end. ``asha`` and ``hyperband`` compare
    trials at rungs of fine-tune steps and stop the weakest: a trial reports its accuracy every
    ``report_every`` steps (default ``grace_steps``); the first rung is at ``grace_steps``,
    each next one ``reduction_factor`` times later, up to ``finetune.steps``. ``name`` is
    checked against ``run.schedulers.SCHEDULERS`` before anything is written.
    """

    name: str = "fifo"
    grace_steps: int = Field(10, ge=1, strict=True)
    reduction_factor: float = Field(3.0, gt=1)
    report_every: int | None = Field(None, ge=1, strict=True)
    brackets: int = Field(1, ge=1, strict=True)  # asha's brackets

    @property
    def period(self) -> int:
        """Steps between a trial's reports (0: only at the end, under ``fifo``)."""
        if self.name == "fifo":
            return self.report_every or 0
        return self.report_every or self.grace_steps


class ConfirmConfig(_Section):
    """Search, then confirm: after the search's trials, the ``top`` best feasible profiles
    (by validation accuracy; per level when ``levels`` lists relative costs of the frontier
    cost) are fine-tuned again from the base for ``steps`` steps (or ``epochs``, in batches of
    ``finetune.batch_size``) with each of ``seeds`` training seeds, as more trials of the same
    experiment, and evaluated on the test split.
    The frontier then reports their confirmed test accuracy. ``top: 0`` turns it off.

    ``uniform: true`` confirms the uniform profile of each level beside them (every group at
    the one keep ratio the level allows on the exact cost model), the same way: the reference
    every figure of the search is read against, drawn and printed beside its frontier."""

    top: int = Field(0, ge=0, strict=True)
    steps: int | None = Field(300, ge=0, strict=True)  # None: given in epochs, not yet resolved
    seeds: int = Field(1, ge=1, strict=True)
    levels: list[float] | None = None
    uniform: bool = Field(False, strict=True)
    epochs: Epochs | None = None

    @model_validator(mode="before")
    @classmethod
    def _length(cls, data: Any) -> Any:
        return _steps_or_epochs(data, "confirm")

    @field_validator("levels")
    @classmethod
    def _relative_levels(cls, levels: list[float] | None) -> list[float] | None:
        if levels is not None and (not levels or any(not 0 < level <= 1 for level in levels)):
            raise ValueError("confirm.levels must list relative costs in (0, 1], e.g. [0.3, 0.5]")
        return levels

    @model_validator(mode="after")
    def _uniform_beside_the_top(self) -> ConfirmConfig:
        if self.uniform and not self.top:
            raise ValueError(
                "confirm.uniform confirms the uniform profile beside the search's best ones: "
                "set confirm.top too (e.g. 2)"
            )
        return self

    @property
    def trials(self) -> int:
        """The most confirmation trials this asks for (the uniform references included)."""
        return (self.top + self.uniform) * self.seeds * len(self.levels or [1.0])


class ResourcesConfig(_Section):
    """Per trial; ``wait_s`` is how long to wait for an autoscaler to add a node that fits
    a trial (0: a request no node can hold is refused at once)."""

    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)
    wait_s: float = Field(0.0, ge=0, allow_inf_nan=False)

    @field_validator("gpu")
    @classmethod
    def _whole_or_fraction(cls, gpu: float) -> float:
        # Ray schedules a fraction of one device or whole devices, never e.g. 1.5.
        if gpu > 1 and not float(gpu).is_integer():
            raise ValueError("a trial takes a fraction of one GPU (0 < gpu <= 1, e.g. 0.25) or whole GPUs (1, 2, ...)")
        return gpu


class TrackingConfig(_Section):
    """MLflow: ``tracking_uri`` null means a SQLite store under the results directory
    (or ``MLFLOW_TRACKING_URI`` when set); ``enabled: false`` turns logging off.
    ``experiment`` is the study (null: the search's name); the frontier is re-logged to the
    search's parent run every ``frontier_every_s`` seconds (0: only at the end)."""

    enabled: bool = True
    tracking_uri: str | None = None
    experiment: str | None = None
    frontier_every_s: float = Field(60.0, ge=0)


class ExtraBase(_Section):
    """Another base model of the same architecture that every trial also prunes, fine-tunes and
    evaluates (the out-of-the-box profiles paper's multi-model search); a trial's ``accuracy`` is then the mean over the
    search's base and these. Each differs from the search's base by its data set, its training
    seed or a given checkpoint; ``label`` names its ``accuracy/<label>`` metric."""

    data: DataConfig | None = None  # null: the search's data set
    seed: int | None = None  # null: the search's seed
    checkpoint: str | None = None  # null: train one (cached under <storage>/base like the base)
    label: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$")


class SearchConfig(_Section):
    """A whole search. Defaults make ``prunetune search`` with an empty file work."""

    name: str = "prunetune"  # a folder under storage_path: see _folder_name
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    base: BaseConfig = BaseConfig()
    prune: PruneConfig = PruneConfig()
    space: SpaceConfig = SpaceConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    budgets: list[Budget] = Field(default_factory=list)
    searcher: SearcherConfig = SearcherConfig()
    method: str = "search"  # one of run.methods.METHODS (checked before any write); taper: see TaperConfig
    taper: TaperConfig = TaperConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    confirm: ConfirmConfig = ConfirmConfig()
    trials: int = Field(16, ge=1, strict=True)  # strict: `trials: true` is not 1 trial
    concurrency: int = Field(2, ge=1, strict=True)
    resources: ResourcesConfig = ResourcesConfig()
    storage_path: str = "results"
    local_dir: str | None = None  # with a URI storage_path: where base/, mlflow.db, frontier go
    shared_storage: bool = False  # a local storage_path that every node mounts (NFS)
    max_failures: int = Field(0, ge=0, strict=True)
    checkpoint_every: int = Field(0, ge=0, strict=True)
    tracking: TrackingConfig = TrackingConfig()
    address: str | None = None
    seed: int = 0
    bases: list[ExtraBase] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _folder_name(cls, name: str) -> str:
        # The name is a folder beside others in storage_path (base/, mlflow.db, .locks/): one
        # plain path component that cannot climb out of it or shadow what lives there.
        reserved = {"base", "mlflow.db", "mlartifacts"}
        if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*", name) or name in reserved:
            raise ValueError(
                "an experiment name is one folder name: letters, digits, '_', '-' and '.', not starting "
                f"with '.', and none of {', '.join(sorted(reserved))}; e.g. --set name=demo"
            )
        return name

    @model_validator(mode="after")
    def _distinct_bases(self) -> SearchConfig:
        if self.bases and self.method != "search":
            raise ValueError(f"bases (several base models per trial) apply to method: search, not {self.method}")
        labels = [self.base_label(None)]
        for index, extra in enumerate(self.bases):
            if extra.data is None and extra.seed in (None, self.seed) and extra.checkpoint is None:
                raise ValueError(
                    f"bases[{index}] is the search's own base model; give it another data set, seed or checkpoint"
                )
            labels.append(self.base_label(extra))
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ValueError(f"base label {repeated[0]!r} names two base models; set a distinct label on each of bases")
        return self

    def in_epochs(self) -> dict[str, BaseConfig | FinetuneConfig | ConfirmConfig]:
        """The length sections given in ``epochs``, by key (base, finetune, confirm)."""
        sections = {"base": self.base, "finetune": self.finetune, "confirm": self.confirm}
        return {key: section for key, section in sections.items() if section.epochs is not None}

    def resolved(self, train_images: int) -> SearchConfig:
        """This config with every length given in epochs also in steps, for a training split of
        ``train_images`` in :meth:`batch_of` batches (``epochs`` kept, for what is printed and
        logged). Called once, when a search is prepared (or its manifest read); everything
        after counts steps. Extra ``bases`` on other data sets train as many steps as the
        search's base."""
        update = {
            key: section.model_copy(update={"steps": steps_for(section.epochs, train_images, self.batch_of(key))})
            for key, section in self.in_epochs().items()
        }
        return self.model_copy(update=update) if update else self

    def batch_of(self, key: str) -> int:
        """The batch size a length section counts its epochs in (confirmation trials run the
        fine-tune recipe)."""
        return self.base.batch_size if key == "base" else self.finetune.batch_size

    def as_written(self) -> SearchConfig:
        """The config as its user wrote it: a length given in epochs without the steps
        :meth:`resolved` added. What a manifest records and a resume compares."""
        update = {key: section.model_copy(update={"steps": None}) for key, section in self.in_epochs().items()}
        return self.model_copy(update=update) if update else self

    def base_label(self, extra: ExtraBase | None) -> str:
        """The name of a base model's ``accuracy/<label>`` metric (None: the search's base)."""
        if extra is None:
            return self.data.name if not self.bases else f"{self.data.name}-s{self.seed}"
        if extra.label:
            return extra.label
        data = (extra.data or self.data).name
        return f"{data}-s{self.seed if extra.seed is None else extra.seed}"


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The config section an annotation holds: itself, or the model inside ``X | None`` or
    ``list[X]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in typing.get_args(annotation):
        found = _model_in(argument)
        if found is not None:
            return found
    return None


def _section_at(path: tuple) -> type[BaseModel] | None:
    """The config section at ``path`` (list indices skipped), None inside a free mapping."""
    section: type[BaseModel] | None = SearchConfig
    for part in path:
        if isinstance(part, int):
            continue  # an item of a list: _model_in already took the item's type
        field = section.model_fields.get(str(part)) if section else None
        section = _model_in(field.annotation) if field else None
        if section is None:
            return None
    return section


def _describe(error: dict, data: Any) -> str:
    location = ".".join(str(p) for p in error["loc"])
    if error["type"] == "extra_forbidden":
        section = _section_at(tuple(error["loc"][:-1]))
        valid = list(section.model_fields) if section else []
        guess = difflib.get_close_matches(str(error["loc"][-1]), valid, n=1)
        hint = f"; did you mean {guess[0]!r}?" if guess else f"; valid keys: {', '.join(valid)}" if valid else ""
        return f"unknown config key {location!r}{hint}"
    message = error["msg"].removeprefix("Value error, ")
    if not location:  # a check across keys says which ones itself
        return message
    return f"config key {location!r}: {message} (got {error.get('input')!r})"


def parse_config(data: dict[str, Any] | None) -> SearchConfig:
    """Validate a config mapping; raise :class:`ConfigError` with one line on the first problem."""
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"a search config must be a mapping of keys, got {type(data).__name__}")
    try:
        return SearchConfig.model_validate(data or {})
    except ValidationError as err:
        raise ConfigError(_describe(err.errors()[0], data)) from None


def apply_overrides(
    data: dict[str, Any], overrides: list[str], flag: str = "--set", example: str = "trials=8"
) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings (values parsed as YAML) to a copy of ``data``; errors name
    the command-line ``flag`` they came from, with an ``example``."""
    data = dict(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key or "" in key.split("."):
            raise ConfigError(f"{flag} {item!r} is not KEY=VALUE; example: {flag} {example}")
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, dict) else {}
            node = node[part]
        try:
            node[parts[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise ConfigError(
                f"{flag} {item!r}: the value is not valid YAML ({str(err).splitlines()[0]}); quote a string, "
                f"e.g. {flag} {key}='\"{raw}\"'"
            ) from None
    return data


def load_config(path: str | Path | None, overrides: list[str] = ()) -> SearchConfig:
    """Read, override and validate a YAML config (``None``: the embedded defaults)."""
    data: Any = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist; pass the path of a YAML search config")
        try:
            data = yaml.safe_load(path.read_bytes().decode("utf-8")) or {}
        except UnicodeDecodeError as err:
            raise ConfigError(f"config file {path} is not UTF-8 text (byte {err.start}); save it as UTF-8") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path} is not valid YAML: {str(err).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise ConfigError(
                f"config file {path} holds a {type(data).__name__}, not a mapping of keys; "
                "start it with e.g. `name: demo`"
            )
    return parse_config(apply_overrides(data, list(overrides)))


def frontier_costs(config: SearchConfig) -> tuple[str, ...]:
    """The costs a frontier is drawn against: every budgeted cost, else MACs."""
    keys = [b.key for b in config.budgets] or ["macs"]
    return tuple(dict.fromkeys(keys))


def is_uri(path: str) -> bool:
    """``s3://...``, ``gs://...`` (any pyarrow filesystem URI; for ``prunetune ui`` an MLflow
    store's) rather than a local path."""
    return "://" in path
