"""Tune's trial folders, read without starting Ray: the one reader every command uses.

Tune writes one folder per trial under the experiment directory: ``result.json`` (one JSON line
per report; the last whole one is the trial's latest word), ``params.json`` (its config),
``error.txt`` when it errored and ``checkpoint_00000N/`` folders. ``prunetune finetune`` adds
``finetuned/<trial>-e<N>/`` in the same shape (a one-line ``result.json`` beside the checkpoint
files). :func:`read_trial_folder` reads one folder as a :class:`TrialFolder`, with one rule for a
report cut short by a crash (it is skipped: the previous whole report stands), so ``status``,
``export``, ``finetune`` and ``sync`` agree on every trial. :func:`read_trials` turns an
experiment into :class:`TrialInfo` values; :func:`find_trial` and :func:`best_trial` choose one,
with errors that name the valid choices.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from prunetune.budgets import report as R
from prunetune.budgets.errors import ConfigError
from prunetune.budgets.report import TrialReport
from prunetune.trainables.taper_trial import is_taper_trial
from prunetune.trainables.trial import PROFILE_FILE, WEIGHTS_FILE

RESULT_FILE = "result.json"
PARAMS_FILE = "params.json"
ERROR_FILE = "error.txt"
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
        return R.is_finished(self.metrics)

    @property
    def report_done(self) -> bool:
        """Whether the last report is the trial's last word (it ran its whole fine-tune)."""
        return self.finished and bool(self.metrics.get(R.DONE))

    @functools.cached_property
    def report(self) -> TrialReport:
        """The last report read through the schema, once (only for a :attr:`finished` trial)."""
        return TrialReport.read(self.metrics)


def point_id(trial_id: str, level: float) -> str:
    """A taper point's name: its run's trial id and the level it was hardened at."""
    return f"{trial_id}@{level:g}"


def read_reports(path: Path) -> tuple[dict, ...]:
    """Every whole report in a ``result.json``, oldest first (none when the file is missing).

    A line that does not parse was cut short (a crash, a full disk, a hand edit): it is skipped.
    When no whole report follows it, the trial's last word is lost: :func:`read_trial_folder`
    records that as the folder's ``damage``, and every command leaves the trial out and names
    the file instead of judging the trial by an older report."""
    return _parse_reports(path)[0]


def _parse_reports(path: Path) -> tuple[tuple[dict, ...], str | None]:
    """The whole reports of ``path`` and what is wrong with the file (None when nothing)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return (), None
    except (OSError, UnicodeDecodeError) as err:
        return (), f"cannot be read ({err.__class__.__name__}: {err})"
    reports, cut = [], None
    lines = text.splitlines()
    for number, line in enumerate(lines, start=1):
        try:
            report = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:
            cut = number
            continue
        if isinstance(report, dict):
            reports.append(report)
            cut = None  # a whole report after a cut line: a resumed trial wrote on past the crash
    if cut is None:
        return tuple(reports), None
    return tuple(reports), f"line {cut} of {len(lines)}, its last report, is not whole JSON (cut short)"


@dataclass(frozen=True)
class TrialFolder:
    """One trial folder of Tune's (or a fine-tuned checkpoint folder) as written so far.

    ``config`` is the last report's, else ``params.json``'s (a trial that errored before its
    first report has only that); ``error`` is the last line of ``error.txt``, None when the
    trial did not error."""

    directory: Path
    reports: tuple[dict, ...]
    config: Mapping[str, object]
    error: str | None
    damage: str | None = None  # what is wrong with the folder's files (a cut last report), None when whole

    @property
    def last(self) -> dict:
        """The last whole report, empty before the first."""
        return self.reports[-1] if self.reports else {}

    @property
    def trial_id(self) -> str:
        return str(self.last.get("trial_id") or self.directory.name.removeprefix("trial_"))

    @property
    def profile(self) -> dict[str, float]:
        return dict(self.config.get("profile") or {})

    @property
    def is_taper(self) -> bool:
        return is_taper_trial(self.config)

    @property
    def checkpoint(self) -> Path | None:
        """The checkpoint the last report carried, else the newest one holding weights."""
        named = self.last.get("checkpoint_dir_name")
        if named and (self.directory / str(named) / WEIGHTS_FILE).is_file():
            return self.directory / str(named)
        if (self.directory / WEIGHTS_FILE).is_file():  # a fine-tuned checkpoint is its own folder
            return self.directory
        found = sorted(p for p in self.directory.glob("checkpoint_*") if (p / WEIGHTS_FILE).is_file())
        return found[-1] if found else None

    def info(self) -> TrialInfo | None:
        """The trial judged by its last report; None before its first."""
        if not self.reports:
            return None
        source = self.last.get(R.SOURCE_TRIAL)
        return TrialInfo(self.trial_id, self.last, self.profile, self.checkpoint, self.directory, source)

    def taper_points(self) -> list[TrialInfo]:
        """A taper run (``method: taper``) reports one frontier point per level, each with its
        own checkpoint: one TrialInfo per such report, named ``<trial id>@<level>``."""
        if not self.is_taper:
            return []
        points = []
        for metrics in self.reports:
            if R.LEVEL not in metrics:
                continue
            checkpoint = self.directory / str(metrics.get("checkpoint_dir_name"))
            has_profile = (checkpoint / PROFILE_FILE).is_file()
            profile = json.loads((checkpoint / PROFILE_FILE).read_text()) if has_profile else {}
            trial_id = point_id(str(metrics.get("trial_id") or self.trial_id), metrics[R.LEVEL])
            points.append(TrialInfo(trial_id, metrics, profile, checkpoint if has_profile else None, self.directory))
        return points


def _read_json(path: Path) -> dict | None:
    """A whole JSON object file, or None when it is missing or was cut short."""
    try:
        blob = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return blob if isinstance(blob, dict) else None


def read_trial_folder(directory: Path) -> TrialFolder:
    """Read one trial folder (any of its files may be missing). An ``error.txt`` beside a last
    report that says ``done`` is an earlier attempt's: a resumed search ran the trial again and
    it finished, so the folder has no error."""
    reports, damage = _parse_reports(directory / RESULT_FILE)
    config = reports[-1].get("config") if reports else None
    if not config:
        config = _read_json(directory / PARAMS_FILE)
    error = directory / ERROR_FILE
    reason = last_line(error.read_text()) if error.is_file() else None
    if reason is not None and reports and reports[-1].get(R.DONE):
        reason = None
    if damage is not None:  # an error.txt explains a trial's end better than the line it cut
        damage = None if reason is not None else f"{directory / RESULT_FILE}: {damage}"
    return TrialFolder(directory, reports, config or {}, reason, damage)


@dataclass(frozen=True)
class Damaged:
    """A trial folder no command can trust: which trial, and the file and what is wrong with it."""

    trial_id: str
    problem: str  # "<path>: <what is wrong>"

    def line(self, action: str = "left out") -> str:
        return f"trial {self.trial_id}: {self.problem}; {action}"


def trial_folders(experiment: Path) -> list[Path]:
    """The experiment's trial folders (those holding a result or params file), then the
    fine-tuned checkpoints' folders."""
    experiment = Path(experiment)
    found = {p.parent for name in (RESULT_FILE, PARAMS_FILE) for p in experiment.glob(f"trial_*/{name}")}
    return sorted(found) + sorted(p.parent for p in (experiment / FINETUNED_DIR).glob(f"*/{RESULT_FILE}"))


def damaged_trials(experiment: str | Path) -> list[Damaged]:
    """Every trial folder whose files are damaged (a report line cut short, an unreadable
    file): :func:`read_trials` leaves them out, and each command names them."""
    damaged = []
    for folder in map(read_trial_folder, trial_folders(Path(experiment))):
        if folder.damage is not None:
            damaged.append(Damaged(folder.directory.name.removeprefix("trial_"), folder.damage))
    return damaged


def read_trials(experiment: str | Path) -> dict[str, TrialInfo]:
    """Every trial with at least one report, by trial id: the search's, then fine-tuned ones.
    A taper run contributes one entry per level it reported. Damaged folders are left out
    (:func:`damaged_trials` names them)."""
    experiment = Path(experiment)
    folders = sorted(p.parent for p in experiment.glob(f"*/{RESULT_FILE}"))
    folders += sorted(p.parent for p in (experiment / FINETUNED_DIR).glob(f"*/{RESULT_FILE}"))
    trials = {}
    for folder in map(read_trial_folder, folders):
        if folder.damage is not None:
            continue
        for info in folder.taper_points() or [folder.info()]:
            if info is not None:
                trials[info.trial_id] = info
    return trials


def find_trial(trials: Mapping[str, TrialInfo], trial_id: str, experiment: Path | None = None) -> TrialInfo:
    """The trial named ``trial_id`` (a ``trial_`` prefix is accepted) or the fine-tuned checkpoint
    folder at that path, with a checkpoint. A trial whose folder is in ``experiment`` but that
    cannot be used (damaged, no report) is an error saying why."""
    info = trials.get(trial_id) or trials.get(trial_id.removeprefix("trial_"))
    if info is None and (Path(trial_id) / RESULT_FILE).is_file():
        info = read_trial_folder(Path(trial_id).absolute()).info()
    if info is None:
        _explain_unusable(trials, trial_id, experiment)
        shown = ", ".join(list(trials)[:6]) or "none: the search has no finished trial yet"
        more = f" (and {len(trials) - 6} more)" if len(trials) > 6 else ""
        raise ConfigError(f"no trial {trial_id!r} in this experiment; valid trial ids: {shown}{more}")
    if info.checkpoint is None:
        raise ConfigError(
            f"trial {info.trial_id} has no checkpoint in {info.directory} (it errored or stopped before "
            "its first report); choose another trial, e.g. with --best"
        )
    return info


def _explain_unusable(trials: Mapping[str, TrialInfo], trial_id: str, experiment: Path | None) -> None:
    """A trial whose folder exists but that no command can use: an error saying why."""
    name = trial_id.removeprefix("trial_")
    experiments = {experiment} if experiment else {t.directory.parent for t in trials.values() if not t.source_trial}
    for experiment in experiments:
        directory = experiment / f"trial_{name}"
        if directory.is_dir():
            folder = read_trial_folder(directory)
            why = folder.damage or (
                f"it errored before its first report ({folder.error})" if folder.error else "it has no report yet"
            )
            raise ConfigError(
                f"trial {name} ({directory}) cannot be used: {why}; choose another trial, e.g. with --best"
            )


@dataclass(frozen=True)
class BudgetFilter:
    """``NAME<=VALUE`` on the command line: ``macs<=40%`` is relative to the dense model
    (``rel/macs <= 0.40``), ``macs<=1.2e6`` is absolute (``cost/macs <= 1.2e6``)."""

    cost: str
    limit: float
    relative: bool

    @property
    def label(self) -> str:
        return f"{self.cost}<={self.limit * 100:g}%" if self.relative else f"{self.cost}<={self.limit:g}"

    def _value(self, report: TrialReport) -> float | None:
        return (report.relative if self.relative else report.costs).get(self.cost)

    def measured(self, report: TrialReport) -> bool:
        """Whether ``report`` holds the cost this filter reads."""
        return self._value(report) is not None

    def admits(self, report: TrialReport) -> bool:
        value = self._value(report)
        return value is not None and value <= self.limit * (1 + 1e-9)


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
    """The trial holding the search's best profile (:mod:`~prunetune.search.store.best`),
    optionally among those within ``budget``: see :func:`choose_best`."""
    return choose_best(trials, budget)[0]


def choose_best(trials: Mapping[str, TrialInfo], budget: BudgetFilter | None = None):
    """The trial holding the search's best profile by the one definition of best
    (:func:`~prunetune.search.store.best.best_of`: confirmed test accuracy where the search
    confirmed, else validation accuracy), optionally among trials within ``budget``, with its
    :class:`~prunetune.search.store.best.Best` (the figure and which accuracy it is)."""
    from prunetune.search.store.best import best_of, search_records

    finished = [t for t in trials.values() if t.finished and t.source_trial is None]
    if budget is not None and finished and not any(budget.measured(t.report) for t in finished):
        known = sorted({key for t in finished for key in t.report.costs})
        raise ConfigError(
            f"--budget {budget.label}: trials report no cost {budget.cost!r}; costs reported: {', '.join(known)}"
        )
    admitted = [t for t in finished if budget is None or budget.admits(t.report)]
    best = best_of(search_records(admitted))
    if best is None:
        within = f" within {budget.label}" if budget else ""
        raise ConfigError(
            f"no feasible trial{within} among {len(finished)} finished trials; loosen --budget, run more "
            "trials, or pick one with --trial ID"
        )
    info = trials[best.trial_id]
    if info.checkpoint is None:
        raise ConfigError(
            f"the best trial {best.trial_id} ({best.label}) has no checkpoint in {info.directory}; "
            "pick another with --trial ID"
        )
    return info, best
