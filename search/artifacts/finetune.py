"""Fine-tuning a chosen trial at full length, after the search.

A search's trials fine-tune briefly: their accuracy is an estimate that ranks profiles. The
profile a user keeps deserves a long fine-tune (the constrained-RL paper, arXiv:2110.08558, trains
its final profile for tens of thousands of steps). :func:`finetune_trial` continues the trial's
checkpoint for whole epochs of the training set with the search's fine-tune recipe (SGD,
learning rate, batch size, momentum, weight decay; one cosine decay over the whole run),
evaluates it, and writes a new checkpoint in the trial layout under
``<experiment>/finetuned/<trial>-e<N>/`` with a one-line ``result.json``, so
``prunetune export --trial <trial>-e<N>`` exports it like any trial.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from prunetune.budgets import report as R
from prunetune.budgets.errors import ConfigError
from prunetune.search.store.trials import FINETUNED_DIR, RESULT_FILE, TrialInfo
from prunetune.trainables import Profile, save_trial_checkpoint
from prunetune.trainables.trial import PROFILE_FILE, finetune_checkpoint


@dataclass(frozen=True)
class FinetuneResult:
    trial_id: str
    source_trial: str
    directory: Path
    epochs: int
    steps: int
    accuracy: float
    loss: float
    estimate: float  # the search's accuracy for this trial


def finetune_trial(
    manifest,
    trial: TrialInfo,
    epochs: int,
    *,
    out: str | Path | None = None,
    force: bool = False,
    show_progress: bool = True,
) -> FinetuneResult:
    """Continue ``trial``'s checkpoint for ``epochs`` epochs; write and return the result."""
    if epochs < 1:
        raise ConfigError(f"--epochs {epochs} must be at least 1")
    new_id = f"{trial.trial_id}-e{epochs}"
    out = Path(out).absolute() if out else manifest.directory / FINETUNED_DIR / new_id
    if out.exists() and not force:
        raise ConfigError(f"output {out} already exists; choose another --out or pass --force to replace it")
    model, recipe, accuracy, loss = finetune_checkpoint(
        manifest.setup(),
        trial.checkpoint,
        manifest.num_classes,
        epochs,
        label=trial.trial_id,
        show_progress=show_progress,
    )
    result = FinetuneResult(new_id, trial.trial_id, out, epochs, recipe.steps, accuracy, loss, trial.report.accuracy)
    _write(result, model, trial, recipe)
    return result


def _write(result: FinetuneResult, model, trial: TrialInfo, recipe) -> None:
    """The checkpoint and its one-line result.json, written beside ``out`` then moved in."""
    out = result.directory
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    profile = Profile.from_json((trial.checkpoint / PROFILE_FILE).read_text())
    save_trial_checkpoint(tmp, model, profile, {"step": recipe.steps, R.SOURCE_TRIAL: trial.trial_id})
    kept = {k: v for k, v in trial.metrics.items() if k.startswith((R.COST, R.RELATIVE, R.MEETS, R.LIMIT))}
    metrics = {
        "trial_id": result.trial_id,
        R.SOURCE_TRIAL: trial.trial_id,
        R.ACCURACY: result.accuracy,
        R.LOSS: result.loss if math.isfinite(result.loss) else None,
        "search_accuracy": result.estimate,
        "epochs": result.epochs,
        R.FINETUNE_STEPS: result.steps,
        "recipe": recipe.model_dump(),
        R.FEASIBLE: trial.metrics.get(R.FEASIBLE),
        **kept,  # pruning fixed the structure: costs are the trial's (export recounts them)
        "config": {"profile": dict(profile.ratios)},
    }
    (tmp / RESULT_FILE).write_text(json.dumps(metrics) + "\n")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
