"""Screening profiles by predicted latency before any trial: a per-layer latency table.

A latency budget with ``screen: true`` gets a per-layer table measured where the budget is
measured (on its device's measuring actor with ``on``, else here), in its runtime, before the
base model is trained. Its constant is fitted on the dense model and a few random profiles of
the space; then it is checked against whole-model measurements of other random profiles. Only
where it predicts them well (Spearman >= :data:`MIN_SPEARMAN`, median relative error <=
:data:`MAX_ERROR`) does the space get the table and the budget's limit, so searchers screen by
it as they screen by the exact MACs model (random draws, uniform and sensitivity's knob, the RL
searcher's cap); otherwise the search says why and only trials check the budget. Trials and
confirmation always measure the real model.
"""

from __future__ import annotations

import copy
import statistics
import sys
from dataclasses import replace

import numpy as np
import torch

from prunetune.budgets import Budget, measure_intervals
from prunetune.search.config import SearchConfig
from prunetune.search.space import ProfileSpace
from prunetune.trainables import Profile, PruningStructure, build_model
from prunetune.trainables.latency_table import grid_counts
from prunetune.trainables.meter import measure_elsewhere, measured_table
from prunetune.trainables.trial import TrialSetup, example_input

GRID = 4  # table points per group
FIT = 5  # random profiles the constant is fitted on (with the dense model)
CHECK = 10  # random profiles the table is checked against
MIN_SPEARMAN = 0.9
MAX_ERROR = 0.10


def screened_budget(config: SearchConfig) -> Budget | None:
    """The latency budget that asks for screening (the first, when several do)."""
    return next((b for b in config.budgets if b.cost == "latency" and b.options.get("screen")), None)


def screen_by_latency(config: SearchConfig, space: ProfileSpace, setup: TrialSetup, num_classes: int) -> ProfileSpace:
    """``space`` with a validated latency table and the budget's limit, or unchanged (a line on
    stderr says which, and the table's figures)."""
    budget = screened_budget(config)
    if budget is None:
        return space
    cost = budget.cost_fn()
    spec = setup.model
    model = build_model(spec.name, num_classes=num_classes, input_size=spec.input_size, width=spec.width).eval()
    sample = example_input(setup)
    counts = {
        g.name: grid_counts(g.channels, g.smallest, g.high, GRID, space.round_to, space.min_channels)
        for g in space.groups
    }
    table = measured_table(model, sample, cost, counts)
    kept, measured = _measure_random(model, sample, budget, space, setup, config.seed)
    table = table.fitted(kept[: FIT + 1], measured[: FIT + 1])
    predicted = [table.predict(k) for k in kept[FIT + 1 :]]
    actual = measured[FIT + 1 :]
    rho = _spearman(predicted, actual)
    error = statistics.median(abs(p - a) / a for p, a in zip(predicted, actual))
    quality = f"Spearman {rho:.2f}, median error {error:.1%} on {len(actual)} random profiles"
    if not (rho >= MIN_SPEARMAN and error <= MAX_ERROR):
        print(
            f"latency table for budget {budget.label}: {quality}; below the bar (Spearman >= {MIN_SPEARMAN}, "
            f"error <= {MAX_ERROR:.0%}), so profiles are not screened by it: trials measure the budget",
            file=sys.stderr,
        )
        return space
    print(f"latency table for budget {budget.label}: {quality}; screening profiles by it", file=sys.stderr)
    limits = {**space.limits, budget.key: budget.limit(measured[0])}
    return replace(space, latency_table=table, table_key=budget.key, limits=limits)


def _measure_random(
    model: torch.nn.Module, sample: torch.Tensor, budget: Budget, space: ProfileSpace, setup: TrialSetup, seed: int
) -> tuple[list[dict[str, int]], list[float]]:
    """Kept channels and measured latency of the dense model and ``FIT + CHECK`` random
    profiles of ``space``, measured like a trial's (on the device with ``on``)."""
    structure = PruningStructure.trace(copy.deepcopy(model), sample)
    settings = setup.prune.replace(criterion="l1")  # the trials' channel rule; which channels go does not matter
    rng = np.random.default_rng(seed)
    costs = {budget.key: budget.cost_fn()}
    kept, measured = [{}], [_value(model, sample, costs)]
    for _ in range(FIT + CHECK):
        ratios = space.sample(rng)
        kept.append(space.kept(ratios))
        measured.append(_value(structure.pruned_copy(Profile(ratios), settings).eval(), sample, costs))
    return kept, measured


def _value(model: torch.nn.Module, sample: torch.Tensor, costs: dict) -> float:
    (measured,) = measure_intervals(model, sample, costs, elsewhere=measure_elsewhere).values()
    return measured.value


def _spearman(a: list[float], b: list[float]) -> float:
    ranks = [np.argsort(np.argsort(x)) for x in (a, b)]
    return float(np.corrcoef(*ranks)[0, 1])
