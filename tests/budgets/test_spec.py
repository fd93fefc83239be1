"""The Budget spec: validation, limits, keys and labels, and the trial-side helpers."""

from __future__ import annotations

import warnings

import pydantic
import pytest
import torch
from torch import nn

from prunetune.budgets import (
    DEFAULT_COSTS,
    Budget,
    BudgetError,
    CostFunction,
    Latency,
    check_budgets,
    cost_functions,
    get_cost,
    measure_costs,
)


class TestLimits:
    def test_relative_limit_is_a_fraction_of_the_dense_cost(self) -> None:
        budget = Budget(cost="macs", max=0.25, relative=True)
        assert budget.limit(8000.0) == 2000.0
        assert budget.meets(2000.0, 8000.0) and not budget.meets(2001.0, 8000.0)

    def test_absolute_limit_ignores_the_dense_cost(self) -> None:
        budget = Budget(cost="params", max=1000)
        assert budget.limit() == budget.limit(5.0) == 1000.0
        assert budget.meets(1000.0) and not budget.meets(1000.5)

    def test_meets_tolerates_rounding_only(self) -> None:
        budget = Budget(cost="macs", max=0.1, relative=True)
        limit = 0.1 * 3.0
        assert budget.meets(limit * (1 + 1e-12), 3.0)
        assert not budget.meets(limit * (1 + 1e-6), 3.0)

    @pytest.mark.parametrize("dense", [None, 0.0, float("nan")])
    def test_relative_limit_needs_a_positive_dense_cost(self, dense) -> None:
        with pytest.raises(BudgetError, match="relative to the dense model's macs"):
            Budget(cost="macs", max=0.5, relative=True).limit(dense)


class TestKeyAndLabel:
    @pytest.mark.parametrize(
        ("budget", "key", "label"),
        [
            (Budget(cost="macs", max=0.5, relative=True), "macs", "macs<=50%"),
            (Budget(cost="params", max=1.5e6), "params", "params<=1.5M params"),
            (Budget(cost="latency", max=5), "latency", "latency<=5 ms"),
            (
                Budget(cost="latency", max=2.5, options={"device": "cuda:0", "batch_size": 8}),
                "latency_8_cuda_0",
                "latency(batch_size=8, device=cuda:0)<=2.5 ms",
            ),
            (
                Budget(cost="tests.budgets.userfuncs:bias_count", max=40),
                "bias_count",
                "bias_count<=40",
            ),
        ],
        ids=lambda value: value if isinstance(value, str) else None,
    )
    def test_key_and_label(self, budget: Budget, key: str, label: str) -> None:
        assert budget.key == key
        assert budget.label == label

    def test_same_cost_with_other_options_gets_another_key(self) -> None:
        cpu = Budget(cost="latency", max=5, options={"device": "cpu"})
        cuda = Budget(cost="latency", max=5, options={"device": "cuda"})
        assert (cpu.key, cuda.key) == ("latency_cpu", "latency_cuda")


class TestValidation:
    @pytest.mark.parametrize("bad_max", [0, -1.0, float("nan"), float("inf")])
    def test_max_must_be_positive_and_finite(self, bad_max: float) -> None:
        with pytest.raises(BudgetError, match="must be a finite number > 0"):
            Budget(cost="macs", max=bad_max)
        with pytest.raises(BudgetError, match="must be a finite number > 0"):
            Budget.parse({"cost": "macs", "max": bad_max})

    def test_unknown_cost_lists_valid_names(self) -> None:
        with pytest.raises(BudgetError, match="unknown cost 'flops'; choose one of: latency, macs"):
            Budget.parse({"cost": "flops", "max": 1})

    def test_a_module_that_does_not_import_parses_and_fails_when_resolved(self) -> None:
        budget = Budget.parse({"cost": "no_such_pkg.costs:energy", "max": 1})  # status reads it anywhere
        assert (budget.key, budget.label) == ("energy", "energy<=1")
        with pytest.raises(BudgetError, match="cannot import module 'no_such_pkg.costs'"):
            cost_functions([budget])  # what a search and a trial call first

    def test_a_path_without_a_function_is_refused_when_parsed(self) -> None:
        with pytest.raises(BudgetError, match="not a 'module:function' path"):
            Budget.parse({"cost": "no_such_pkg.costs:", "max": 1})

    def test_unknown_option_of_the_cost(self) -> None:
        with pytest.raises(BudgetError, match="'latency' got options \\['repeat'\\]"):
            Budget(cost="latency", max=1, options={"repeat": 3})

    @pytest.mark.parametrize(
        ("data", "match"),
        [
            ({"cost": "macs", "max": 0.5, "relatve": True}, "field 'relatve'=True: Extra inputs"),
            ({"cost": "macs", "max": "half"}, "field 'max'='half'"),
            ({"max": 0.5}, "field 'cost'"),
            (["macs", 0.5], "a budget must be a mapping"),
        ],
    )
    def test_parse_turns_every_mistake_into_one_line(self, data, match: str) -> None:
        with pytest.raises(BudgetError, match=match) as raised:
            Budget.parse(data)
        assert "\n" not in str(raised.value)

    def test_relative_max_above_one_warns(self) -> None:
        with pytest.warns(UserWarning, match="relative max above 1"):
            Budget(cost="macs", max=1.5, relative=True)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            Budget(cost="macs", max=1.5)  # absolute: no warning

    def test_is_frozen_and_builds_its_cost(self) -> None:
        budget = Budget(cost="latency", max=5, options={"repeats": 2})
        with pytest.raises(pydantic.ValidationError):
            budget.max = 10  # type: ignore[misc]
        cost = budget.cost_fn()
        assert isinstance(cost, Latency) and cost.repeats == 2


class SwitchesToEval(CostFunction):
    """A cost that forgets to restore the model's mode."""

    name, unit = "switches_to_eval", "calls"
    monotone = deterministic = analytic = True

    def __call__(self, model: nn.Module, example_input: torch.Tensor) -> float:
        model.eval()
        return 1.0


class TestTrialHelpers:
    def test_measure_costs_keys_values_and_restores_modes(self, dense, example_input) -> None:
        dense.train()
        dense[1].eval()  # a mixed state must come back exactly
        modes = [m.training for m in dense.modules()]
        values = measure_costs(dense, example_input, {"params": get_cost("params"), "sloppy": SwitchesToEval()})
        params = float(sum(p.numel() for p in dense.parameters()))
        assert values == {"params": params, "sloppy": 1.0}
        assert [m.training for m in dense.modules()] == modes

    def test_measure_costs_ends_with_the_user_function_error(self, dense, example_input) -> None:
        costs = {"meter": get_cost("tests.budgets.userfuncs:broken_meter")}
        with pytest.raises(BudgetError, match="broken_meter raised RuntimeError"):
            measure_costs(dense, example_input, costs)

    def test_cost_functions_holds_defaults_and_every_budget(self) -> None:
        budgets = [
            Budget(cost="macs", max=0.5, relative=True),
            Budget(cost="latency", max=5, options={"device": "cuda"}),
        ]
        costs = cost_functions(budgets)
        assert list(costs) == [*DEFAULT_COSTS, "latency_cuda"]
        assert costs["latency_cuda"].device == torch.device("cuda")

    def test_check_budgets_end_to_end(self, dense, pruned, example_input) -> None:
        budgets = [
            Budget(cost="macs", max=0.5, relative=True),
            Budget(cost="params", max=1000),
            Budget(cost="model_size", max=0.9, relative=True),
        ]
        costs = cost_functions(budgets)
        dense_values = measure_costs(dense, example_input, costs)
        pruned_values = measure_costs(pruned, example_input, costs)
        met = check_budgets(pruned_values, dense_values, budgets)
        # Halving every width keeps about a quarter of the MACs and parameters.
        assert met == {"macs": True, "params": False, "model_size": True}

    def test_two_budgets_on_one_key_are_rejected(self) -> None:
        budgets = [Budget(cost="macs", max=0.5, relative=True), Budget(cost="macs", max=1e6)]
        with pytest.raises(BudgetError, match="several budgets on the same cost .*: macs"):
            check_budgets({"macs": 1.0}, {"macs": 2.0}, budgets)
