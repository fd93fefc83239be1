"""Searchers over a one-parameter family of profiles whose cost grows with the parameter.

``uniform`` (one ratio for every group) and ``sensitivity`` (ratios allocated by measured
sensitivity to a cost target) both map a knob ``t`` to a profile. For each budget level the
knob is placed as high as the budgets allow:

1. **On the exact cost model.** Bisection on ``t`` finds the largest knob whose profile meets
   every analytic limit (``space.limits``) and the level, so the profile uses the budget as fully
   as the channel rule allows. No trial is spent on it.
2. **Over trials**, for budgets only a trial measures (latency, memory, a user's function). The
   first trial runs the analytic profile; if its result breaks a budget (a ``meets/<key>`` is
   0), the knob is bisected between the smallest knob and the last one tried, one trial per
   step, for ``probes`` steps; the level's answer is its largest knob that met every budget.

Each level's search is sequential (a step waits for the trial before it), levels run side by
side. :class:`KnobLevel` holds one level's state as plain values, so save/restore is exact.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from prunetune.budgets import report as R
from prunetune.search.space import RATIO_DECIMALS, ProfileSpace

_BISECTIONS = 48  # halvings of the knob interval on the cost model: far below one channel
_TOLERANCE = 1e-9

Family = Callable[[float], dict[str, float]]


@dataclass
class KnobLevel:
    """The search for one level: the knob interval still open over trials, the best knob that
    met every budget, the trial in flight, and how many trials it has run."""

    level: float | None  # relative cost of the target cost key (None: the budgets alone)
    low: float
    high: float
    best: float | None = None
    running: str | None = None
    tried: float | None = None
    trials: int = 0
    done: bool = False


def analytic_knob(
    space: ProfileSpace, family: Family, low: float, high: float, cost: str, level: float | None
) -> float:
    """The largest knob in ``[low, high]`` whose profile meets the analytic limits and
    ``level`` (relative ``cost``); ``low`` when even that does not (the caller checks)."""

    def fits(knob: float) -> bool:
        profile = family(knob)
        if not space.feasible(profile):
            return False
        if level is None or space.cost_model is None:
            return True
        dense = space.cost_model.dense()[cost]
        return space.costs(profile)[cost] <= level * dense * (1 + _TOLERANCE)

    if fits(high):
        return high
    lo, hi = low, high
    for _ in range(_BISECTIONS):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    rounded = round(lo - 0.5 * 10**-RATIO_DECIMALS, RATIO_DECIMALS)  # round down
    return rounded if rounded >= low and fits(rounded) else lo


class KnobSearch:
    """The levels of a one-knob search and the rule of the bisection over trials."""

    def __init__(
        self,
        space: ProfileSpace,
        family: Family,
        levels: list[float | None],
        cost: str,
        low: float,
        high: float,
        probes: int,
    ):
        self.space, self.family, self.cost, self.probes = space, family, cost, probes
        self.low = low
        self.levels = [KnobLevel(level, low, analytic_knob(space, family, low, high, cost, level)) for level in levels]

    def propose(self, trial_id: str) -> tuple[float, KnobLevel] | None:
        """The knob of the next trial and its level; None when every open level waits."""
        for state in self.levels:
            if state.done or state.running is not None:
                continue
            knob = state.high if state.tried is None else (state.low + state.high) / 2
            knob = round(knob, RATIO_DECIMALS) if state.tried is not None else knob
            state.running, state.tried = trial_id, knob
            state.trials += 1
            return knob, state
        return None

    @property
    def finished(self) -> bool:
        return all(state.done for state in self.levels)

    def observe(self, trial_id: str, result: Mapping[str, Any] | None) -> None:
        """Narrow the level whose trial ``trial_id`` was: a result meeting every budget raises
        the lower end, one breaking a budget lowers the upper end; an errored trial ends the
        level's bisection at what it has."""
        for state in self.levels:
            if state.running != trial_id:
                continue
            state.running = None
            if result is None:
                state.done = True
                return
            meets = all(R.family(result, R.MEETS).values())
            if meets:
                state.best = state.tried if state.best is None else max(state.best, state.tried)
                state.low = state.tried
                state.done = state.trials == 1  # the analytic profile met the measured budgets too
            else:
                state.high = state.tried
            if state.trials > self.probes or state.high - state.low <= 10**-RATIO_DECIMALS:
                state.done = True
            return

    def state(self) -> list[dict[str, Any]]:
        return [asdict(state) for state in self.levels]

    def load(self, levels: list[dict[str, Any]]) -> None:
        self.levels = [KnobLevel(**state) for state in levels]

    def answers(self) -> dict[float | None, dict[str, float] | None]:
        """Each level's chosen profile (None: no knob met every budget)."""
        return {s.level: (self.family(s.best) if s.best is not None else None) for s in self.levels}
