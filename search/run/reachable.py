"""Refusing budgets that no profile in the space can meet, before any trial runs, before the
base model is trained and before any file is written.

For a budget on a cost a trial measures (latency, peak memory, a user function), the driver
builds the smallest model the space allows (every group at its lowest ratio or level), measures
it, and refuses the search when even that model is over the limit. These costs depend on the
architecture, not the weights, so an untrained copy serves. Analytic costs (MACs, parameters)
are checked exactly by the searchers' cost model instead. A cost that is not monotone in the
channels (a user function) is not checked: a larger profile might still meet it. Every cost
is measured once on the untrained dense model first, so a cost function that fails or returns
a negative or non-finite value is refused here too, not after the base model is trained.
"""

from __future__ import annotations

import torch

from prunetune.budgets import Budget, BudgetError, measure_costs
from prunetune.search.space import ProfileSpace
from prunetune.trainables import Profile, build_model
from prunetune.trainables.groups import apply_profile
from prunetune.trainables.trial import TrialSetup, example_input

# Latency is not monotone in principle (kernel tile effects) but the smallest model being too
# slow means the budget is out of reach in practice; refuse it like a monotone cost.
_REFUSE_WHEN_OVER = {"latency"}


def smallest_profile(space: ProfileSpace) -> Profile:
    return Profile({g.name: (min(g.choices()) if g.levels else g.floor) for g in space.groups})


def _measurable_here(budget: Budget) -> bool:
    """Whether the driver can measure the budget's cost: not on a named node (``on``: its
    measuring actor does, for the trials), not on a GPU this machine lacks."""
    device = str(budget.options.get("device", "cpu"))
    return not budget.options.get("on") and (not device.startswith("cuda") or torch.cuda.is_available())


def _architecture(setup: TrialSetup, num_classes: int) -> torch.nn.Module:
    spec = setup.model
    return build_model(spec.name, num_classes=num_classes, input_size=spec.input_size, width=spec.width)


def check_measured_budgets(space: ProfileSpace, setup: TrialSetup, num_classes: int) -> None:
    """Measure every cost of ``setup`` on the untrained dense architecture (a BudgetError for a
    cost that cannot be measured or is negative), then raise :class:`BudgetError` for a measured
    budget the smallest profile already breaks. Needs no base checkpoint."""
    sample = example_input(setup)
    dense_model = _architecture(setup, num_classes)
    elsewhere = {b.key for b in setup.budgets if not _measurable_here(b)}  # e.g. CUDA latency: trials measure it
    costs = setup.cost_functions()  # two budgets on one cost are refused here
    dense = measure_costs(dense_model, sample, {key: cost for key, cost in costs.items() if key not in elsewhere})
    budgets = [
        b
        for b in setup.budgets
        if not b.cost_fn().analytic and _measurable_here(b) and (b.cost_fn().monotone or b.cost in _REFUSE_WHEN_OVER)
    ]
    if not budgets:
        return
    smallest = _architecture(setup, num_classes)
    apply_profile(smallest, smallest_profile(space), sample, setup.prune.replace(criterion="l1"))
    for budget in budgets:
        cost = budget.cost_fn()
        value = cost(smallest, sample)
        limit = budget.limit(dense.get(budget.key))
        if value <= limit:
            continue
        raise BudgetError(
            f"budget {budget.label} cannot be met: the smallest profile in the space (every group at "
            f"its lowest ratio) measures {value:.4g} {cost.unit}, over the limit {limit:.4g}; raise `max` "
            f"or lower space.low"
        )
