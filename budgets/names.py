"""Cost functions by name: every built-in cost, and a user's function by ``module:function``.

``get_cost`` is what budgets and trials call; importing this module registers the measured
costs (latency, peak memory) beside the counted ones, so every built-in name resolves.
"""

from __future__ import annotations

from typing import Any

from prunetune.budgets import _measured  # noqa: F401  (registers latency, peak_memory)
from prunetune.budgets.costs import COSTS, CallableCost, CostFunction, _check_options


def cost_names() -> list[str]:
    """The registered cost names, sorted."""
    return COSTS.names()


def get_cost(name: str, **options: Any) -> CostFunction:
    """A new cost function for a registered name or a ``module:function`` path.

    A path is only checked for its form here; its module is imported by the cost's
    ``resolve()`` or on its first call (see :class:`~prunetune.budgets.costs.CallableCost`).

    Raises:
        BudgetError: unknown name, an option the cost does not take or a bad option value,
            or a path not of the form ``module:function``.
    """
    if ":" in name:
        return CallableCost(path=name, options=options)
    cls = COSTS.get(name)
    _check_options(cls, options)
    return cls(**options)
