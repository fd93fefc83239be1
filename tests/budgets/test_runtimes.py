"""Latency in a deployment runtime, its cache across searches, and refused runtimes."""

from __future__ import annotations

import pytest

from prunetune.budgets import Budget, BudgetError, get_cost, measure_intervals
from prunetune.budgets.latency_cache import architecture_signature

FAST = {"warmup": 1, "repeats": 3, "max_repeats": 6}


@pytest.mark.parametrize("runtime", ["eager", "torchscript", "onnxruntime"])
def test_each_runtime_reports_a_median_inside_its_interval(runtime, dense, example_input) -> None:
    measured = get_cost("latency", runtime=runtime, **FAST).measure_interval(dense, example_input)
    assert 0 < measured.low <= measured.value <= measured.high and 3 <= measured.repeats <= 6
    assert not measured.cached


def test_an_unknown_runtime_is_one_line_listing_the_valid_ones() -> None:
    with pytest.raises(BudgetError, match="unknown runtime 'onnx'.*eager, onnxruntime, tensorrt, torchscript"):
        Budget.parse({"cost": "latency", "max": 5, "options": {"runtime": "onnx"}})


def test_tensorrt_is_a_known_name_refused_plainly_where_it_cannot_run() -> None:
    with pytest.raises(BudgetError, match="runtime 'tensorrt'"):
        Budget.parse({"cost": "latency", "max": 5, "options": {"runtime": "tensorrt"}})


def test_a_budget_names_where_and_how_it_is_measured_in_its_key() -> None:
    budget = Budget.parse({"cost": "latency", "max": 5, "options": {"on": "device:orin", "runtime": "onnxruntime"}})
    assert budget.key == "latency_device_orin_onnxruntime"
    assert Budget.parse({"cost": "latency", "max": 5, "options": {"repeats": 4}}).key == "latency"


def test_a_cost_measured_on_a_named_node_is_never_measured_here(dense, example_input) -> None:
    cost = get_cost("latency", on="device:orin", **FAST)
    with pytest.raises(BudgetError, match="measured on the node offering 'device:orin'"):
        measure_intervals(dense, example_input, {"latency": cost})


def test_the_cache_answers_the_same_model_again_and_not_another(dense, pruned, example_input, tmp_path) -> None:
    first = get_cost("latency", cache=str(tmp_path), **FAST).measure_interval(dense, example_input)
    again = get_cost("latency", cache=str(tmp_path), **FAST).measure_interval(dense, example_input)
    other = get_cost("latency", cache=str(tmp_path), **FAST).measure_interval(pruned, example_input)
    assert again.cached and (again.value, again.low, again.high) == (first.value, first.low, first.high)
    assert not other.cached
    assert len(list(tmp_path.glob("*.json"))) == 2


def test_the_architecture_signature_depends_on_shapes_not_weights(dense, pruned) -> None:
    shape = (1, 3, 12, 12)
    before = architecture_signature(dense, shape)
    for parameter in dense.parameters():
        parameter.data.mul_(2)
    assert architecture_signature(dense, shape) == before != architecture_signature(pruned, shape)


def test_the_thread_clock_times_cpu_work_and_is_refused_where_it_cannot(dense, example_input) -> None:
    measured = get_cost("latency", clock="thread", **FAST).measure_interval(dense, example_input)
    assert 0 < measured.low <= measured.value <= measured.high
    with pytest.raises(BudgetError, match="clock='thread'.*threads: 1"):
        get_cost("latency", clock="thread", threads=2)
    with pytest.raises(BudgetError, match="clock='sundial' must be one of: wall, thread"):
        get_cost("latency", clock="sundial")
