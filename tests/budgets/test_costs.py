"""Built-in costs against hand counts, the registry, and user functions by import path."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from prunetune.budgets import (
    BudgetError,
    CallableCost,
    CostFunction,
    Latency,
    PeakMemory,
    cost_names,
    get_cost,
    register_cost,
)
from prunetune.budgets import costs as costs_module


def hand_net(*, inplace: bool = False) -> nn.Sequential:
    """Conv(3->4, 3x3, pad 1, no bias) -> BN -> ReLU -> MaxPool(2) -> Flatten -> Linear(64, 10)."""
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(inplace=inplace),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64, 10),
    )


# A batch of 3; every cost below counts one 3x8x8 image.
HAND_INPUT = torch.ones(3, 3, 8, 8)


def test_macs_match_the_hand_count() -> None:
    conv = (4 * 8 * 8) * (3 * 3 * 3)  # output positions x MACs per position = 6912
    bn = 2 * (4 * 8 * 8)  # torch-pruning counts scale and shift per element = 512
    relu = 4 * 8 * 8  # one op per output element = 256
    pool = 4 * 8 * 8  # one op per input element = 256
    linear = 64 * 10 + 10  # weights plus bias = 650
    assert get_cost("macs")(hand_net(), HAND_INPUT) == conv + bn + relu + pool + linear == 8586


def test_params_match_the_hand_count() -> None:
    conv, bn, linear = 4 * 3 * 3 * 3, 2 * 4, 64 * 10 + 10
    assert get_cost("params")(hand_net(), HAND_INPUT) == conv + bn + linear == 766


def test_model_size_is_the_saved_state_dict() -> None:
    raw = (766 + 4 + 4) * 4 + 8  # float32 parameters and BN statistics, int64 batch counter
    size = get_cost("model_size")(hand_net(), HAND_INPUT)
    assert raw < size < raw + 4096  # plus the zip container's headers


@pytest.mark.parametrize("inplace", [False, True], ids=["relu", "inplace-relu"])
def test_cpu_peak_memory_follows_the_documented_rule(inplace: bool) -> None:
    weights = (766 + 4 + 4) * 4 + 8
    # Largest input+output over modules: the BatchNorm (4x8x8 in, 4x8x8 out, float32); an
    # in-place ReLU's input and output are the same memory, counted once.
    largest = 2 * (4 * 8 * 8 * 4)
    assert PeakMemory()(hand_net(inplace=inplace), HAND_INPUT) == weights + largest


def test_peak_memory_activations_scale_with_batch_size() -> None:
    one = PeakMemory(batch_size=1)(hand_net(), HAND_INPUT)
    four = PeakMemory(batch_size=4)(hand_net(), HAND_INPUT)
    assert four - one == 3 * 2 * (4 * 8 * 8 * 4)


def test_latency_reports_median_and_spread_and_restores_threads(dense, example_input) -> None:
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        latency = Latency(threads=1, warmup=0, repeats=3)
        median, iqr = latency.measure(dense, example_input)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)
    assert median > 0 and iqr >= 0


def test_unavailable_device_is_a_budget_error(dense, example_input) -> None:
    missing = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU, or cuda:0 on CPU
    for cost in (Latency(device=missing, repeats=1), PeakMemory(device=missing)):
        with pytest.raises(BudgetError, match="not available"):
            cost(dense, example_input)


@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        ("latency", {"device": "tpu"}, "'tpu' is not one of: cpu, cuda, cuda:N"),
        ("latency", {"repeats": 0}, "repeats=0 must be an integer >= 1"),
        ("peak_memory", {"batch_size": 2.5}, "batch_size=2.5"),
        ("latency", {"repeat": 5}, "accepts: device, batch_size, threads, warmup, repeats"),
        ("macs", {"device": "cpu"}, "accepts: none"),
    ],
)
def test_bad_options_are_budget_errors(name: str, options: dict, match: str) -> None:
    with pytest.raises(BudgetError, match=match):
        get_cost(name, **options)


def test_costs_need_a_batched_input(dense) -> None:
    with pytest.raises(BudgetError, match=r"batch shaped \(N, ...\)"):
        get_cost("macs")(dense, torch.randn(3, 12, 12)[0, 0, 0])


def test_every_builtin_is_registered() -> None:
    builtins = {"macs", "params", "latency", "peak_memory", "model_size"}
    assert builtins <= set(cost_names())
    assert all(get_cost(name).name == name for name in builtins)


def test_unknown_cost_lists_valid_names_and_import_paths() -> None:
    with pytest.raises(BudgetError) as raised:
        get_cost("flops")
    message = str(raised.value)
    assert "'flops'" in message and "module:function" in message
    assert all(name in message for name in cost_names())


def test_register_cost_adds_a_name_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(costs_module.COSTS, "_items", dict(costs_module.COSTS._items))

    @register_cost("depth")
    class Depth(CostFunction):
        unit = "layers"
        monotone = deterministic = analytic = True

        def __call__(self, model: nn.Module, example_input: torch.Tensor) -> float:
            return float(len(list(model.children())))

    assert "depth" in cost_names()
    assert get_cost("depth")(hand_net(), HAND_INPUT) == 6.0
    with pytest.raises(ValueError, match="already registered"):
        register_cost("depth")(Depth)


class TestUserFunction:
    def test_is_called_with_options_as_keywords(self, dense, example_input) -> None:
        cost = get_cost("tests.budgets.userfuncs:scaled_params", scale=0.5)
        assert isinstance(cost, CallableCost)
        assert cost(dense, example_input) == 0.5 * sum(p.numel() for p in dense.parameters())

    def test_gets_a_copy_it_may_change(self, dense, example_input) -> None:
        before = [p.clone() for p in dense.parameters()]
        assert get_cost("tests.budgets.userfuncs:zero_weights")(dense, example_input) == 1.0
        assert dense.training
        assert all(torch.equal(a, b) for a, b in zip(before, dense.parameters()))

    @pytest.mark.parametrize(
        ("path", "match"),
        [
            ("tests.budgets.nowhere:fn", "cannot import module 'tests.budgets.nowhere'"),
            ("tests.budgets.userfuncs:missing", "has no 'missing'"),
            ("tests.budgets.userfuncs:NOT_CALLABLE", "is a int, not a function"),
            ("tests.budgets.userfuncs:", "not a 'module:function' path"),
        ],
    )
    def test_bad_import_path_is_a_budget_error_when_resolved(self, path: str, match: str) -> None:
        with pytest.raises(BudgetError, match=match):
            get_cost(path).resolve()

    def test_the_module_is_imported_on_resolve_not_when_built(self, dense, example_input, monkeypatch) -> None:
        monkeypatch.delitem(sys.modules, "tests.budgets.lazy_userfuncs", raising=False)
        cost = get_cost("tests.budgets.lazy_userfuncs:params_plus_one")
        assert "tests.budgets.lazy_userfuncs" not in sys.modules
        assert cost.resolve() is cost and "tests.budgets.lazy_userfuncs" in sys.modules
        assert cost(dense, example_input) == 1 + sum(p.numel() for p in dense.parameters())

    def test_a_pickled_cost_imports_its_function_again(self, dense, example_input) -> None:
        cost = get_cost("tests.budgets.userfuncs:scaled_params", scale=2.0).resolve()
        state = pickle.loads(pickle.dumps(cost)).__dict__
        assert state["_fn"] is None and state["path"] == cost.path  # a worker imports it itself
        assert pickle.loads(pickle.dumps(cost))(dense, example_input) == cost(dense, example_input)

    def test_options_it_does_not_take_fail_when_resolved(self) -> None:
        with pytest.raises(BudgetError, match="scaled_params.*cannot be called as"):
            get_cost("tests.budgets.userfuncs:scaled_params", scael=0.5).resolve()
        with pytest.raises(BudgetError, match="bias_count.*cannot be called as"):
            get_cost("tests.budgets.userfuncs:bias_count", scale=0.5).resolve()

    def test_a_module_in_the_working_directory_is_found(self, tmp_path, monkeypatch, dense, example_input) -> None:
        (tmp_path / "cwd_cost_module.py").write_text("def one(model, example_input):\n    return 1\n")
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
        assert get_cost("cwd_cost_module:one")(dense, example_input) == 1.0

    def test_source_path_is_what_a_cluster_worker_needs(self, tmp_path, monkeypatch) -> None:
        (tmp_path / "solo_cost.py").write_text("def one(model, example_input):\n    return 1\n")
        (tmp_path / "costpkg" / "sub").mkdir(parents=True)
        (tmp_path / "costpkg" / "__init__.py").write_text("")
        (tmp_path / "costpkg" / "sub" / "meters.py").write_text("")
        monkeypatch.syspath_prepend(str(tmp_path))
        assert costs_module.source_path("solo_cost:one") == tmp_path / "solo_cost.py"
        assert costs_module.source_path("costpkg.sub.meters:one") == tmp_path / "costpkg"  # the top package
        repo_tests = Path(__file__).resolve().parents[1]
        assert costs_module.source_path("tests.budgets.userfuncs:bias_count").resolve() == repo_tests
        for shipped_anyway in (
            "math:fsum",
            "prunetune.budgets.costs:first_item",
            "torch.nn:Module",
            "nowhere_at_all:fn",
        ):
            assert costs_module.source_path(shipped_anyway) is None, shipped_anyway

    @pytest.mark.parametrize(
        ("name", "match"),
        [
            ("broken_meter", "broken_meter raised RuntimeError: power meter offline"),
            ("returns_text", "returns_text returned 'fast' \\(str\\); it must return a real"),
            ("returns_nan", "returns_nan returned nan; it must be finite"),
        ],
    )
    def test_bad_result_is_a_budget_error(self, name, match, dense, example_input) -> None:
        cost = get_cost(f"tests.budgets.userfuncs:{name}")
        with pytest.raises(BudgetError, match=match):
            cost(dense, example_input)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
class TestOnCuda:
    def test_latency_on_cuda_leaves_the_model_on_cpu(self, dense, example_input) -> None:
        median, iqr = Latency(device="cuda", warmup=1, repeats=5).measure(dense, example_input)
        assert median > 0 and iqr >= 0
        assert all(p.device.type == "cpu" for p in dense.parameters())

    def test_peak_memory_on_cuda_counts_weights_and_shrinks_when_pruned(self, dense, pruned, example_input) -> None:
        cost = PeakMemory(device="cuda", batch_size=8)
        weights = sum(p.numel() * p.element_size() for p in dense.parameters())
        dense_peak = cost(dense, example_input)
        assert dense_peak >= weights
        assert cost(pruned, example_input) < dense_peak
