"""The latency protocol: the median's confidence interval, repeats until it is narrow enough."""

from __future__ import annotations

import itertools

import pytest

from prunetune.budgets import BudgetError
from prunetune.budgets.timing import TimingProtocol, median_interval, time_until_confident


def test_too_few_runs_give_the_whole_range_as_interval() -> None:
    median, low, high = median_interval([3.0, 1.0, 2.0, 5.0, 4.0])
    assert (median, low, high) == (3.0, 1.0, 5.0)


def test_the_interval_of_100_runs_is_the_textbook_order_statistics() -> None:
    # For n=100 at 95%, the distribution-free interval is [x(40), x(61)] (1-based).
    median, low, high = median_interval([float(i) for i in range(1, 101)])
    assert median == 50.5 and (low, high) == (40.0, 61.0)


def _clock(durations_ms):
    """A fake perf_counter: each timed run lasts the next duration."""
    now = 0.0
    durations = itertools.cycle(durations_ms)
    calls = itertools.count()

    def clock() -> float:
        nonlocal now
        if next(calls) % 2:  # the reading after a run
            now += next(durations) / 1e3
        return now

    return clock


def test_a_steady_run_stops_after_the_first_round() -> None:
    measured = time_until_confident(lambda: None, TimingProtocol(warmup=0, repeats=10), clock=_clock([2.0]))
    assert measured.repeats == 10 and measured.converged
    assert (measured.low, measured.value, measured.high) == pytest.approx((2.0, 2.0, 2.0))


def test_a_noisy_run_repeats_up_to_the_cap_and_says_it_did_not_converge() -> None:
    protocol = TimingProtocol(warmup=0, repeats=10, max_repeats=40, width=0.05)
    measured = time_until_confident(lambda: None, protocol, clock=_clock([1.0, 3.0, 2.0, 9.0]))
    assert measured.repeats == 40 and not measured.converged
    assert measured.low <= measured.value <= measured.high


def test_a_bad_protocol_is_one_line() -> None:
    with pytest.raises(BudgetError, match="max_repeats=5 must be an integer >= 10"):
        TimingProtocol(repeats=10, max_repeats=5)
    with pytest.raises(BudgetError, match="width=0 must be a number"):
        TimingProtocol(width=0)
