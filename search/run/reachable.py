"""Refusing budgets that no profile in the space can meet, before any trial runs.

For a budget on a cost a trial measures (latency, peak memory, a user function), the driver
builds the smallest model the space allows (every group at its lowest ratio or level), measures
it, and refuses the search when even that model is over the limit. Analytic costs (MACs,
parameters) are checked exactly by the searchers' cost model instead. A cost that is not
monotone in the channels (a user function) is not checked: a larger profile might still meet
it, and a user's function runs only inside trials, where its errors end just that trial.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from prunetune.budgets import Budget, BudgetError
from prunetune.search.space import ProfileSpace
from prunetune.trainables import Profile
from prunetune.trainables.trial import TrialSetup, example_input, pruned_model

# Latency is not monotone in principle (kernel tile effects) but the smallest model being too
# slow means the budget is out of reach in practice; refuse it like a monotone cost.
_REFUSE_WHEN_OVER = {"latency"}


def smallest_profile(space: ProfileSpace) -> Profile:
    return Profile({g.name: (min(g.choices()) if g.levels else g.floor) for g in space.groups})


def _measurable_here(budget: Budget) -> bool:
    device = str(budget.options.get("device", "cpu"))
    return not device.startswith("cuda") or torch.cuda.is_available()


def check_measured_budgets(space: ProfileSpace, setup: TrialSetup, num_classes: int, dense: dict[str, float]) -> None:
    """Raise :class:`BudgetError` for a measured budget the smallest profile already breaks."""
    budgets = [
        b
        for b in setup.budgets
        if not b.cost_fn().analytic and _measurable_here(b) and (b.cost_fn().monotone or b.cost in _REFUSE_WHEN_OVER)
    ]
    if not budgets:
        return
    structural = replace(setup, prune=setup.prune.replace(criterion="l1"))
    model = pruned_model(structural, smallest_profile(space), num_classes)
    for budget in budgets:
        cost = budget.cost_fn()
        value = cost(model, example_input(setup))
        limit = budget.limit(dense.get(budget.key))
        if value <= limit:
            continue
        raise BudgetError(
            f"budget {budget.label} cannot be met: the smallest profile in the space (every group at "
            f"its lowest ratio) measures {value:.4g} {cost.unit}, over the limit {limit:.4g}; raise `max` "
            f"or lower space.low"
        )
