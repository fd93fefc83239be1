"""A trial that varies what the search fixes: the base model, the criterion or the seed.

The experiments of ``prunetune experiment criteria``/``transfer`` evaluate the same
profiles several ways in one Tune run. :func:`prune_and_finetune_variant` is the ordinary
:func:`~prunetune.trainables.trial.prune_and_finetune` with per-trial overrides read from the trial's
config, so every variant prunes, fine-tunes, measures and checkpoints exactly like a search
trial:

- ``base``: the key of one of the ``bases`` setups (another data set or base model);
- ``criterion``: the channel criterion (any registered one, e.g. ``l1`` or ``taylor``);
- ``seed``: the trial's seed and ``prune.seed`` (random channel choice, fine-tune batch order).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from prunetune.trainables.trial import TrialSetup, prune_and_finetune

VARIANT_KEYS = ("base", "criterion", "seed")
VARIES = "varies"  # a variant trial's config key: which of VARIANT_KEYS its experiment varies


def variant_label(config: Mapping) -> str:
    """What a variant trial tests, in words (``criterion l1, seed 2``): the keys its config's
    ``varies`` names; empty for a search trial. MLflow names the trial's run after it, so the
    runs of ``prunetune experiment`` read as what they vary."""
    return ", ".join(f"{key} {config[key]}" for key in config.get(VARIES) or () if key in config)


def variant_setup(config: Mapping, setup: TrialSetup, bases: Mapping[str, TrialSetup] | None = None) -> TrialSetup:
    """``setup`` with the overrides ``config`` names (see the module docstring)."""
    if "base" in config:
        setup = (bases or {})[config["base"]]
    if "criterion" in config:
        setup = replace(setup, prune=setup.prune.replace(criterion=str(config["criterion"])))
    if "seed" in config:  # the random criterion's dense ranking is seeded by the prune settings
        seed = int(config["seed"])
        setup = replace(setup, seed=seed, prune=setup.prune.replace(seed=seed))
    return setup


def prune_and_finetune_variant(config: dict, setup: TrialSetup, bases: Mapping[str, TrialSetup] | None = None) -> None:
    """Ray Tune function trainable: :func:`prune_and_finetune` under :func:`variant_setup`."""
    prune_and_finetune(config, variant_setup(config, setup, bases))
