"""The taper method as a Ray Tune function trainable: one run, one report per frontier point.

:func:`taper_run` reads its options from ``config["taper"]`` (a sweep varies them per trial) and
everything fixed for the search from the :class:`~prunetune.trainables.trial.TrialSetup`. Each time the
tapering target crosses a level it reports the hardened, fine-tuned model with the same metrics
as a searched trial (``accuracy``, ``loss``, ``cost/<key>``, ``rel/<key>``, ``meets/<key>``,
``feasible``, ``finetune_steps``) plus ``level``, ``gated_<cost>`` (the analytic cost at the hard
gates) and ``counted_<cost>`` (counted on the pruned model; the two agree), and a checkpoint
with the searched trials' layout (profile.json, model.pt, state.json) beside the taper's own
state (taper.json, taper.pt), from which a restored Tuner continues.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from prunetune.budgets import report as R
from prunetune.trainables.base import load_base
from prunetune.trainables.taper import TaperRun, TaperSettings, finetune_point, level_budgets
from prunetune.trainables.train import to_device
from prunetune.trainables.trial import (
    Report,
    TrialSetup,
    example_input,
    measure_point,
    save_trial_checkpoint,
    trial_device,
)

TAPER_METHOD = "taper"  # the ``method`` a taper trial's Tune config carries


def taper_trial_config(model: str, data: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The Tune config of a taper trial (``options``: :class:`TaperSettings` fields, swept ones
    as Tune's search spaces); :func:`is_taper_trial` recognises it."""
    return {"model": model, "data": data, "method": TAPER_METHOD, "taper": dict(options)}


def is_taper_trial(config: Mapping[str, Any]) -> bool:
    """Whether a trial's Tune config (from Tune, its folder's ``params.json`` or a report) is a
    taper run's: its reports are frontier points, each with its own checkpoint."""
    return config.get("method") == TAPER_METHOD


def run_taper(setup: TrialSetup, settings: TaperSettings, report: Report, resume: Path | None = None) -> None:
    """Run the taper method and call ``report(metrics, checkpoint_dir)`` once per level.

    ``checkpoint_dir`` is a temporary folder holding the point's checkpoint and the run's state;
    it is deleted after ``report`` returns. ``resume`` is such a folder from an earlier report.
    Works without Ray (the benchmark calls it in-process); :func:`taper_run` wraps it for Tune.
    """
    device = trial_device()
    torch.manual_seed(setup.seed)
    data = setup.open_data(device)
    model = to_device(load_base(setup.model, data.num_classes, setup.base_checkpoint), device)
    taper = TaperRun(model, settings, setup.finetune, setup.prune, data, example_input(setup), seed=setup.seed)
    if resume is not None:
        taper.load(resume)
    steps = setup.finetune.steps if settings.finetune_steps is None else settings.finetune_steps
    recipe = setup.finetune.replace(steps=steps)
    for hardened in taper.points():
        point_setup = replace(setup, budgets=level_budgets(setup.budgets, settings.cost, hardened.level))

        def measure(pruned, point_setup=point_setup):
            return measure_point(point_setup, pruned, data.num_classes, data, device)

        pruned, metrics = finetune_point(
            hardened, recipe, data, measure, settings.cost, seed=setup.seed, calibration=setup.evaluate
        )
        metrics[R.counted_key(settings.cost)] = metrics[R.cost_key(settings.cost)]
        # Tune ends a trial at a report with ``done``: only the last level's report says so.
        metrics[R.DONE] = taper.state.levels_done == len(settings.levels)
        with tempfile.TemporaryDirectory() as directory:
            state = {"step": recipe.steps, R.ACCURACY_PRUNED: metrics[R.ACCURACY_PRUNED], R.LEVEL: hardened.level}
            save_trial_checkpoint(Path(directory), pruned, hardened.profile, state)
            taper.save(Path(directory))
            report(metrics, Path(directory))


def taper_run(config: dict, setup: TrialSetup) -> None:
    """Ray Tune function trainable for ``method: taper`` (``config["taper"]``: its options)."""
    from ray import tune

    settings = TaperSettings(**config.get("taper", {}))

    def report(metrics: dict, directory: Path) -> None:
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(directory)))

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        run_taper(setup, settings, report)
        return
    with checkpoint.as_directory() as directory:  # a restored or retried trial continues
        run_taper(setup, settings, report, resume=Path(directory))
