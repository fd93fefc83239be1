"""A trial's fine-tune survives an interruption (trainables/trial.py run_trial, resume_finetune):
a retried trial continues from its checkpoint and ends exactly where an uninterrupted one ends."""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from prunetune.trainables import Profile, Recipe, run_trial
from prunetune.trainables.base import DataSpec, ModelSpec
from prunetune.trainables.trial import OPTIM_FILE, WEIGHTS_FILE, TrialSetup, resume_finetune

PROFILE = Profile({"stem.0": 0.5, "layer2.0.conv1": 0.5, "layer3.0.conv1": 0.25})


class Interrupted(Exception):
    """The trial's process dies right after a checkpoint was reported."""


def _setup(tiny_base: Path) -> TrialSetup:
    recipe = Recipe(steps=6, lr=0.05, batch_size=32)
    return TrialSetup(
        ModelSpec("resnet20", 0.25, 8), DataSpec("digits"), str(tiny_base), finetune=recipe, checkpoint_every=2
    )


def _trial(
    setup: TrialSetup, keep: Path, *, resume: Path | None = None, die_after: int | None = None
) -> list[tuple[dict, Path]]:
    """Run one trial as Tune would; every reported checkpoint is kept (copied) under ``keep``."""
    reports: list[tuple[dict, Path]] = []

    def report(metrics: dict, directory: Path) -> None:
        kept = keep / f"step{metrics['finetune_steps']}"
        shutil.copytree(directory, kept)
        reports.append((metrics, kept))
        if metrics["finetune_steps"] == die_after:
            raise Interrupted

    with contextlib.suppress(Interrupted):
        run_trial(setup, PROFILE, report, resume=resume)
    return reports


def _weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint / WEIGHTS_FILE, weights_only=True)


@pytest.mark.parametrize("die_after", [2, 4])
def test_a_retried_trial_ends_with_exactly_the_weights_of_an_uninterrupted_one(tiny_base, tmp_path, die_after):
    setup = _setup(tiny_base)
    straight = _trial(setup, tmp_path / "straight")
    interrupted = _trial(setup, tmp_path / "interrupted", die_after=die_after)
    assert [m["finetune_steps"] for m, _ in interrupted] == list(range(2, die_after + 1, 2))
    retried = _trial(setup, tmp_path / "retried", resume=interrupted[-1][1])
    assert [m["finetune_steps"] for m, _ in retried] == list(range(die_after + 2, 7, 2))

    (expected, expected_dir), (got, got_dir) = straight[-1], retried[-1]
    assert got["done"] and got["finetune_steps"] == expected["finetune_steps"] == 6
    want, have = _weights(expected_dir), _weights(got_dir)
    assert want.keys() == have.keys()
    assert all(torch.equal(want[key], have[key]) for key in want)
    for key in ("accuracy", "loss", "accuracy_pruned"):
        assert got[key] == expected[key], key


def test_a_checkpoint_without_optimizer_state_still_continues_the_lr_schedule(tiny_base, tmp_path):
    """Checkpoints written before optim.pt existed: the cosine decay resumes at its step."""
    setup = _setup(tiny_base)
    (_, checkpoint), *_ = _trial(setup, tmp_path, die_after=2)
    saved = torch.load(checkpoint / OPTIM_FILE, weights_only=True)
    (checkpoint / OPTIM_FILE).unlink()
    from prunetune.trainables.trial import pruned_model

    model = pruned_model(setup, PROFILE, 10)
    _, (optimizer, _), state = resume_finetune(model, setup.finetune, torch.device("cpu"), checkpoint)
    assert state["step"] == 2
    assert optimizer.param_groups[0]["lr"] == saved["optimizer"]["param_groups"][0]["lr"] < setup.finetune.lr


# --- cheap evaluation, rungs and confirmation --------------------------------------------


def _reports(setup: TrialSetup, **kwargs) -> list[dict]:
    reports: list[dict] = []
    run_trial(setup, PROFILE, lambda metrics, _: reports.append(metrics), **kwargs)
    return reports


def test_bn_recalibration_recovers_accuracy_the_pruning_lost(tiny_base):
    """Pruned channels shift every later layer's statistics; re-estimating them is what makes a
    0-step accuracy worth ranking profiles by (EagleEye's adaptive BN)."""
    from prunetune.trainables import EvalSettings

    heavy = Profile({"stem.0": 0.25, "layer1.0.conv1": 0.25, "layer2.0.conv1": 0.25, "layer3.0.conv1": 0.25})
    setup = replace(_setup(tiny_base), checkpoint_every=0)
    raw, recalibrated = ([] for _ in range(2))
    run_trial(replace(setup, evaluate=EvalSettings(recalibrate_bn=0)), heavy, lambda m, _: raw.append(m), steps=0)
    run_trial(setup, heavy, lambda m, _: recalibrated.append(m), steps=0)
    assert recalibrated[-1]["accuracy"] > raw[-1]["accuracy"] + 0.05
    assert recalibrated[-1]["accuracy"] == recalibrated[-1]["accuracy_pruned"]  # 0 steps: the pruned model's figure


def test_trials_report_at_every_rung_with_costs_so_a_stopped_trial_is_a_point(tiny_base):
    setup = replace(_setup(tiny_base), checkpoint_every=0, report_every=2)
    reports = _reports(setup)
    assert [m["rung_steps"] for m in reports] == [2, 4, 6] and [m["done"] for m in reports] == [False, False, True]
    assert all("cost/macs" in m and "feasible" in m for m in reports)
    assert "test/accuracy" not in reports[-1]  # search trials never look at the test split


def test_a_confirmation_trains_with_its_own_seed_and_reports_test_accuracy(tiny_base):
    from prunetune.trainables.trial import Confirmation

    setup = replace(_setup(tiny_base), checkpoint_every=0, report_every=2)
    first, second = (_reports(setup, confirm=Confirmation("t1", seed)) for seed in (0, 1))
    assert len(first) == 1 and "rung_steps" not in first[0]  # no rung: a scheduler never stops it
    assert first[0]["confirms"] == "t1" and 0 <= first[0]["test/accuracy"] <= 1
    assert first[0]["loss"] != second[0]["loss"]  # another seed, another fine-tune
