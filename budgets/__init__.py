"""What a model costs: cost functions, their registry, and the Budget spec.

Imports nothing of ours (``search`` and ``trainables`` import this package). Importing it
registers every built-in cost: ``macs``, ``params``, ``model_size``, ``latency`` and
``peak_memory``; ``get_cost("module:function")`` wraps a user's function.
"""

from __future__ import annotations

from prunetune.budgets._measured import Latency, PeakMemory
from prunetune.budgets.analytic import ANALYTIC_COSTS, AnalyticCostModel, Term, channels_kept
from prunetune.budgets.costs import (
    CallableCost,
    CostFunction,
    Macs,
    ModelSize,
    Params,
    cost_names,
    get_cost,
    register_cost,
)
from prunetune.budgets.errors import BudgetError, ConfigError, PrunetuneError
from prunetune.budgets.spec import DEFAULT_COSTS, Budget, check_budgets, cost_functions, measure_costs

__all__ = [
    "ANALYTIC_COSTS",
    "DEFAULT_COSTS",
    "AnalyticCostModel",
    "Budget",
    "BudgetError",
    "CallableCost",
    "ConfigError",
    "CostFunction",
    "Latency",
    "Macs",
    "ModelSize",
    "Params",
    "PeakMemory",
    "PrunetuneError",
    "Term",
    "channels_kept",
    "check_budgets",
    "cost_functions",
    "cost_names",
    "get_cost",
    "measure_costs",
    "register_cost",
]
