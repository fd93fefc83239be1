from __future__ import annotations

import numpy as np
import pytest

from prunetune.budgets.errors import ConfigError
from prunetune.search.space import GroupSpace, ProfileSpace


def test_samples_stay_in_range_and_keep_a_channel():
    space = ProfileSpace.build({"a": 4, "b": 64}, low=0.05, high=0.9)
    rng = np.random.default_rng(0)
    for _ in range(200):
        profile = space.sample(rng)
        assert 0.25 <= profile["a"] <= 0.9  # 1/4 is a's floor: one channel
        assert 0.05 <= profile["b"] <= 0.9


def test_levels_and_overrides():
    space = ProfileSpace.build({"a": 16, "b": 16}, levels=[0.25, 0.5, 1.0], overrides={"b": {"levels": [1.0]}})
    rng = np.random.default_rng(1)
    draws = [space.sample(rng) for _ in range(50)]
    assert {d["a"] for d in draws} == {0.25, 0.5, 1.0} and {d["b"] for d in draws} == {1.0}


def test_override_of_unknown_group_and_bad_range_are_errors():
    with pytest.raises(ConfigError, match="unknown group.*zzz"):
        ProfileSpace.build({"a": 8}, overrides={"zzz": {"low": 0.5}})
    with pytest.raises(ConfigError, match="0 < low <= high <= 1"):
        GroupSpace("a", 8, low=0.9, high=0.5)


def test_a_latency_table_screens_profiles_by_predicted_latency():
    from dataclasses import replace

    from prunetune.budgets.latency_table import LatencyTable, TableLayer

    table = LatencyTable({"a": 8}, (TableLayer("conv", ("a",), ((2, 8),), (1.0, 4.0)),))
    space = ProfileSpace.build({"a": 8}, low=0.25)
    screened = replace(space, latency_table=table, table_key="latency", limits={"latency": 2.5})
    assert screened.costs({"a": 0.5}) == {"latency": 2.0}
    assert screened.feasible({"a": 0.5}) and not screened.feasible({"a": 1.0})
    assert list(screened.feasible_kept(np.array([[4], [8]]))) == [True, False]
