from __future__ import annotations

import pytest

from prunetune.budgets import BudgetError
from prunetune.search.config import parse_config
from prunetune.search.run.prepare import prepare


def test_latency_budget_below_the_smallest_model_is_refused_before_anything_is_written(tiny_config, tmp_path):
    tiny_config["budgets"] = [{"cost": "latency", "max": 1e-6, "options": {"repeats": 3, "warmup": 1}}]
    with pytest.raises(
        BudgetError, match=r"latency\(repeats=3, warmup=1\)<=1e-06 ms cannot be met: the smallest profile"
    ):
        prepare(parse_config(tiny_config), show_progress=False)
    assert not (tmp_path / "results" / "tiny").exists()


def test_reachable_measured_budgets_pass(tiny_config):
    tiny_config["budgets"] = [{"cost": "peak_memory", "max": 0.99, "relative": True}]
    prepared = prepare(parse_config(tiny_config), show_progress=False)
    assert prepared.dense_costs["peak_memory"] > 0


def test_unmeetable_peak_memory_is_refused(tiny_config):
    tiny_config["budgets"] = [{"cost": "peak_memory", "max": 0.001, "relative": True}]
    with pytest.raises(BudgetError, match="peak_memory<=0.1% cannot be met"):
        prepare(parse_config(tiny_config), show_progress=False)
