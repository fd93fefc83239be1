"""The per-layer latency table's arithmetic: interpolation, the fitted constant, JSON."""

from __future__ import annotations

import pytest

from prunetune.budgets.latency_table import LatencyTable, TableLayer

# A conv timed at in-channels (4, 8) x out-channels (2, 6): ms = in * out / 8.
CONV = TableLayer("conv", ("a", "b"), ((4, 8), (2, 6)), (1.0, 3.0, 2.0, 6.0))
DEPTHWISE = TableLayer("dw", ("a",), ((4, 8),), (0.5, 1.0))
FIXED = TableLayer("fc", (), (), (0.25,))
TABLE = LatencyTable({"a": 8, "b": 6}, (CONV, DEPTHWISE, FIXED))


def test_grid_points_are_read_and_a_product_is_interpolated_exactly() -> None:
    assert CONV.predict({"a": 8, "b": 2}) == 2.0
    assert CONV.predict({"a": 6, "b": 4}) == pytest.approx(6 * 4 / 8)  # bilinear: exact for in * out
    assert DEPTHWISE.predict({"a": 6}) == pytest.approx(0.75)
    assert CONV.predict({"a": 2, "b": 9}) == 3.0  # held flat beyond the grid


def test_a_profile_is_the_layers_sum_plus_the_fitted_constant() -> None:
    assert TABLE.predict({}) == 6.0 + 1.0 + 0.25  # groups not named stay dense
    fitted = TABLE.fitted([{}, {"a": 4, "b": 2}, {"a": 8, "b": 2}], [8.25, 2.75, 4.0])
    assert fitted.constant == pytest.approx(1.0)  # the median gap
    assert fitted.predict({"a": 4}) == pytest.approx(TABLE.layer_sum({"a": 4}) + 1.0)


def test_a_table_survives_json() -> None:
    fitted = TABLE.fitted([{}], [9.0])
    assert LatencyTable.from_json(fitted.to_json()) == fitted


def test_counts_just_past_a_step_are_named_and_a_profile_on_one_is_found() -> None:
    from prunetune.budgets.latency_table import profile_steps, steps_past

    # A kernel tiled by 8 channels: 9..16 cost like 16, 8 like 8.
    timings = [(c, 1.0 if c <= 8 else 2.0) for c in range(6, 17)]
    steps = steps_past("g", timings, round_to=8)
    assert [s.count for s in steps] == list(range(9, 16)) and all(s.lower == 8 for s in steps)
    assert str(steps[0]) == "g: 9 channels sit just past a step; 8 run 50% faster"
    assert profile_steps({"g": 12}, steps) == [steps[3]] and profile_steps({"g": 16}, steps) == []
    # Time growing smoothly with every channel has no step to round to.
    assert steps_past("g", [(c, float(c)) for c in range(8, 17)], round_to=8) == []
