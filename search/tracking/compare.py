"""``prunetune compare``: several searches' frontiers on the same axes, from MLflow.

Each name is a study (an MLflow experiment: every search in it) or a search's parent run id.
Trials come from the child runs' metrics, so searches that ran elsewhere against the same
tracking server compare too. The x axis is a cost relative to each search's dense model, so
searches of different base models still share it. At each budget level (10%, 20%, ... 100% of
dense), a search's best accuracy counts every finished trial whose cost is within that level,
with the trials and CPU hours it had spent, in completion order, when it first reached it.
Each search's dense model is the reference: its accuracy is a row of the table (and the csv
and json) and a point at 100% of dense cost in the figures, read from the parent run's
``dense_accuracy`` metric, else from the experiment folder the run names, when it is here.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from prunetune.budgets import report as R
from prunetune.budgets.errors import ConfigError, PrunetuneError
from prunetune.budgets.report import TrialReport
from prunetune.search.store.best import CONFIRMED, VALIDATION
from prunetune.search.store.frontier import pareto_front
from prunetune.search.tracking.tracker import DENSE_METRIC, PARENT_ID, TAG_CONFIRMS, TAG_ROLE, TAG_TRIAL_ID

LEVELS = tuple(round(0.1 * i, 1) for i in range(1, 11))


@dataclass(frozen=True)
class ComparedTrial:
    trial_id: str
    accuracy: float
    relative: float  # cost / dense cost
    cpu_hours: float
    ended: int  # epoch ms: completion order


@dataclass(frozen=True)
class ComparedSearch:
    label: str
    run_id: str
    study: str
    trials: tuple[ComparedTrial, ...]  # finished trials in completion order
    dense_accuracy: float | None = None  # the dense model's; None when neither MLflow nor a folder here has it
    accuracy: str = VALIDATION  # which accuracy its curve is (search/store/best.py)

    @property
    def curve(self) -> str:
        """The curve's name in figures: the search and which accuracy it plots."""
        return f"{self.label} ({self.accuracy})"


@dataclass(frozen=True)
class LevelBest:
    level: float
    accuracy: float | None
    trial_id: str | None
    trials_spent: int | None
    cpu_hours_spent: float | None


def _parents(client, names: list[str]) -> list[tuple[str, object]]:
    """(study name, parent run) for each name: every search of a study, or the run itself."""
    from mlflow.exceptions import MlflowException

    found = []
    for name in names:
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            runs = client.search_runs(
                [experiment.experiment_id], f"tags.`{TAG_ROLE}` = 'search'", order_by=["start_time ASC"]
            )
            if not runs:
                raise ConfigError(
                    f"study {name!r} has no prunetune searches yet; "
                    f"run `prunetune search` with tracking.experiment={name}"
                )
            found += [(name, run) for run in runs]
            continue
        try:
            run = client.get_run(name)
        except MlflowException:
            studies = ", ".join(e.name for e in client.search_experiments()) or "none"
            raise ConfigError(
                f"{name!r} is neither a study nor a run id in this tracking store (studies: {studies})"
            ) from None
        if run.data.tags.get(TAG_ROLE) != "search":
            raise ConfigError(
                f"run {name} is not a prunetune search (parent) run; pass a study name or a search's run id"
            )
        found.append((client.get_experiment(run.info.experiment_id).name, run))
    return found


def _trials(client, parent, cost: str) -> tuple[tuple[ComparedTrial, ...], str]:
    """The search's finished trials and which accuracy they are ranked by (the one definition
    of best, :mod:`~prunetune.search.store.best`): for a search that confirmed profiles, one
    point per confirmed profile at its mean test accuracy over seeds (search trials still count
    as compute spent, never as results); otherwise every search trial at its validation
    accuracy."""
    trials, confirmations, token = [], {}, None
    query = f"tags.`{PARENT_ID}` = '{parent.info.run_id}' and attributes.status = 'FINISHED'"
    while True:
        page = client.search_runs([parent.info.experiment_id], query, max_results=1000, page_token=token)
        for run in page:
            m = run.data.metrics
            if run.data.tags.get(TAG_ROLE) in ("taper", "reference"):  # a taper run's points are runs of their own;
                continue  # a reference profile (confirm.uniform) is not the search's
            report = TrialReport.read(m) if R.ACCURACY in m else None
            if report is not None and cost in report.relative:
                ended = run.info.end_time or run.info.start_time or 0
                trial_id = run.data.tags.get(TAG_TRIAL_ID, run.info.run_name)
                relative, hours = report.relative[cost], m.get("cpu_hours", 0.0)
                if report.test_accuracy is not None:
                    source = run.data.tags.get(TAG_CONFIRMS) or trial_id
                    confirmations.setdefault(source, []).append(
                        ComparedTrial(trial_id, report.test_accuracy, relative, hours, ended)
                    )
                else:
                    trials.append(ComparedTrial(trial_id, report.accuracy, relative, hours, ended))
        token = page.token
        if not token:
            break
    if not confirmations:
        return tuple(sorted(trials, key=lambda t: t.ended)), VALIDATION
    merged = []
    for seeds in confirmations.values():  # one point per profile: the mean over its seeds
        seeds.sort(key=lambda t: t.trial_id)
        mean = sum(t.accuracy for t in seeds) / len(seeds)
        hours = sum(t.cpu_hours for t in seeds)
        merged.append(replace(seeds[0], accuracy=mean, cpu_hours=hours, ended=max(t.ended for t in seeds)))
    spent = [replace(t, accuracy=-math.inf) for t in trials]
    return tuple(sorted(spent + merged, key=lambda t: t.ended)), CONFIRMED


def dense_accuracy_of(parent) -> float | None:
    """The accuracy of the dense model a search pruned: its parent run's ``dense_accuracy``
    metric, else the one its experiment folder records (the ``prunetune.experiment_dir`` tag,
    when that folder is on this machine), else None."""
    from prunetune.search.store.dense import dense_accuracy
    from prunetune.search.store.manifest import MANIFEST, read_manifest

    logged = parent.data.metrics.get(DENSE_METRIC)
    if logged is not None and math.isfinite(logged):
        return float(logged)
    directory = parent.data.tags.get("prunetune.experiment_dir")
    if not directory or not (Path(directory) / MANIFEST).is_file():
        return None
    try:
        return dense_accuracy(read_manifest(directory).base_checkpoint)
    except PrunetuneError:  # a damaged manifest: the comparison goes on without the reference
        return None


def load_searches(client, names: list[str], cost: str) -> list[ComparedSearch]:
    """The searches the names stand for, each with its finished trials' ``cost`` and accuracy."""
    parents = _parents(client, names)
    run_names = [run.info.run_name for _, run in parents]
    searches = []
    for study, run in {r.info.run_id: (s, r) for s, r in parents}.values():
        label = f"{study}/{run.info.run_name}"
        if run_names.count(run.info.run_name) > 1:
            label += f" ({run.info.run_id[:6]})"
        trials, accuracy = _trials(client, run, cost)
        searches.append(ComparedSearch(label, run.info.run_id, study, trials, dense_accuracy_of(run), accuracy))
    return searches


def best_at(trials: tuple[ComparedTrial, ...], level: float) -> LevelBest:
    """Best accuracy within ``level`` of dense cost, and what was spent until first reaching it."""
    best, spent = None, 0.0
    for index, trial in enumerate(trials, start=1):
        spent += trial.cpu_hours
        if (
            math.isfinite(trial.accuracy)
            and trial.relative <= level + 1e-9
            and (best is None or trial.accuracy > best.accuracy)
        ):
            best = LevelBest(level, trial.accuracy, trial.trial_id, index, spent)
    return best or LevelBest(level, None, None, None, None)


def frontier_points(trials: tuple[ComparedTrial, ...]) -> list[tuple[float, float, str]]:
    """Pareto points (relative cost, accuracy, trial id), cheapest first."""
    results = [t for t in trials if math.isfinite(t.accuracy)]
    front = pareto_front(results, cost=lambda t: t.relative, accuracy=lambda t: t.accuracy)
    return [(t.relative, t.accuracy, t.trial_id) for t in front]


def format_compare(
    table: dict[str, list[LevelBest]],
    cost: str,
    dense: dict[str, float | None] | None = None,
    accuracy: dict[str, str] | None = None,
) -> str:
    """The table for the terminal: which accuracy each search's column is (``accuracy`` by
    label), one row per level, one column block per search, and last the dense model's
    accuracy (``dense`` by label; "unknown" when a search's is not known)."""
    labels = list(table)
    accuracy = accuracy or {}
    lines = [f"best accuracy with {cost} <= level (trials / CPU-h spent to reach it)"]
    lines += [f"  {label}: {accuracy.get(label, VALIDATION)}" for label in labels]
    if CONFIRMED in accuracy.values():
        lines.append("  ('-' in a confirmed search's column: no confirmed profile within that level)")
    lines.append(f"{'level':>6}  " + "  ".join(f"{label[:30]:>30}" for label in labels))
    for row, level in enumerate(LEVELS):
        cells = []
        for label in labels:
            best = table[label][row]
            cell = (
                "-"
                if best.accuracy is None
                else f"{best.accuracy:.4f} ({best.trials_spent} / {best.cpu_hours_spent:.3f})"
            )
            cells.append(f"{cell:>30}")
        lines.append(f"{level:>6.0%}  " + "  ".join(cells))
    if dense is not None:
        cells = ["unknown" if dense.get(label) is None else f"{dense[label]:.4f}" for label in labels]
        lines.append(f"{'dense':>6}  " + "  ".join(f"{cell:>30}" for cell in cells))
    return "\n".join(lines)


def write_compare(searches: list[ComparedSearch], cost: str, out: Path) -> dict[str, Path]:
    """compare.png, compare.html (overlaid frontiers) and compare.csv/.json (the table)."""
    from prunetune.search.store.plots import compare_html, compare_png

    out.mkdir(parents=True, exist_ok=True)
    curves = {s.curve: frontier_points(s.trials) for s in searches}
    table = {s.label: [best_at(s.trials, level) for level in LEVELS] for s in searches}
    dense = {s.label: s.dense_accuracy for s in searches}
    kinds = {s.label: s.accuracy for s in searches}
    curve_dense = {s.curve: s.dense_accuracy for s in searches}
    title = f"accuracy vs {cost}: " + ", ".join(s.label for s in searches)
    files = {
        "png": compare_png(
            curves,
            cost,
            out / "compare.png",
            title if len(title) < 90 else f"accuracy vs {cost}",
            dense=curve_dense,
            ylabel=_axis(kinds.values()),
        ),
        "html": compare_html(
            curves, cost, out / "compare.html", title, dense=curve_dense, ylabel=_axis(kinds.values())
        ),
        "csv": out / "compare.csv",
        "json": out / "compare.json",
        "txt": out / "compare.txt",
    }
    with files["csv"].open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["search", "run_id", "level", "best_accuracy", "trial_id", "trials_spent", "cpu_hours_spent"])
        for search in searches:
            for best in table[search.label]:
                writer.writerow(
                    [
                        search.label,
                        search.run_id,
                        best.level,
                        best.accuracy,
                        best.trial_id,
                        best.trials_spent,
                        best.cpu_hours_spent,
                    ]
                )
            writer.writerow([search.label, search.run_id, "dense", search.dense_accuracy, "dense", "", ""])
    blob = {
        "cost": cost,
        "searches": [
            {
                "label": s.label,
                "run_id": s.run_id,
                "study": s.study,
                "trials": len(s.trials),
                "dense_accuracy": s.dense_accuracy,
                "accuracy": s.accuracy,
            }
            for s in searches
        ],
        "levels": {label: [asdict(b) for b in rows] for label, rows in table.items()},
        "frontiers": {
            s.label: [{"relative": x, "accuracy": y, "trial_id": t} for x, y, t in curves[s.curve]] for s in searches
        },
    }
    files["json"].write_text(json.dumps(blob, indent=2))
    files["txt"].write_text(format_compare(table, cost, dense, kinds) + "\n")
    return files


def _axis(kinds) -> str:
    """The y axis of an overlay: the one accuracy every curve is, else "accuracy" (each curve's
    name says which)."""
    kinds = set(kinds)
    return kinds.pop() if len(kinds) == 1 else "accuracy (each curve names which)"


def log_compare(client, searches: list[ComparedSearch], cost: str, files: dict[str, Path]) -> str:
    """A "compare" run in the first search's study holding the files; returns its run id."""
    experiment = client.get_experiment_by_name(searches[0].study)
    name = f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    run = client.create_run(experiment.experiment_id, tags={TAG_ROLE: "compare"}, run_name=name)
    client.log_param(run.info.run_id, "cost", cost)
    client.log_param(run.info.run_id, "searches", ", ".join(s.run_id for s in searches)[:6000])
    for path in files.values():
        client.log_artifact(run.info.run_id, str(path))
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


@dataclass(frozen=True)
class Comparison:
    searches: list[ComparedSearch]
    cost: str
    files: dict[str, Path]
    run_id: str
    table: str


def compare(uri: str, names: list[str], out: Path, cost: str | None = None) -> Comparison:
    """Load the searches ``names`` stand for, write the overlay and table, log a compare run."""
    from mlflow.tracking import MlflowClient

    from prunetune.search.tracking.tracker import fail_fast_http

    fail_fast_http()
    client = MlflowClient(tracking_uri=uri)
    if cost is None:
        tags = [run.data.tags.get("prunetune.frontier_cost") for _, run in _parents(client, names)]
        cost = next((t for t in tags if t), "macs")
    searches = load_searches(client, names, cost)
    if not any(s.trials for s in searches):
        raise ConfigError(
            f"no finished trial of these searches reports rel/{cost}; choose another --cost (e.g. macs, params)"
        )
    files = write_compare(searches, cost, out)
    run_id = log_compare(client, searches, cost, files)
    return Comparison(searches, cost, files, run_id, files["txt"].read_text())
