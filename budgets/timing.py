"""Timing a forward pass until its median is known well enough to check a budget against.

A :class:`Measurement` is what any cost reports: its figure and an interval around it (equal to
the figure for a counted cost). :func:`time_until_confident` is the latency protocol: warm-up
runs, then timed runs in rounds until the distribution-free confidence interval of the median
(order statistics of a Binomial(n, 1/2)) is within ``width`` of the median, or ``max_repeats``
runs were timed. A budget is checked against the interval's upper end, so a profile that only
looked fast on one lucky run does not pass.

Imports nothing heavy (no torch): the same protocol times eager PyTorch, TorchScript, ONNX
Runtime or anything else that runs as a zero-argument callable.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from prunetune.budgets.errors import BudgetError

__all__ = ["Measurement", "TimingProtocol", "median_interval", "time_until_confident"]


@dataclass(frozen=True)
class Measurement:
    """One measured cost: ``value`` (the median for a timing) and its interval ``[low, high]``.

    ``repeats`` is how many timed runs it took (0 for a counted cost), ``node`` the Ray node
    that measured it ("" where unknown or local), ``cached`` whether it came from the cache
    instead of a new measurement, ``converged`` whether the interval reached the asked width
    before the repeat cap."""

    value: float
    low: float
    high: float
    repeats: int = 0
    node: str = ""
    cached: bool = False
    converged: bool = True

    @classmethod
    def exact(cls, value: float) -> Measurement:
        """A counted cost: no spread."""
        return cls(value, value, value)

    def relative_width(self) -> float:
        return (self.high - self.low) / self.value if self.value > 0 else 0.0

    def with_(self, **changes: object) -> Measurement:
        return replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class TimingProtocol:
    """How carefully a latency is measured: ``warmup`` untimed runs, at least ``repeats`` timed
    runs, then more in rounds of ``repeats`` until the ``confidence`` interval of the median is
    at most ``width`` times the median wide, or ``max_repeats`` runs were timed."""

    warmup: int = 3
    repeats: int = 10
    max_repeats: int = 100
    width: float = 0.1
    confidence: float = 0.95

    def __post_init__(self) -> None:
        _check_count("warmup", self.warmup, minimum=0)
        _check_count("repeats", self.repeats, minimum=1)
        _check_count("max_repeats", self.max_repeats, minimum=self.repeats)
        if not (isinstance(self.width, (int, float)) and 0 < self.width <= 10):
            raise BudgetError(f"option width={self.width!r} must be a number in (0, 10] (0.1: the interval within 10%)")
        if not (isinstance(self.confidence, (int, float)) and 0.5 <= self.confidence < 1):
            raise BudgetError(f"option confidence={self.confidence!r} must be a number in [0.5, 1), e.g. 0.95")


def median_interval(times: list[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """``(median, low, high)`` of ``times``: the distribution-free interval ``[x(k), x(n-k+1)]``
    of the sorted sample with the largest ``k`` whose coverage is at least ``confidence``; with
    too few runs for any such ``k`` (fewer than 6 at 95%), the whole range."""
    ordered = sorted(times)
    n = len(ordered)
    middle = n // 2
    median = ordered[middle] if n % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    alpha = 1 - confidence
    k, tail = 0, 0.0  # tail: P(Binomial(n, 1/2) <= k - 1), the chance the median lies below x(k)
    while k < middle:
        next_tail = tail + math.comb(n, k) / 2**n
        if 2 * next_tail > alpha:
            break
        tail, k = next_tail, k + 1
    if k == 0:
        return median, ordered[0], ordered[-1]
    return median, ordered[k - 1], ordered[n - k]


def time_until_confident(
    run: Callable[[], object],
    protocol: TimingProtocol,
    *,
    synchronize: Callable[[], None] = lambda: None,
    clock: Callable[[], float] = time.perf_counter,
) -> Measurement:
    """Time ``run`` (milliseconds per call) by ``protocol``; ``synchronize`` waits for queued
    device work (CUDA) before each clock reading."""
    for _ in range(protocol.warmup):
        run()
    times: list[float] = []
    while True:
        for _ in range(min(protocol.repeats, protocol.max_repeats - len(times))):
            synchronize()
            start = clock()
            run()
            synchronize()
            times.append((clock() - start) * 1e3)
        median, low, high = median_interval(times, protocol.confidence)
        converged = median > 0 and (high - low) <= protocol.width * median
        if converged or len(times) >= protocol.max_repeats:
            return Measurement(median, low, high, repeats=len(times), converged=converged)


def _check_count(name: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BudgetError(f"option {name}={value!r} must be an integer >= {minimum}")
    return value
