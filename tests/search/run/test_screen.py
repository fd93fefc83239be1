"""Screening by a latency table before any trial: the table is measured, checked against
whole-model measurements and given to the space only when it predicts them well."""

from __future__ import annotations

import pytest

from prunetune.budgets import Budget, Latency
from prunetune.search.config import parse_config
from prunetune.search.run.prepare import build_space
from prunetune.search.run.screen import screen_by_latency
from prunetune.search.setup import trial_setup
from tests.trainables.test_latency_table import CountingLatency

BUDGET = {"cost": "latency", "max": 0.6, "relative": True, "options": {"screen": True, "repeats": 2}}


def _screen(tiny_config, capsys):
    config = parse_config({**tiny_config, "budgets": [BUDGET]})
    space = screen_by_latency(config, build_space(config, 10), trial_setup(config), 10)
    return space, capsys.readouterr().err


def test_a_table_that_predicts_well_screens_the_space(tiny_config, monkeypatch, capsys):
    # A deterministic stand-in latency (conv and linear multiply-adds): the table is exact.
    monkeypatch.setattr(Latency, "measure_interval", lambda self, m, x: CountingLatency().measure_interval(m, x))
    space, err = _screen(tiny_config, capsys)
    key = Budget.parse(BUDGET).key
    assert "screening profiles by it" in err and "Spearman 1.00" in err
    assert space.latency_table is not None and space.table_key == key
    dense = space.costs({g.name: 1.0 for g in space.groups})[key]
    assert space.limits[key] == pytest.approx(0.6 * dense)
    assert not space.feasible({g.name: 1.0 for g in space.groups}) and space.feasible(space.smallest())


def test_a_table_that_predicts_badly_is_not_used(tiny_config, monkeypatch, capsys):
    noise = iter([5.0, 1.0, 9.0, 2.0, 7.0, 3.0, 8.0, 4.0, 6.0, 0.5] * 200)
    from prunetune.budgets.timing import Measurement

    monkeypatch.setattr(Latency, "measure_interval", lambda self, m, x: Measurement.exact(next(noise)))
    space, err = _screen(tiny_config, capsys)
    assert "not screened" in err and space.latency_table is None and not space.limits
