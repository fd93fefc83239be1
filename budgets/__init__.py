"""What a model costs: cost functions, their registry, and the Budget spec.

Imports nothing of ours (``search`` and ``trainables`` import this package). Names load on
first use (PEP 562), so ``prunetune.budgets.errors``, ``.registry`` and ``.analytic`` (what
searchers need) come without torch. Using any cost name registers every built-in cost:
``macs``, ``params``, ``model_size``, ``latency`` and ``peak_memory``; ``get_cost("module:function")``
wraps a user's function.
"""

from __future__ import annotations

from prunetune.budgets.lazy import lazy_exports

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
    "MachineError": "errors",
    "PrunetuneError": "errors",
    "Registry": "registry",
    "DEFAULT_COSTS": "spec",
    "Budget": "spec",
    "check_budgets": "spec",
    "cost_functions": "spec",
    "measure_costs": "spec",
    "measure_intervals": "spec",
    "Measurement": "timing",
    "TimingProtocol": "timing",
    "LatencyCache": "latency_cache",
    "Runtime": "runtimes",
    "get_runtime": "runtimes",
    "runtime_names": "runtimes",
    "TrialReport": "report",
    "budget_metrics": "report",
    "is_finished": "report",
}

__all__ = sorted(_WHERE)


__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
