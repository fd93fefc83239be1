"""The finished trials of an experiment, read from Tune's files without starting Ray.

Tune writes one folder per trial under the experiment directory, each with ``result.json`` (one
JSON line per report; the last is the trial's final word) and ``checkpoint_00000N/`` folders.
``prunetune finetune`` adds ``finetuned/<trial>-e<N>/`` in the same shape (a one-line
``result.json`` beside the checkpoint files). :func:`read_trials` turns both into
:class:`TrialInfo` values; :func:`find_trial` and :func:`best_trial` choose one, with errors that
name the valid choices.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from prunetune.budgets.errors import ConfigError
from prunetune.trainables.trial import PROFILE_FILE, WEIGHTS_FILE

RESULT_FILE = "result.json"
FINETUNED_DIR = "finetuned"


def last_line(text: object, default: str = "failed (no reason given)") -> str:
    """The last non-blank line of an error (its text, or an exception): the one-line reason a
    trial ended with, as the CLI, ``status``, MLflow and the reports show it."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[-1] if lines else default


@dataclass(frozen=True)
class TrialInfo:
    """One trial's last report, its profile and the checkpoint that report carried."""

    trial_id: str
    metrics: Mapping[str, object]
    profile: Mapping[str, float]
    checkpoint: Path | None
    directory: Path
    source_trial: str | None = None  # set for a fine-tuned checkpoint: the trial it continued

    @property
    def finished(self) -> bool:
        return "feasible" in self.metrics and "accuracy" in self.metrics


def _last_report(path: Path) -> dict | None:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return json.loads(lines[-1]) if lines else None


def _checkpoint_of(directory: Path, metrics: Mapping[str, object]) -> Path | None:
    """The checkpoint the last report carried, else the newest one holding weights."""
    named = metrics.get("checkpoint_dir_name")
    if named and (directory / str(named) / WEIGHTS_FILE).is_file():
        return directory / str(named)
    if (directory / WEIGHTS_FILE).is_file():  # a fine-tuned checkpoint is its own folder
        return directory
    candidates = sorted(p for p in directory.glob("checkpoint_*") if (p / WEIGHTS_FILE).is_file())
    return candidates[-1] if candidates else None


def _read_trial(directory: Path) -> TrialInfo | None:
    metrics = _last_report(directory / RESULT_FILE)
    if metrics is None:
        return None
    trial_id = str(metrics.get("trial_id") or directory.name.removeprefix("trial_"))
    profile = (metrics.get("config") or {}).get("profile") or {}
    source = metrics.get("source_trial")
    return TrialInfo(trial_id, metrics, profile, _checkpoint_of(directory, metrics), directory, source)


def taper_points(directory: Path) -> list[TrialInfo]:
    """A taper run (``method: taper``) reports one frontier point per level, each with its own
    checkpoint: one TrialInfo per report, named ``<trial id>@<level>``."""
    points = []
    for line in (directory / RESULT_FILE).read_text().splitlines():
        metrics = json.loads(line) if line.strip() else {}
        if (metrics.get("config") or {}).get("method") != "taper" or "level" not in metrics:
            continue
        checkpoint = directory / str(metrics.get("checkpoint_dir_name"))
        has_profile = (checkpoint / PROFILE_FILE).is_file()
        profile = json.loads((checkpoint / PROFILE_FILE).read_text()) if has_profile else {}
        trial_id = f"{metrics.get('trial_id') or directory.name.removeprefix('trial_')}@{metrics['level']:g}"
        points.append(TrialInfo(trial_id, metrics, profile, checkpoint if has_profile else None, directory))
    return points


def read_trials(experiment: str | Path) -> dict[str, TrialInfo]:
    """Every trial with at least one report, by trial id: the search's, then fine-tuned ones.
    A taper run contributes one entry per level it reported."""
    experiment = Path(experiment)
    folders = sorted(p.parent for p in experiment.glob(f"*/{RESULT_FILE}"))
    folders += sorted(p.parent for p in (experiment / FINETUNED_DIR).glob(f"*/{RESULT_FILE}"))
    trials = {}
    for folder in folders:
        for info in taper_points(folder) or [_read_trial(folder)]:
            if info is not None:
                trials[info.trial_id] = info
    return trials


def find_trial(trials: Mapping[str, TrialInfo], trial_id: str) -> TrialInfo:
    """The trial named ``trial_id`` (a ``trial_`` prefix is accepted) or the fine-tuned checkpoint
    folder at that path, with a checkpoint."""
    info = trials.get(trial_id) or trials.get(trial_id.removeprefix("trial_"))
    if info is None and (Path(trial_id) / RESULT_FILE).is_file():
        info = _read_trial(Path(trial_id).absolute())
    if info is None:
        shown = ", ".join(list(trials)[:6]) or "none: the search has no finished trial yet"
        more = f" (and {len(trials) - 6} more)" if len(trials) > 6 else ""
        raise ConfigError(f"no trial {trial_id!r} in this experiment; valid trial ids: {shown}{more}")
    if info.checkpoint is None:
        raise ConfigError(
            f"trial {info.trial_id} has no checkpoint in {info.directory} (it errored or stopped before "
            "its first report); choose another trial, e.g. with --best"
        )
    return info


@dataclass(frozen=True)
class BudgetFilter:
    """``NAME<=VALUE`` on the command line: ``macs<=40%`` is relative to the dense model
    (``rel/macs <= 0.40``), ``macs<=1.2e6`` is absolute (``cost/macs <= 1.2e6``)."""

    cost: str
    limit: float
    relative: bool

    @property
    def metric(self) -> str:
        return f"{'rel' if self.relative else 'cost'}/{self.cost}"

    @property
    def label(self) -> str:
        return f"{self.cost}<={self.limit * 100:g}%" if self.relative else f"{self.cost}<={self.limit:g}"

    def admits(self, metrics: Mapping[str, object]) -> bool:
        value = metrics.get(self.metric)
        return value is not None and float(value) <= self.limit * (1 + 1e-9)


_FILTER = re.compile(r"^\s*([A-Za-z_][\w.-]*)\s*<=\s*([0-9.eE+-]+)\s*(%?)\s*$")


def parse_budget_filter(text: str) -> BudgetFilter:
    """A :class:`BudgetFilter` from ``NAME<=VALUE`` or ``NAME<=PERCENT%``."""
    match = _FILTER.match(text)
    value = None
    if match:
        try:
            value = float(match.group(2))
        except ValueError:
            value = None
    if value is None or not math.isfinite(value) or value <= 0:
        raise ConfigError(
            f"--budget {text!r} is not NAME<=VALUE; write e.g. macs<=40% (relative to the dense "
            "model) or params<=25000 (absolute)"
        )
    relative = match.group(3) == "%"
    return BudgetFilter(match.group(1), value / 100 if relative else value, relative)


def best_trial(trials: Mapping[str, TrialInfo], budget: BudgetFilter | None = None) -> TrialInfo:
    """The feasible search trial (not a fine-tuned copy) with the highest accuracy, optionally
    also within ``budget``; ties go to the cheaper trial by MACs."""
    finished = [t for t in trials.values() if t.finished and t.source_trial is None and t.checkpoint]
    if budget is not None and finished and not any(budget.metric in t.metrics for t in finished):
        known = sorted({k.split("/", 1)[1] for t in finished for k in t.metrics if k.startswith("cost/")})
        raise ConfigError(f"--budget {budget.label}: trials report no cost {budget.cost!r}; costs reported: {', '.join(known)}")
    feasible = [t for t in finished if t.metrics["feasible"] and (budget is None or budget.admits(t.metrics))]
    if not feasible:
        within = f" within {budget.label}" if budget else ""
        raise ConfigError(
            f"no feasible trial{within} among {len(finished)} finished trials; loosen --budget, run more "
            "trials, or pick one with --trial ID"
        )
    return max(feasible, key=lambda t: (float(t.metrics["accuracy"]), -float(t.metrics.get("cost/macs", 0.0))))
