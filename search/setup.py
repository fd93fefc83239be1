"""From a validated config to what every trial of the search uses.

:func:`trial_setup` turns a :class:`~prunetune.search.config.SearchConfig` into the
:class:`~prunetune.trainables.TrialSetup` that Ray ships to every trial; :func:`specs` gives the
model, data and base-training recipe a base model is trained from; :func:`with_extra_bases`
adds the setups of ``bases:`` (the multi-model search of the out-of-the-box profiles paper,
arXiv:2004.14584). Both a new search (``run.prepare``) and a finished or interrupted one
(``store.manifest``) build trials this way, so a resumed trial is the trial that was started.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from prunetune.search.config import DataConfig, SearchConfig
from prunetune.trainables import DataSpec, ModelSpec, Recipe, TrialSetup
from prunetune.trainables.data.feed import DataLoad


def data_spec(data: DataConfig) -> DataSpec:
    """The data set of a config section, with how trials read it (the augmentation resolved
    against the set's kind; ``standard`` stays None, so a base's name does not change)."""
    augment = None
    if data.augment != "standard":
        from prunetune.trainables.data import dataset_kind
        from prunetune.trainables.data.augment import resolve

        given = data.augment if isinstance(data.augment, str) else data.augment.model_dump(exclude_none=True)
        augment = resolve(given, dataset_kind(data.name))
    reading = DataLoad(data.mode, augment, data.cache_dir, data.workers)
    return DataSpec(data.name, data.root, data.seed, tuple(sorted(data.options.items())), reading)


def model_spec(config: SearchConfig) -> ModelSpec:
    """The architecture of ``config`` (all that a cost or a group name depends on)."""
    return ModelSpec(config.model.name, config.model.width, config.model.input_size, config.model.weights)


def specs(config: SearchConfig) -> tuple[ModelSpec, DataSpec, Recipe]:
    """The model, data set and base-model training recipe of ``config`` (lengths in steps:
    a config with epochs is :meth:`~SearchConfig.resolved` first, see :func:`with_steps`)."""
    return model_spec(config), data_spec(config.data), config.base.as_recipe()


def with_steps(config: SearchConfig) -> SearchConfig:
    """``config`` with its lengths in epochs resolved to steps, from its training split's size
    (the data set opened for it): for a command that trains without preparing a search."""
    if not config.in_epochs():
        return config
    return config.resolved(len(data_spec(config.data).open(config.model.input_size)))


def trial_setup(config: SearchConfig) -> TrialSetup:
    """The trial settings of ``config`` (``base_checkpoint`` as configured, maybe empty)."""
    model, data, _ = specs(config)
    return TrialSetup(
        model=model,
        data=data,
        base_checkpoint=config.base.checkpoint or "",
        prune=config.prune,
        finetune=config.finetune.as_recipe(),
        budgets=tuple(config.budgets),
        seed=config.seed,
        checkpoint_every=config.checkpoint_every,
        evaluate=config.evaluate,
        report_every=config.scheduler.period,
    )


def with_extra_bases(config: SearchConfig, setup: TrialSetup, checkpoints: Sequence[str]) -> TrialSetup:
    """``setup`` carrying one trial setup per extra base model (same recipe, own data and
    checkpoint), so each trial also evaluates its profile there; unchanged without ``bases``."""
    if not config.bases:
        return setup
    others = tuple(
        replace(
            setup, data=data_spec(extra.data or config.data), base_checkpoint=checkpoint, label=config.base_label(extra)
        )
        for extra, checkpoint in zip(config.bases, checkpoints, strict=True)
    )
    return replace(setup, label=config.base_label(None), others=others)
