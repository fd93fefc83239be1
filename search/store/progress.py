"""Where a search stands, read from its experiment folder without starting Ray.

:func:`read_progress` reads Tune's latest ``experiment_state-*.json`` snapshot and every
``trial_*/result.json`` (through :func:`~prunetune.search.store.trials.read_trial_folder`): a
trial is *done* when Tune marked it terminated or its last whole report says ``done`` (a report
written after the last snapshot still counts), *errored* with the last line of its
``error.txt``, else *running* or *pending*. ``prunetune status`` prints it; a search
whose driver died shows its in-flight trials as running until ``prunetune resume`` runs them.

A search is *finished* when its last run ended on its own (``frontier.json`` written after the
newest trial report and not marked partial) with no trial running or pending: then nothing is
left, even when its searcher ran out of profiles before the configured trial count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from prunetune.budgets import report as R
from prunetune.budgets.errors import ConfigError
from prunetune.search.config import is_uri
from prunetune.search.store.manifest import read_manifest
from prunetune.search.store.trials import read_trial_folder

_RUNNING = {"RUNNING", "PAUSED"}
# The last whole snapshot set (written by the run's snapshot keeper, which imports Ray): generation
# folders under KEEP_DIR, the current one named in KEEP_DIR/CURRENT.
KEEP_DIR = ".prunetune-snapshot"
CURRENT = "CURRENT"


@dataclass(frozen=True)
class TrialState:
    trial_id: str
    status: str  # done | errored | running | pending | damaged
    accuracy: float | None = None
    feasible: bool = False
    reason: str = ""


@dataclass(frozen=True)
class Progress:
    name: str
    directory: Path
    configured: int
    trials: list[TrialState] = field(default_factory=list)
    finished: bool = False

    def having(self, status: str) -> list[TrialState]:
        return [t for t in self.trials if t.status == status]

    @property
    def left(self) -> int:
        """Trials still to run: none once the search finished, else the configured count minus
        the done and errored ones (an errored trial is not left: ``resume`` retries it)."""
        if self.finished:
            return 0
        ended = len(self.having("done")) + len(self.having("errored")) + len(self.having("damaged"))
        return max(0, self.configured - ended)


def kept_dir(directory: Path) -> Path | None:
    """The folder of the last whole snapshot set kept for ``directory``, if any."""
    try:
        name = (directory / KEEP_DIR / CURRENT).read_text().strip()
    except OSError:
        return None
    kept = directory / KEEP_DIR / name
    return kept if name and kept.is_dir() else None


def newest_snapshot_blob(directory: Path) -> dict | None:
    """Tune's newest experiment snapshot as a resume would restore it, parsed (None before the
    first): the last whole copy the run's snapshot keeper (``search/run/snapshots.py``) kept of
    the newest session's file, else that file itself. Tune's own copy may be a step newer, or
    cut short by a crash; ``resume`` puts the kept set back, so this is what it continues from."""
    snapshots = sorted(directory.glob("experiment_state-*.json"))  # session timestamps sort
    if not snapshots:
        return None
    kept = kept_dir(directory)
    for path in (*([kept / snapshots[-1].name] if kept else []), snapshots[-1]):
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
    return None


def snapshot_states(directory: Path) -> dict[str, str]:
    """Trial id -> Tune status in the newest experiment snapshot (empty before the first,
    or when no whole copy of it is left: then the trial folders alone tell the story)."""
    states = {}
    for trial_json, _runtime in (newest_snapshot_blob(directory) or {"trial_data": []})["trial_data"]:
        trial = json.loads(trial_json)
        states[trial["trial_id"]] = trial["status"]
    return states


def _trial_state(trial_id: str, tune_status: str, trial_dir: Path, ended: bool = False) -> TrialState:
    """One trial's state. Once the search ended (``ended``), nothing runs: a trial Tune's last
    snapshot still calls running (the snapshot predates its end) errored, with its
    ``error.txt`` or, without one, as stopped before its last report."""
    folder = read_trial_folder(trial_dir)
    if folder.damage is not None:
        return TrialState(trial_id, "damaged", reason=folder.damage)
    report = folder.last
    if report.get(R.DONE) or tune_status == "TERMINATED":
        accuracy = report.get(R.ACCURACY)
        return TrialState(trial_id, "done", accuracy, bool(report.get(R.FEASIBLE)))
    if tune_status == "ERROR" or (ended and folder.error is not None):
        return TrialState(trial_id, "errored", reason=folder.error or "failed (no error.txt)")
    if ended and report:
        return TrialState(trial_id, "errored", reason="stopped before its last report (no error.txt)")
    return TrialState(trial_id, "running" if tune_status in _RUNNING or report else "pending")


def ended_on_its_own(directory: Path) -> bool:
    """Whether the experiment's last run wrote a whole (not partial) frontier after every
    trial's last report: it ended by itself, not by Ctrl-C or a crash."""
    frontier = directory / "frontier.json"
    try:
        if json.loads(frontier.read_text()).get("partial", False):
            return False
        written = frontier.stat().st_mtime
    except (OSError, json.JSONDecodeError, AttributeError):
        return False
    reports = (p.stat().st_mtime for p in directory.glob("trial_*/result.json"))
    return all(mtime <= written for mtime in reports)


def read_progress(directory: str | Path, configured: int | None = None) -> Progress:
    """What is done, errored, running and left in the experiment at ``directory``;
    ``configured`` is how many trials the search makes (the config's ``trials`` by default;
    a taper sweep makes one per combination: ``Method.trial_count``)."""
    manifest = read_manifest(directory)
    if is_uri(manifest.config.storage_path):
        raise ConfigError(
            f"the trials of {manifest.config.name!r} are in {manifest.config.storage_path}; status reads "
            f"local or mounted experiment folders only: look there, or in MLflow"
        )
    states = snapshot_states(manifest.directory)
    on_disk = {p.name.removeprefix("trial_") for p in manifest.directory.glob("trial_*") if p.is_dir()}
    ended = ended_on_its_own(manifest.directory)
    trials = [
        _trial_state(trial_id, states.get(trial_id, "PENDING"), manifest.directory / f"trial_{trial_id}", ended)
        for trial_id in sorted(states.keys() | on_disk)
    ]
    idle = not any(t.status in ("running", "pending") for t in trials)
    finished = idle and bool(trials) and ended
    count = manifest.config.trials if configured is None else configured
    return Progress(manifest.config.name, manifest.directory, count, trials, finished)
