"""One trial's report: every key a trial writes and every room reads, in one place.

A trial (:mod:`prunetune.trainables.trial`, the taper method) reports a flat dict of metrics to
Ray Tune; Tune writes it to ``result.json``, searchers learn from it, the store draws frontiers
from it, tracking copies it to MLflow and the console shows it. This module is the schema they
share, in the lowest layer so that each of them (and a searcher, which never imports torch) can
import it: the key names as constants, :func:`budget_metrics` to write the costs part,
:func:`is_finished` for "this report measured a model", and :class:`TrialReport` to read one.

Nothing else spells a report key as a literal (``tests/test_layout.py`` checks it); a new field
is added here, written by the trial and read through :class:`TrialReport`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# --- single keys ----------------------------------------------------------------------------
ACCURACY = "accuracy"  # validation accuracy; with several base models, their mean (searchers rank it)
LOSS = "loss"  # validation loss
ACCURACY_PRUNED = "accuracy_pruned"  # after pruning and BatchNorm recalibration, before fine-tuning
FEASIBLE = "feasible"  # 1.0 when the pruned model meets every budget, else 0.0
FINETUNE_STEPS = "finetune_steps"  # fine-tune steps done at this report (also a trial-config key)
RUNG_STEPS = "rung_steps"  # the schedulers' clock; search trials only (confirmations are never stopped)
DONE = "done"  # the trial's last report: Tune ends the trial there
NODE_ID = "node_id"  # the Ray node that ran the trial
PEAK_MEMORY = "worker_peak_rss_mb"  # the trial process's peak resident memory (not its DataLoader workers')
TEST_ACCURACY = "test/accuracy"  # confirmation trials only: accuracy on the test split
TEST_LOSS = "test/loss"
CONFIRMS = "confirms"  # a confirmation trial's source: the search trial whose profile it retrains
REFERENCE = "reference"  # a reference profile confirmed beside the search's (e.g. "uniform")
LEVEL = "level"  # a taper point: the budget level (fraction of dense) it was hardened at
TAPER_COST = "taper_cost"  # taper: the live (soft-gated) cost when the point was hardened
TAPER_STEP = "taper_step"  # taper: gate-training steps run so far
TAPER_TARGET = "taper_target"  # taper: the tapering target at that step
TAPER_LAMBDA = "taper_lambda"  # taper: the Lagrange multiplier
TAPER_RATE = "taper_rate"  # taper: the target's decay rate
SOURCE_TRIAL = "source_trial"  # a fine-tuned checkpoint (``prunetune finetune``): the trial it continued

# --- families: a prefix and a cost key (``rel/macs``) or a base label (``accuracy/b1``) -----
COST = "cost/"  # the pruned model's cost, absolute
RELATIVE = "rel/"  # the same as a fraction of the dense model's
MEETS = "meets/"  # 1.0 when the budget on that cost (keyed by Budget.key) is met
LIMIT = "limit/"  # the budget's absolute limit, so a searcher can weigh a miss
PER_BASE = "accuracy/"  # with several base models: each one's validation accuracy
TEST = "test/"  # confirmation: figures on the test split
GATED = "gated_"  # taper: the analytic cost at the hard gates
COUNTED = "counted_"  # taper: the same cost counted on the pruned model
LOW = "low/"  # a measured cost (latency): the lower end of its median's confidence interval
HIGH = "high/"  # ... and the upper end, which its budget is checked against
REPEATS = "repeats/"  # ... timed runs it took (for a cached figure, those of the measurement it reuses)
CACHED = "cached/"  # 1.0 when the latency cache answered instead of a new measurement
MEASURED_ON = "measured_on/"  # the Ray node id of the measuring actor (a budget with ``on``); text

FAMILIES = (COST, RELATIVE, MEETS, LIMIT, PER_BASE, TEST, GATED, COUNTED, LOW, HIGH, REPEATS, CACHED, MEASURED_ON)
# Scalar keys a run tracker records as metrics (besides every family above).
SCALARS = (ACCURACY, LOSS, ACCURACY_PRUNED, FEASIBLE, FINETUNE_STEPS, LEVEL, PEAK_MEMORY)


def cost_key(cost: str) -> str:
    return COST + cost


def relative_key(cost: str) -> str:
    return RELATIVE + cost


def meets_key(budget_key: str) -> str:
    return MEETS + budget_key


def limit_key(budget_key: str) -> str:
    return LIMIT + budget_key


def per_base_key(label: str) -> str:
    return PER_BASE + label


def gated_key(cost: str) -> str:
    return GATED + cost


def counted_key(cost: str) -> str:
    return COUNTED + cost


def family(metrics: Mapping[str, Any], prefix: str) -> dict[str, float]:
    """The numeric members of one family, keyed without the prefix (``{"macs": 0.4}``)."""
    members = {}
    for key, value in metrics.items():
        if key.startswith(prefix):
            try:
                members[key[len(prefix) :]] = float(value)
            except (TypeError, ValueError):
                continue  # not a figure (a label some other writer put under the prefix)
    return members


def budget_metrics(
    costs: Mapping[str, float], dense: Mapping[str, float], meets: Mapping[str, bool], limits: Mapping[str, float]
) -> dict[str, float]:
    """The costs part of a report: each cost absolute and relative to the dense model's, which
    budgets it meets, their absolute limits, and ``feasible`` (every budget met)."""
    metrics: dict[str, float] = {}
    for key, value in costs.items():
        metrics[cost_key(key)] = value
        metrics[relative_key(key)] = value / dense[key] if dense.get(key) else math.nan
    metrics.update({meets_key(key): float(ok) for key, ok in meets.items()})
    metrics.update({limit_key(key): float(limit) for key, limit in limits.items()})
    metrics[FEASIBLE] = float(all(meets.values()))
    return metrics


def interval_metrics(measured: Mapping[str, Any]) -> dict[str, float | str]:
    """The intervals part of a report, for the costs measured with a spread (``repeats > 0`` or
    answered by the cache): each one's ``low/``, ``high/``, ``repeats/``, ``cached/`` and, where a
    measuring actor measured it, ``measured_on/`` (its node id). ``measured`` maps cost keys to
    :class:`~prunetune.budgets.timing.Measurement`."""
    metrics: dict[str, float | str] = {}
    for key, m in measured.items():
        if not (m.repeats or m.cached):
            continue
        metrics.update({LOW + key: m.low, HIGH + key: m.high, REPEATS + key: float(m.repeats)})
        metrics[CACHED + key] = float(m.cached)
        if m.node:
            metrics[MEASURED_ON + key] = m.node
    return metrics


def is_finished(metrics: Mapping[str, Any] | None) -> bool:
    """Whether a report measured the pruned model: its accuracy and every budget check.

    Every report of a trial carries both (costs depend only on the channels kept), so a trial
    whose last report passes is a point of the search even when a scheduler stopped it early;
    :attr:`TrialReport.done` says whether it ran its whole fine-tune. The one rule every room
    uses for "a finished trial"; an errored trial's status is the caller's to check."""
    return bool(metrics) and FEASIBLE in metrics and ACCURACY in metrics


@dataclass(frozen=True)
class TrialReport:
    """One report read back: what the trial measured, with each family as a dict.

    Built by :meth:`read` from any mapping that holds report keys (a Tune result, a line of
    ``result.json``, an MLflow run's metrics); fields a report lacks take their defaults."""

    accuracy: float
    loss: float = math.nan
    feasible: bool = False
    costs: Mapping[str, float] = field(default_factory=dict)
    relative: Mapping[str, float] = field(default_factory=dict)
    meets: Mapping[str, bool] = field(default_factory=dict)
    limits: Mapping[str, float] = field(default_factory=dict)
    accuracy_pruned: float = math.nan
    finetune_steps: int = 0
    done: bool = True
    per_base: Mapping[str, float] = field(default_factory=dict)
    test_accuracy: float | None = None
    test_loss: float | None = None
    confirms: str | None = None
    reference: str | None = None
    level: float | None = None
    low: Mapping[str, float] = field(default_factory=dict)
    high: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def read(cls, metrics: Mapping[str, Any]) -> TrialReport:
        """The report in ``metrics``; a KeyError when it has no accuracy (check
        :func:`is_finished` first where a report may not have measured anything yet)."""
        return cls(
            accuracy=float(metrics[ACCURACY]),
            loss=_float(metrics.get(LOSS)),
            feasible=bool(metrics.get(FEASIBLE, 0.0)),
            costs=family(metrics, COST),
            relative=family(metrics, RELATIVE),
            meets={k: bool(v) for k, v in family(metrics, MEETS).items()},
            limits=family(metrics, LIMIT),
            accuracy_pruned=_float(metrics.get(ACCURACY_PRUNED)),
            finetune_steps=int(metrics.get(FINETUNE_STEPS) or 0),
            done=bool(metrics.get(DONE, True)),
            per_base=family(metrics, PER_BASE),
            test_accuracy=_optional(metrics.get(TEST_ACCURACY)),
            test_loss=_optional(metrics.get(TEST_LOSS)),
            confirms=str(metrics[CONFIRMS]) if metrics.get(CONFIRMS) else None,
            reference=str(metrics[REFERENCE]) if metrics.get(REFERENCE) else None,
            level=_optional(metrics.get(LEVEL)),
            low=family(metrics, LOW),
            high=family(metrics, HIGH),
        )

    def cost(self, key: str, default: float = math.nan) -> float:
        """The absolute cost ``key`` (default when the trial did not measure it)."""
        return self.costs.get(key, default)

    def missed_by(self) -> dict[str, float]:
        """Each budget's miss as a fraction of its limit (a measured cost's interval's upper end
        against it; 1.0 for a missed budget whose limit or cost the report lacks, 0.0 for a met
        one): what a Lagrangian searcher penalises."""
        missed = {}
        for key, ok in self.meets.items():
            limit = self.limits.get(key)
            if limit and key in self.costs:
                # A measured cost's budget is checked against its interval's upper end.
                missed[key] = self.high.get(key, self.costs[key]) / limit - 1.0
            else:
                missed[key] = 0.0 if ok else 1.0
        return missed


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _optional(value: Any) -> float | None:
    return None if value is None else float(value)
