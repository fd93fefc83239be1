"""The accuracy-versus-cost frontier of a search: Pareto set, table, CSV/JSON and a plot.

A trial is on the frontier for a cost when it is feasible (meets every budget) and no other
feasible trial is at least as cheap with higher accuracy. Errored trials never enter it.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

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

    @classmethod
    def from_metrics(cls, trial_id: str, metrics: dict, profile: dict, checkpoint: str | None = None) -> TrialRecord:
        costs = {k.split("/", 1)[1]: float(v) for k, v in metrics.items() if k.startswith("cost/")}
        relative = {k.split("/", 1)[1]: float(v) for k, v in metrics.items() if k.startswith("rel/")}
        meets = {k.split("/", 1)[1]: bool(v) for k, v in metrics.items() if k.startswith("meets/")}
        return cls(
            trial_id=trial_id,
            accuracy=float(metrics["accuracy"]),
            loss=float(metrics.get("loss", math.nan)),
            feasible=bool(metrics.get("feasible", 0.0)),
            costs=costs,
            relative=relative,
            profile=dict(profile),
            finetune_steps=int(metrics.get("finetune_steps", 0)),
            checkpoint=checkpoint,
            meets=meets,
        )


def pareto_front(items: Iterable[T], *, cost: Callable[[T], float], accuracy: Callable[[T], float]) -> list[T]:
    """The items no other item dominates in (lower ``cost``, higher ``accuracy``), cheapest
    first; of items at one cost only the most accurate (the first of equals) is kept. Works on
    anything: trial records, compared trials, plain ``(cost, accuracy)`` pairs."""
    front: list[T] = []
    for item in sorted(items, key=lambda i: (cost(i), -accuracy(i))):
        if not front or accuracy(item) > accuracy(front[-1]):
            front.append(item)
    return front


def pareto(records: Iterable[TrialRecord], cost: str) -> list[TrialRecord]:
    """Feasible records not dominated in (lower ``cost``, higher accuracy), cheapest first."""
    feasible = (r for r in records if r.feasible and cost in r.costs)
    return pareto_front(feasible, cost=lambda r: r.costs[cost], accuracy=lambda r: r.accuracy)


def format_table(front: Sequence[TrialRecord], cost: str) -> str:
    """A plain-text table of the frontier for the terminal."""
    header = f"{'trial':<22} {'accuracy':>8} {cost:>14} {'of dense':>8}  profile"
    lines = [header, "-" * len(header)]
    for r in front:
        profile = " ".join(f"{v:.2f}" for v in r.profile.values())
        profile = profile if len(profile) <= 48 else profile[:45] + "..."
        lines.append(
            f"{r.trial_id:<22} {r.accuracy:>8.4f} {r.costs[cost]:>14,.0f} {r.relative.get(cost, math.nan):>8.1%}  {profile}"
        )
    if not front:
        lines.append("(no feasible trial: loosen the budget or run more trials)")
    return "\n".join(lines)


def write_frontier(front: Sequence[TrialRecord], cost: str, directory: Path) -> dict[str, Path]:
    """Write ``frontier.csv`` and ``frontier.json`` (and ``frontier.png``) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"csv": directory / "frontier.csv", "json": directory / "frontier.json"}
    with paths["csv"].open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["trial_id", "accuracy", "loss", cost, f"{cost}_relative", "finetune_steps", "profile"])
        for r in front:
            writer.writerow(
                [r.trial_id, r.accuracy, r.loss, r.costs[cost], r.relative.get(cost), r.finetune_steps, json.dumps(r.profile)]
            )
    paths["json"].write_text(json.dumps({"cost": cost, "frontier": [asdict(r) for r in front]}, indent=2))
    return paths


def plot_frontier(records: Sequence[TrialRecord], cost: str, path: Path, title: str = "") -> Path:
    """Scatter of every trial (infeasible ones apart, in grey) with the frontier as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    front = pareto(records, cost)
    feasible = [r for r in records if r.feasible and cost in r.costs]
    infeasible = [r for r in records if not r.feasible and cost in r.costs]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    ax.scatter([r.costs[cost] for r in infeasible], [r.accuracy for r in infeasible], c="lightgrey", label="over budget", s=18)
    ax.scatter([r.costs[cost] for r in feasible], [r.accuracy for r in feasible], c="tab:blue", label="feasible", s=18)
    ax.step([r.costs[cost] for r in front], [r.accuracy for r in front], where="post", c="tab:red", label="frontier")
    ax.set_xlabel(cost)
    ax.set_ylabel("validation accuracy")
    ax.set_title(title or f"accuracy vs {cost}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
