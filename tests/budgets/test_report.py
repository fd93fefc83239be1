"""The trial-report schema: what a trial writes is what every room reads back."""

from __future__ import annotations

import math

import pytest

from prunetune.budgets import report as R
from prunetune.budgets.report import TrialReport


def a_report(**extra) -> dict:
    costs = R.budget_metrics(
        {"macs": 40.0, "latency": 3.0},
        {"macs": 100.0, "latency": 4.0},
        meets={"macs": True, "latency_cpu": False},
        limits={"macs": 50.0, "latency_cpu": 2.5},
    )
    return {R.ACCURACY: 0.9, R.LOSS: 0.3, R.FINETUNE_STEPS: 7, R.DONE: True, **costs, **extra}


def test_costs_are_written_absolute_relative_with_limits_and_feasibility():
    metrics = a_report()
    assert metrics["cost/macs"] == 40.0 and metrics["rel/macs"] == pytest.approx(0.4)
    assert metrics["meets/latency_cpu"] == 0.0 and metrics["limit/macs"] == 50.0
    assert metrics["feasible"] == 0.0  # one budget missed


def test_a_report_reads_back_what_was_written():
    report = TrialReport.read(a_report())
    assert (report.accuracy, report.loss, report.finetune_steps, report.done) == (0.9, 0.3, 7, True)
    assert report.costs == {"macs": 40.0, "latency": 3.0}
    assert report.relative == {"macs": pytest.approx(0.4), "latency": pytest.approx(0.75)}
    assert report.meets == {"macs": True, "latency_cpu": False} and not report.feasible
    assert report.test_accuracy is None and report.confirms is None and report.reference is None


def test_confirmation_fields_and_a_dense_cost_of_zero():
    metrics = R.budget_metrics({"energy": 2.0}, {"energy": 0.0}, meets={}, limits={})
    report = TrialReport.read(
        {R.ACCURACY: 0.5, **metrics, R.TEST_ACCURACY: 0.48, R.CONFIRMS: "t1", R.REFERENCE: "uniform"}
    )
    assert math.isnan(report.relative["energy"])  # no share of a dense cost of zero
    assert report.feasible  # no budgets: nothing missed
    assert (report.test_accuracy, report.confirms, report.reference) == (0.48, "t1", "uniform")


def test_missed_by_weighs_each_budget_by_its_limit():
    missed = TrialReport.read(a_report()).missed_by()
    assert missed["macs"] == pytest.approx(40 / 50 - 1)  # met, with room to spare
    assert missed["latency_cpu"] == 1.0  # missed, and its cost is keyed otherwise: an indicator


def test_a_finished_trial_is_one_that_measured_accuracy_and_budgets():
    assert R.is_finished(a_report())
    assert not R.is_finished({R.ACCURACY: 0.9})  # no budget check yet
    assert not R.is_finished(None) and not R.is_finished({})


def test_a_measured_cost_reports_its_interval_and_is_missed_by_its_upper_end():
    from prunetune.budgets.timing import Measurement

    measured = {"macs": Measurement.exact(10.0), "latency": Measurement(4.0, 3.5, 5.5, repeats=20, node="n1")}
    metrics = R.interval_metrics(measured)
    assert metrics == {
        R.LOW + "latency": 3.5,
        R.HIGH + "latency": 5.5,
        R.REPEATS + "latency": 20.0,
        R.CACHED + "latency": 0.0,
        R.MEASURED_ON + "latency": "n1",
    }
    costs = {"latency": 4.0}
    report = R.TrialReport.read(
        {R.ACCURACY: 0.5, **R.budget_metrics(costs, {"latency": 8.0}, {"latency": False}, {"latency": 5.0}), **metrics}
    )
    assert report.high == {"latency": 5.5} and report.missed_by()["latency"] == pytest.approx(0.1)
