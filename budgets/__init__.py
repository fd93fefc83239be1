"""What a model costs: cost functions, their registry, and the Budget spec.

Imports nothing of ours (``search`` and ``trainables`` import this package). Names load on
first use (PEP 562), so ``prunetune.budgets.errors``, ``.registry`` and ``.analytic`` (what
searchers need) come without torch. Using any cost name registers every built-in cost:
``macs``, ``params``, ``model_size``, ``latency`` and ``peak_memory``; ``get_cost("module:function")``
wraps a user's function.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Latency": "_measured",
    "PeakMemory": "_measured",
    "ANALYTIC_COSTS": "analytic",
    "AnalyticCostModel": "analytic",
    "Term": "analytic",
    "channels_kept": "analytic",
    "CallableCost": "costs",
    "CostFunction": "costs",
    "Macs": "costs",
    "ModelSize": "costs",
    "Params": "costs",
    "cost_names": "names",
    "get_cost": "names",
    "register_cost": "costs",
    "BudgetError": "errors",
    "ConfigError": "errors",
    "PrunetuneError": "errors",
    "Registry": "registry",
    "DEFAULT_COSTS": "spec",
    "Budget": "spec",
    "check_budgets": "spec",
    "cost_functions": "spec",
    "measure_costs": "spec",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
