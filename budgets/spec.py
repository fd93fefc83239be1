"""The Budget spec: a limit on one cost, and the helpers a trial uses to check budgets.

A trial builds its cost functions with :func:`cost_functions`, measures the dense model and
every pruned model with :func:`measure_costs` (both keyed by :attr:`Budget.key`, plus
:data:`DEFAULT_COSTS`), and asks :func:`check_budgets` which budgets the pruned model meets.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pydantic
import torch

from prunetune.budgets.costs import CostFunction
from prunetune.budgets.errors import BudgetError
from prunetune.budgets.names import get_cost
from prunetune.budgets.timing import Measurement

__all__ = ["DEFAULT_COSTS", "Budget", "check_budgets", "cost_functions", "measure_costs", "measure_intervals"]

Elsewhere = Callable[[CostFunction, torch.nn.Module, torch.Tensor], Measurement]
"""Measures a cost that names a node (``on``) there: the trial's link to the measuring actor."""

DEFAULT_COSTS: tuple[str, ...] = ("macs", "params")
"""Costs every trial reports, with or without a budget on them."""

_TOLERANCE = 1e-9


class Budget(pydantic.BaseModel):
    """A limit on one cost of the pruned model: ``cost(pruned) <= max``, or with
    ``relative=True``, ``cost(pruned) <= max * cost(dense)``.

    Built from a config, e.g. ``{"cost": "latency", "max": 5, "options": {"device": "cuda"}}``
    or ``{"cost": "macs", "max": 0.5, "relative": True}``. Construction checks the cost name,
    its options and ``max`` and raises :class:`BudgetError` (not a pydantic error) for a bad
    one; :meth:`parse` also turns type errors and unknown fields into a BudgetError. A
    ``module:function`` cost is checked by its form only: :func:`cost_functions` imports it,
    so a manifest naming it reads where the module is not importable.
    A relative ``max`` above 1 allows a model bigger than the dense one: a warning, not an
    error.
    """

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    cost: str
    max: float
    relative: bool = False
    options: dict[str, Any] = pydantic.Field(default_factory=dict)

    @pydantic.field_validator("max")
    @classmethod
    def _positive_max(cls, value: float) -> float:
        # BudgetError is not a ValueError, so pydantic lets it through unwrapped.
        if not (math.isfinite(value) and value > 0):
            raise BudgetError(f"budget max={value!r} must be a finite number > 0")
        return value

    @pydantic.model_validator(mode="after")
    def _known_cost(self) -> Budget:
        get_cost(self.cost, **self.options)
        if self.relative and self.max > 1:
            warnings.warn(
                f"budget {self.label}: a relative max above 1 allows a model costlier than "
                "the dense one; did you mean a fraction such as 0.5?",
                UserWarning,
                stacklevel=2,
            )
        return self

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Budget:
        """A Budget from a config mapping; any mistake is one BudgetError line."""
        if not isinstance(data, Mapping):
            raise BudgetError(f"a budget must be a mapping with fields cost, max, relative, options; got {data!r}")
        try:
            return cls.model_validate(data)
        except pydantic.ValidationError as error:
            first = error.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or "budget"
            value = first.get("input")
            raise BudgetError(
                f"budget {dict(data)!r}: field {field!r}={value!r}: {first['msg']}; "
                "a budget has fields cost (str), max (number > 0), relative (bool), "
                "options (mapping)"
            ) from None

    def cost_fn(self) -> CostFunction:
        """A new cost function for this budget's cost and options."""
        return get_cost(self.cost, **self.options)

    def limit(self, dense_value: float | None = None) -> float:
        """The absolute limit; a relative budget needs the dense model's cost."""
        if not self.relative:
            return self.max
        if dense_value is None or not (math.isfinite(dense_value) and dense_value > 0):
            raise BudgetError(
                f"budget {self.label} is relative to the dense model's {self.cost}, "
                f"which must be a finite number > 0, got {dense_value!r}"
            )
        return self.max * dense_value

    def meets(self, value: float, dense_value: float | None = None) -> bool:
        """Whether a model costing ``value`` is within the limit (relative tolerance 1e-9)."""
        limit = self.limit(dense_value)
        return value <= limit + _TOLERANCE * abs(limit)

    @property
    def key(self) -> str:
        """A stable, metric-safe id: the cost name, then the values of the options that change
        *what* is measured (a cost's ``key_options``; all options when it declares none), sorted
        by option name, e.g. ``"macs"``, ``"latency_cuda"``; ``repeats``/``warmup`` only change
        how carefully latency is measured, so they stay out. A user function is named by its
        function."""
        parts = [self.cost.rpartition(":")[2]]
        identity = getattr(self.cost_fn(), "key_options", None)
        names = sorted(self.options) if identity is None else [n for n in sorted(self.options) if n in identity]
        parts += [str(self.options[name]) for name in names]
        return "_".join(_metric_safe(part) for part in parts)

    @property
    def label(self) -> str:
        """Human text, e.g. ``"macs<=50%"`` or ``"latency(device=cuda)<=5 ms"``."""
        name = self.cost.rpartition(":")[2]
        if self.options:
            name += "(" + ", ".join(f"{k}={v}" for k, v in sorted(self.options.items())) + ")"
        if self.relative:
            return f"{name}<={self.max * 100:g}%"
        unit = self.cost_fn().unit
        return f"{name}<={_short_number(self.max)}" + (f" {unit}" if unit else "")


def cost_functions(budgets: Sequence[Budget], defaults: Sequence[str] = DEFAULT_COSTS) -> dict[str, CostFunction]:
    """The cost functions a trial measures, keyed as :func:`check_budgets` expects: the
    ``defaults`` by name, then each budget's by :attr:`Budget.key`, each resolved: a user
    function whose module does not import is a BudgetError here (a search calls this before
    it writes anything), while merely parsing a budget never imports it."""
    _check_unique_keys(budgets)
    costs = {name: get_cost(name) for name in defaults}
    for budget in budgets:
        costs.setdefault(budget.key, budget.cost_fn().resolve())
    return costs


def measure_costs(
    model: torch.nn.Module,
    example_input: torch.Tensor,
    costs: Mapping[str, CostFunction],
    *,
    elsewhere: Elsewhere | None = None,
) -> dict[str, float]:
    """Evaluate every cost on ``model``, keyed like ``costs``: the figures of
    :func:`measure_intervals`."""
    measured = measure_intervals(model, example_input, costs, elsewhere=elsewhere)
    return {key: m.value for key, m in measured.items()}


def measure_intervals(
    model: torch.nn.Module,
    example_input: torch.Tensor,
    costs: Mapping[str, CostFunction],
    *,
    elsewhere: Elsewhere | None = None,
) -> dict[str, Measurement]:
    """Every cost on ``model`` with its interval, keyed like ``costs``.

    A cost with an interval (latency) gives its median and confidence interval; a counted cost
    an exact figure. A cost that names a node (``on``) is measured by ``elsewhere`` (the
    trial's link to the measuring actor); without that link it is a BudgetError, never
    measured where it would be wrong. The model's train/eval flags are restored on every module
    afterwards, whatever a cost did; cost functions must not change its weights (the built-ins
    work on copies). A cost that is not a finite number >= 0 is a BudgetError naming it (a
    frontier of negative costs would be silently wrong).
    """
    modes = {module: module.training for module in model.modules()}
    try:
        return {key: _valid(key, _measure_one(cost, model, example_input, elsewhere)) for key, cost in costs.items()}
    finally:
        for module, training in modes.items():
            module.training = training


def _measure_one(
    cost: CostFunction, model: torch.nn.Module, example_input: torch.Tensor, elsewhere: Elsewhere | None
) -> Measurement:
    if getattr(cost, "on", None):
        if elsewhere is None:
            raise BudgetError(f"cost {cost!r} is measured on the node offering {cost.on!r}, not here")  # type: ignore[attr-defined]
        return elsewhere(cost, model, example_input)
    interval = getattr(cost, "measure_interval", None)
    if interval is not None:
        return interval(model, example_input)
    return Measurement.exact(cost(model, example_input))


def _valid(key: str, measured: Measurement) -> Measurement:
    value = _valid_cost(key, measured.value)
    return measured.with_(value=value, low=min(float(measured.low), value), high=max(float(measured.high), value))


def _valid_cost(key: str, value: object) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not (math.isfinite(number) and number >= 0):
        raise BudgetError(
            f"cost {key!r} measured {value!r}; a cost must be a finite number >= 0: fix the cost function"
        )
    return number


def check_budgets(
    values: Mapping[str, float], dense: Mapping[str, float], budgets: Sequence[Budget]
) -> dict[str, bool]:
    """Which budgets a pruned model meets, keyed by :attr:`Budget.key`.

    ``values`` and ``dense`` hold the pruned and dense model's costs keyed by ``Budget.key``
    (as :func:`measure_costs` returns them for :func:`cost_functions`); ``dense`` is read only
    for relative budgets. Two budgets with the same key are a BudgetError.
    """
    _check_unique_keys(budgets)
    return {budget.key: budget.meets(values[budget.key], dense.get(budget.key)) for budget in budgets}


def _check_unique_keys(budgets: Sequence[Budget]) -> None:
    keys = [budget.key for budget in budgets]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise BudgetError(
            f"several budgets on the same cost and options: {', '.join(duplicates)}; keep only the tightest one of each"
        )


def _metric_safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_")


def _short_number(value: float) -> str:
    """``5``, ``0.25``, ``12.5k``, ``3M``: 3 significant digits above a thousand."""
    for power, suffix in ((12, "T"), (9, "G"), (6, "M"), (3, "k")):
        if abs(value) >= 10**power:
            return f"{value / 10**power:.3g}{suffix}"
    return f"{value:g}"
