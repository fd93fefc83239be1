"""``init_ray`` on a joined cluster (``--address``): what it asks of Ray. ``ray.init`` is
replaced by a recorder, so no cluster is started; the console mode decides whether workers'
log lines reach the driver, and a user's cost or searcher module travels as a ``py_modules``
runtime env."""

from __future__ import annotations

from pathlib import Path

import pytest
import ray

from prunetune.budgets import Budget
from prunetune.search.config import parse_config
from prunetune.search.run import console, resources, tuner


@pytest.fixture
def joined(monkeypatch):
    """The keyword arguments of every ``ray.init`` that ``init_ray`` makes."""
    calls: list[dict] = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(resources, "check_address", lambda address: None)
    monkeypatch.setenv(console.MODE_ENV, "live")
    return calls


@pytest.mark.parametrize(("mode", "echoed"), [("live", False), ("quiet", False), ("verbose", True)])
def test_workers_log_lines_follow_the_console_mode(joined, monkeypatch, mode, echoed):
    monkeypatch.setenv(console.MODE_ENV, mode)
    tuner.init_ray("127.0.0.1:6379", budgets=[Budget(cost="macs", max=0.5, relative=True)])
    assert joined == [{"address": "127.0.0.1:6379", "log_to_driver": echoed, "runtime_env": None}]


def test_a_user_cost_module_is_shipped_to_the_workers(joined, tmp_path, monkeypatch):
    (tmp_path / "meters").mkdir()
    (tmp_path / "meters" / "__init__.py").write_text("")
    (tmp_path / "meters" / "power.py").write_text("def watts(model, example_input):\n    return 1.0\n")
    (tmp_path / "single_meter.py").write_text("def joules(model, example_input):\n    return 1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    budgets = [
        Budget(cost="meters.power:watts", max=5),
        Budget(cost="single_meter:joules", max=5),
        Budget(cost="tests.search.costfuncs:stem_width_meter", max=100),
        Budget(cost="latency", max=5),
    ]
    tuner.init_ray("127.0.0.1:6379", budgets=budgets)
    shipped = [Path(p) for p in joined[0]["runtime_env"]["py_modules"]]
    assert sorted(shipped) == sorted([tmp_path / "meters", tmp_path / "single_meter.py", Path(__file__).parents[2]])


def test_a_user_searcher_module_is_shipped_with_the_cost_modules(joined, tmp_path, monkeypatch):
    (tmp_path / "mysearchers").mkdir()
    (tmp_path / "mysearchers" / "__init__.py").write_text("")
    (tmp_path / "mysearchers" / "local.py").write_text("class Mine:\n    pass\n")
    (tmp_path / "meter.py").write_text("def joules(model, example_input):\n    return 1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = parse_config(
        {"searcher": {"name": "mysearchers.local:Mine"}, "budgets": [{"cost": "meter:joules", "max": 5}]}
    )
    tuner.init_ray("127.0.0.1:6379", budgets=config.budgets, plugins=tuner.plugins_of(config))
    shipped = [Path(p) for p in joined[0]["runtime_env"]["py_modules"]]
    assert sorted(shipped) == sorted([tmp_path / "mysearchers", tmp_path / "meter.py"])
    assert tuner.plugins_of(parse_config({"searcher": "rl"})) == []  # a built-in searcher ships nothing


def test_a_local_ray_gets_no_runtime_env(joined, monkeypatch):
    tuner.init_ray(None, num_cpus=2, budgets=[Budget(cost="tests.search.costfuncs:stem_width_meter", max=100)])
    assert "runtime_env" not in joined[0] and joined[0]["address"] == "local"
