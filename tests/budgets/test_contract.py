"""CostContract: every registered cost, and a user function by path, pass the same tests."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from prunetune.budgets import CostFunction, cost_names, get_cost
from tests.budgets.nets import tiny_cnn

USER_FUNCTION = "tests.budgets.userfuncs:bias_count"
# Options that keep the measured costs fast; everything else uses its defaults.
FAST_OPTIONS: dict[str, dict[str, Any]] = {"latency": {"warmup": 1, "repeats": 3}}


def _snapshot(model: nn.Module) -> tuple[dict[str, torch.Tensor], list[bool]]:
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return state, [m.training for m in model.modules()]


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _build(name: str) -> CostFunction:
    return get_cost(name, **FAST_OPTIONS.get(name, {}))


def _names(claim: str | None = None) -> list[str]:
    """Every cost under test, or those whose class makes ``claim`` (e.g. "monotone")."""
    names = [*cost_names(), USER_FUNCTION]
    return [n for n in names if claim is None or getattr(_build(n), claim)]


@pytest.fixture
def cost(request: pytest.FixtureRequest) -> CostFunction:
    return _build(request.param)


def over(claim: str | None = None) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("cost", _names(claim), indirect=True)


class TestCostContract:
    @over()
    def test_declares_its_contract(self, cost: CostFunction) -> None:
        assert isinstance(cost.name, str) and cost.name
        assert isinstance(cost.unit, str)
        for flag in (cost.monotone, cost.deterministic, cost.analytic):
            assert isinstance(flag, bool)

    @over()
    def test_returns_finite_non_negative_float(self, cost, dense, example_input) -> None:
        value = cost(dense, example_input)
        assert isinstance(value, float)
        assert math.isfinite(value) and value >= 0

    @over("monotone")
    def test_fewer_channels_never_cost_more(self, cost, dense, pruned, example_input) -> None:
        # Strictly less for these two nets: a cost blind to channel counts must not pass.
        assert cost(pruned, example_input) < cost(dense, example_input)

    @over("deterministic")
    def test_deterministic_cost_repeats_exactly(self, cost, dense, example_input) -> None:
        assert cost(dense, example_input) == cost(dense, example_input)

    @over("analytic")
    def test_analytic_cost_ignores_weight_values(self, cost, example_input) -> None:
        assert cost(tiny_cnn(seed=1), example_input) == cost(tiny_cnn(seed=2), example_input)

    @over()
    @pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
    def test_model_is_left_unchanged(self, cost, dense, example_input, training) -> None:
        # In train mode a stray forward would update BatchNorm's running statistics.
        dense.train(training)
        state, modes = _snapshot(dense)
        cost(dense, example_input)
        after_state, after_modes = _snapshot(dense)
        assert _same_state(state, after_state)
        assert after_modes == modes
        assert all(p.device.type == "cpu" for p in dense.parameters())
