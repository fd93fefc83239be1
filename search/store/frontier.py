"""The accuracy-versus-cost frontier of a search: Pareto set, table and CSV/JSON (its figures:
:mod:`~prunetune.search.store.plots`).

A trial is on the frontier for a cost when it is feasible (meets every budget) and no other
feasible trial is at least as cheap with higher accuracy. Errored trials never enter it.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from prunetune.budgets import report as R
from prunetune.budgets.report import TrialReport

T = TypeVar("T")


@dataclass(frozen=True)
class TrialRecord:
    """What one finished trial measured (its last report)."""

    trial_id: str
    accuracy: float
    loss: float
    feasible: bool
    costs: dict[str, float]
    relative: dict[str, float]
    profile: dict[str, float]
    finetune_steps: int = 0
    checkpoint: str | None = None
    meets: dict[str, bool] = field(default_factory=dict)
    # A confirmation trial's source search trial (``confirm`` in docs/searchers.md), and its
    # test-split accuracy. A confirmed record (see :func:`confirmed`) has ``accuracy`` the mean
    # test accuracy over its seeds and keeps the search-time validation accuracy beside it.
    confirms: str | None = None
    test_accuracy: float | None = None
    confirmed: bool = False
    search_accuracy: float | None = None
    seeds: int = 0
    stopped: bool = False  # a scheduler (ASHA) stopped the trial before its last step
    # A reference profile confirmed beside the search's (``confirm.uniform``: "uniform"): read
    # against, drawn as the baseline, never part of the frontier.
    reference: str | None = None

    @classmethod
    def from_metrics(cls, trial_id: str, metrics: dict, profile: dict, checkpoint: str | None = None) -> TrialRecord:
        """The record of a report (see :class:`~prunetune.budgets.report.TrialReport`)."""
        return cls.from_report(trial_id, TrialReport.read(metrics), profile, checkpoint)

    @classmethod
    def from_report(
        cls, trial_id: str, report: TrialReport, profile: dict, checkpoint: str | None = None
    ) -> TrialRecord:
        return cls(
            trial_id=trial_id,
            accuracy=report.accuracy,
            loss=report.loss,
            feasible=report.feasible,
            costs=dict(report.costs),
            relative=dict(report.relative),
            profile=dict(profile),
            finetune_steps=report.finetune_steps,
            checkpoint=checkpoint,
            meets=dict(report.meets),
            confirms=report.confirms,
            test_accuracy=report.test_accuracy,
            stopped=not report.done,
            reference=report.reference,
        )


def confirmed(records: Iterable[TrialRecord]) -> list[TrialRecord]:
    """The search's records with each profile's confirmation trials merged into one confirmed
    record: ``accuracy`` the mean test accuracy over its seeds, ``search_accuracy`` the
    validation accuracy its search trial reported, the first seed's trial id and checkpoint.
    Records without confirmations come back unchanged."""
    records = list(records)
    by_source: dict[str, list[TrialRecord]] = {}
    for record in records:
        if record.confirms is not None and record.test_accuracy is not None:
            by_source.setdefault(record.confirms, []).append(record)
    if not by_source:
        return [r for r in records if r.confirms is None]
    search = {r.trial_id: r for r in records if r.confirms is None}
    merged = []
    for source, runs in by_source.items():
        runs.sort(key=lambda r: r.trial_id)
        mean = sum(r.test_accuracy for r in runs) / len(runs)
        origin = search.get(source)
        merged.append(
            replace(
                runs[0],
                accuracy=mean,
                test_accuracy=mean,
                confirmed=True,
                seeds=len(runs),
                search_accuracy=origin.accuracy if origin else None,
            )
        )
    return [*search.values(), *merged]


def references(records: Iterable[TrialRecord], kind: str = "uniform") -> list[TrialRecord]:
    """The confirmed ``kind`` reference records (one per level), cheapest first by MACs."""
    chosen = [r for r in records if r.reference == kind and r.confirmed]
    return sorted(chosen, key=lambda r: r.costs.get("macs", 0.0))


def pareto_front(items: Iterable[T], *, cost: Callable[[T], float], accuracy: Callable[[T], float]) -> list[T]:
    """The items no other item dominates in (lower ``cost``, higher ``accuracy``), cheapest
    first; of items at one cost only the most accurate (the first of equals) is kept. Works on
    anything: trial records, compared trials, plain ``(cost, accuracy)`` pairs."""
    front: list[T] = []
    for item in sorted(items, key=lambda i: (cost(i), -accuracy(i))):
        if not front or accuracy(item) > accuracy(front[-1]):
            front.append(item)
    return front


def search_trials(records: Iterable[TrialRecord]) -> list[TrialRecord]:
    """The search's own trials at their validation accuracy: no confirmation trial or merged
    confirmed record, no reference profile."""
    return [r for r in records if r.reference is None and r.confirms is None and not r.confirmed]


def confirmed_points(records: Iterable[TrialRecord]) -> list[tuple[TrialRecord, TrialRecord | None]]:
    """Each merged confirmed record of the search (:func:`confirmed`) with the search trial it
    confirms (None when that trial is not among ``records``): the figures draw the two joined."""
    records = list(records)
    search = {r.trial_id: r for r in search_trials(records)}
    return [(r, search.get(str(r.confirms))) for r in records if r.confirmed and r.reference is None]


def pareto(records: Iterable[TrialRecord], cost: str) -> list[TrialRecord]:
    """Feasible search trials not dominated in (lower ``cost``, higher validation accuracy),
    cheapest first.

    Every finished search trial competes at its validation accuracy, whether or not the search
    confirmed it: a confirmed test accuracy is another figure, drawn beside the frontier
    (:func:`confirmed_points`), never mixed into it. Trials a scheduler stopped early and
    reference profiles (:func:`references`) never enter the frontier."""
    pool = [r for r in search_trials(records) if not r.stopped]
    feasible = (r for r in pool if r.feasible and cost in r.costs)
    return pareto_front(feasible, cost=lambda r: r.costs[cost], accuracy=lambda r: r.accuracy)


@dataclass(frozen=True)
class Reference:
    """What every figure of a search is read against: the dense model it prunes, the budgets'
    limits, and optionally a baseline curve (e.g. the uniform profile's trials).

    ``dense_costs`` and ``limits`` are absolute, keyed by cost key; ``labels`` names each
    budget as the config writes it (``macs<=50%``). Built by :func:`reference_of`; every field
    may be empty, and then the figure simply leaves that part out.
    """

    dense_accuracy: float | None = None
    dense_costs: dict[str, float] = field(default_factory=dict)
    limits: dict[str, float] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    baseline: tuple[TrialRecord, ...] = ()
    baseline_label: str = "uniform"

    def dense_cost(self, cost: str, records: Sequence[TrialRecord] = ()) -> float | None:
        """The dense model's ``cost``: recorded, else implied by any record's relative cost."""
        if cost in self.dense_costs:
            return self.dense_costs[cost]
        for r in records:
            if r.relative.get(cost) and cost in r.costs:
                return r.costs[cost] / r.relative[cost]
        return None


def reference_of(
    config, dense_costs: dict[str, float], dense_accuracy: float | None = None, baseline: Sequence[TrialRecord] = ()
) -> Reference:
    """The :class:`Reference` of a search ``config`` (its budgets) over the dense model's
    measured ``dense_costs`` and accuracy (None when the base checkpoint does not say)."""
    limits = {b.key: b.limit(dense_costs.get(b.key)) for b in config.budgets if not b.relative or b.key in dense_costs}
    return Reference(
        dense_accuracy, dict(dense_costs), limits, {b.key: b.label for b in config.budgets}, tuple(baseline)
    )


def broken_budgets(record: TrialRecord) -> list[str]:
    """The budget keys ``record`` did not meet (empty for a feasible record)."""
    return [key for key, met in record.meets.items() if not met]


STAGE_SUMMARY_ABOVE = 4  # more varying groups than this: the profile column averages per stage


def profile_columns(records: Sequence[TrialRecord]) -> tuple[str, Callable[[TrialRecord], str]]:
    """The profile column's header and how to write one record in it: the groups whose ratio
    varies across ``records``, by name, or (when more than a few vary) the mean keep ratio of
    each stage (the group name's first part: ``stem``, ``layer1``, ...)."""
    groups = list(dict.fromkeys(g for r in records for g in r.profile))
    varying = [g for g in groups if len({r.profile.get(g) for r in records}) > 1]
    if len(varying) <= STAGE_SUMMARY_ABOVE:
        fixed = sorted({r.profile[g] for r in records for g in groups if g not in varying and g in r.profile})
        rest = f"  (other {len(groups) - len(varying)} at {fixed[0]:.2f})" if len(fixed) == 1 and varying else ""
        if not varying:
            return "profile (every group)", lambda r: f"all {fixed[0]:.2f}" if len(fixed) == 1 else _ratios(r, groups)
        return "profile (groups that vary)", lambda r: _ratios(r, varying) + rest
    stages = list(dict.fromkeys(g.split(".", 1)[0] for g in groups))
    return "profile (mean keep ratio per stage)", lambda r: " ".join(f"{s} {_stage_mean(r, s):.2f}" for s in stages)


def _ratios(record: TrialRecord, groups: Sequence[str]) -> str:
    return " ".join(f"{g}={record.profile[g]:.2f}" for g in groups if g in record.profile)


def _stage_mean(record: TrialRecord, stage: str) -> float:
    values = [v for g, v in record.profile.items() if g.split(".", 1)[0] == stage]
    return sum(values) / len(values) if values else math.nan


def format_table(
    front: Sequence[TrialRecord], cost: str, reference: Reference | None = None, *, partial: bool = False
) -> str:
    """A plain-text table of the frontier for the terminal, the dense model as its first row
    when ``reference`` knows it (accuracy and ``cost`` "of dense" columns beside the values).
    The accuracy column is validation accuracy ("val acc"); a reference row's is its confirmed
    test accuracy, and says so.
    ``partial`` marks the frontier of an interrupted search."""
    reference = reference or Reference()
    dense_cost = reference.dense_cost(cost, front)
    title, profile = profile_columns(front)
    header = f"{'trial':<22} {'val acc':>8} {'of dense':>8} {cost:>14} {'of dense':>8}  {title}"
    lines = [header, "-" * len(header)]
    if reference.dense_accuracy is not None or dense_cost is not None:
        known = lambda value: "100.0%" if value is not None else "-"  # noqa: E731
        lines.append(
            f"{'dense':<22} {_acc(reference.dense_accuracy):>8} {known(reference.dense_accuracy):>8} "
            f"{_num(dense_cost):>14} {known(dense_cost):>8}  all 1.00"
        )
    for r in reference.baseline:  # the uniform profiles confirmed beside the search's, read against
        if cost in r.costs:
            acc_share = r.accuracy / reference.dense_accuracy if reference.dense_accuracy else math.nan
            rel = r.relative.get(cost, r.costs[cost] / dense_cost if dense_cost else math.nan)
            ratios = sorted(set(r.profile.values()))
            lines.append(
                f"{reference.baseline_label + ' (test acc)':<22} {r.accuracy:>8.4f} {_pct(acc_share):>8} "
                f"{r.costs[cost]:>14,.0f} {_pct(rel):>8}  all {ratios[0]:.2f}"
                + (f"-{ratios[-1]:.2f}" if len(ratios) > 1 else "")
            )
    for r in front:
        acc_share = r.accuracy / reference.dense_accuracy if reference.dense_accuracy else math.nan
        rel = r.relative.get(cost, r.costs[cost] / dense_cost if dense_cost else math.nan)
        text = profile(r)
        text = text if len(text) <= 72 else text[:69] + "..."
        lines.append(
            f"{r.trial_id:<22} {r.accuracy:>8.4f} {_pct(acc_share):>8} {r.costs[cost]:>14,.0f} {_pct(rel):>8}  {text}"
        )
    if not front:
        lines.append("(no feasible trial: loosen the budget or run more trials)")
    if partial:
        lines.append("(partial: the search was interrupted before every trial finished)")
    return "\n".join(lines)


def _acc(value: float | None) -> str:
    return "?" if value is None else f"{value:.4f}"


def _num(value: float | None) -> str:
    return "?" if value is None else f"{value:,.0f}"


def _pct(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.1%}"


def write_frontier(
    front: Sequence[TrialRecord],
    cost: str,
    directory: Path,
    *,
    partial: bool = False,
    uniform: Sequence[TrialRecord] = (),
    confirmed_records: Sequence[TrialRecord] = (),
    best: dict | None = None,
) -> dict[str, Path]:
    """Write ``frontier.csv`` and ``frontier.json`` into ``directory``; ``partial`` (an
    interrupted search), the ``uniform`` reference records (``confirm.uniform``), the confirmed
    profiles and the search's ``best`` profile (trial id, accuracy, which accuracy it is: see
    search/store/best.py) are recorded in the JSON. The frontier's accuracies are validation
    accuracies."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"csv": directory / "frontier.csv", "json": directory / "frontier.json"}
    with paths["csv"].open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["trial_id", "validation_" + R.ACCURACY, R.LOSS, cost, f"{cost}_relative", R.FINETUNE_STEPS, "profile"]
        )
        for r in front:
            writer.writerow(
                [
                    r.trial_id,
                    r.accuracy,
                    r.loss,
                    r.costs[cost],
                    r.relative.get(cost),
                    r.finetune_steps,
                    json.dumps(r.profile),
                ]
            )
    blob = {
        "cost": cost,
        "partial": partial,
        "accuracy": "validation accuracy",
        "frontier": [asdict(r) for r in front],
        "confirmed": [asdict(r) for r in confirmed_records],
        "uniform": [asdict(r) for r in uniform],
        "best": best,
    }
    paths["json"].write_text(json.dumps(blob, indent=2))
    return paths
