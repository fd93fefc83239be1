"""The sensitivity baseline (the NetAdapt / FastNAS family): probe each group alone, then
allocate the budget where accuracy falls least.

1. **Probes.** One trial with nothing pruned (the reference), then for every group and every
   ratio of ``ratios`` (mapped into the group's range or levels) one trial that prunes only that
   group. Probes fine-tune for ``probe_steps`` (default 0: the cheap evaluation, BatchNorm
   recalibrated; see ``evaluate`` in docs/searchers.md), so they cost little.
2. **Allocation** (greedy; our choice over a knapsack, which needs additive costs that channel
   coupling breaks): each group's accuracy drop is interpolated linearly between its probes
   (and continued below the lowest, :func:`below_the_probes`), on a grid of ``step`` (default
   0.05) from its largest to its smallest ratio. Starting from the unpruned profile, repeatedly
   lower the group whose next grid step loses the least accuracy per unit of ``cost`` saved
   (exact costs, from the cost model; ``cost`` defaults to the budget's), until the profile
   meets the target. The knob of this family is the target's relative cost; the searcher then
   places it as ``uniform`` places its ratio (``_one_knob``): on the cost model, and over trials
   for budgets only trials measure.
3. **The answer**: one profile per level (``levels``), fine-tuned like any trial.

The probe table is the searcher's state (:attr:`SensitivitySearcher.probes`): saved, restored,
and readable by code that wants to warm-start another searcher from it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from prunetune.budgets import report as R
from prunetune.budgets.errors import ConfigError
from prunetune.search.searchers.base import register_searcher
from prunetune.search.searchers.uniform import LevelOptions, LevelSearcher, ratio_in
from prunetune.search.space import RATIO_DECIMALS, ProfileSpace


class SensitivityOptions(LevelOptions):
    """``searcher.options`` of ``sensitivity``."""

    ratios: tuple[float, ...] = (0.25, 0.5, 0.75)
    probe_steps: int = Field(0, ge=0, strict=True)
    step: float = Field(0.05, gt=0, lt=1)

    @field_validator("ratios")
    @classmethod
    def _ratios(cls, ratios: tuple[float, ...]) -> tuple[float, ...]:
        return keep_ratios(ratios, "ratios")


def keep_ratios(ratios: tuple[float, ...], option: str) -> tuple[float, ...]:
    """Probe ratios, sorted and once each; a ValueError naming ``option`` unless all in (0, 1)."""
    if not ratios or any(not 0 < r < 1 for r in ratios):
        raise ValueError(f"{option} must list keep ratios in (0, 1), e.g. [0.25, 0.5, 0.75]")
    return tuple(sorted(set(ratios)))


REFERENCE = "__reference__"


def below_the_probes(grid: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """A group's accuracy drop on ``grid``: linear between its probes (ratios ``xs`` ascending,
    drops ``ys``), and below the lowest probe continued at the steeper of the lowest segment's
    slope and the mean slope over the probed range. Held flat there (``np.interp``'s own
    extrapolation), every cut below the lowest probe looked free, and the greedy cut such
    groups to their floor first."""
    drops = np.interp(grid, xs, ys)
    if len(xs) < 2:
        return drops
    low, top = xs[0], xs[-1]
    slope = max((ys[0] - ys[1]) / (xs[1] - xs[0]), (ys[0] - ys[-1]) / (top - low), 0.0)
    below = grid < low
    drops[below] = ys[0] + slope * (low - grid[below])
    return drops


@register_searcher("sensitivity")
class SensitivitySearcher(LevelSearcher):
    """Per-group probes, then a greedy allocation per budget level."""

    Options = SensitivityOptions

    def __init__(
        self, space: ProfileSpace, *, seed: int = 0, metric: str = R.ACCURACY, mode: str = "max", **options: Any
    ):
        super().__init__(space, seed=seed, metric=metric, mode=mode, **options)
        if space.cost_model is None:
            raise ConfigError(
                "searcher sensitivity allocates on the exact cost model, which this model has none of; "
                "use searcher uniform or random"
            )
        self.queue: list[tuple[str, float]] = self._probe_plan()
        self.probing: dict[str, tuple[str, float]] = {}  # trial -> (group, ratio)
        self.probes: dict[str, dict[float, float]] = {}  # group -> ratio -> accuracy
        self.reference: float | None = None
        self._curves: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
        self._path: list[tuple[float, dict[str, float]]] | None = None

    def _probe_plan(self) -> list[tuple[str, float]]:
        plan = [(REFERENCE, 1.0)]
        for group in self.space.groups:
            top = ratio_in(group, 1.0)
            for ratio in sorted({ratio_in(group, r) for r in self.options.ratios}, reverse=True):
                if ratio < top:
                    plan.append((group.name, ratio))
        return plan

    def _probe_profile(self, group: str, ratio: float) -> dict[str, float]:
        profile = {g.name: ratio_in(g, 1.0) for g in self.space.groups}
        if group != REFERENCE:
            profile[group] = ratio
        return profile

    # -- the search ------------------------------------------------------------------------
    def propose(self, trial_id: str) -> dict[str, Any] | None | str:
        if self.queue:
            group, ratio = self.queue.pop(0)
            self.probing[trial_id] = (group, ratio)
            return {
                "profile": self._probe_profile(group, ratio),
                R.FINETUNE_STEPS: self.options.probe_steps,
                "probe": group,
            }
        if self.probing:
            return None  # the allocation needs every probe's result
        return self.propose_level(trial_id)

    def observe(self, trial_id: str, config: dict[str, Any], result: dict | None, error: bool) -> None:
        probe = self.probing.pop(trial_id, None)
        if probe is None:
            self.observe_level(trial_id, None if error else result)
            return
        group, ratio = probe
        accuracy = float(result[self.metric or R.ACCURACY]) if result and not error else math.nan
        if self.mode == "min":
            accuracy = -accuracy
        if group == REFERENCE:
            self.reference = accuracy
        else:
            self.probes.setdefault(group, {})[ratio] = accuracy

    # -- the allocation --------------------------------------------------------------------
    def curves(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Each group's grid of ratios (descending) and interpolated accuracy drop at them."""
        if self._curves is None:
            reference = self.reference if self.reference is not None and math.isfinite(self.reference) else None
            self._curves = {}
            for group in self.space.groups:
                measured = {r: a for r, a in self.probes.get(group.name, {}).items() if math.isfinite(a)}
                top = ratio_in(group, 1.0)
                base = reference if reference is not None else max(measured.values(), default=0.0)
                points = sorted({top: base, **measured}.items())
                xs, ys = np.array([p[0] for p in points]), np.array([base - p[1] for p in points])
                grid = self._grid(group)
                self._curves[group.name] = (grid, below_the_probes(grid, xs, ys))
        return self._curves

    def _grid(self, group) -> np.ndarray:
        if group.levels is not None:
            return np.array(sorted(group.choices(), reverse=True))
        top, bottom = ratio_in(group, 1.0), group.floor
        count = max(1, math.ceil((top - bottom) / self.options.step))
        return np.round(np.linspace(top, bottom, count + 1), RATIO_DECIMALS)

    def knob_range(self) -> tuple[float, float]:
        dense = self.space.cost_model.dense()[self.cost]
        return self.space.min_costs()[self.cost] / dense, 1.0

    def family(self, knob: float) -> dict[str, float]:
        """The greedy allocation whose ``cost`` is at most ``knob`` times the dense cost (the
        smallest profile when none is)."""
        dense = self.space.cost_model.dense()[self.cost]
        for cost, profile in self.path():
            if cost <= knob * dense * (1 + 1e-9):
                return dict(profile)
        return dict(self.path()[-1][1])

    def path(self) -> list[tuple[float, dict[str, float]]]:
        """The greedy path from the unpruned profile down to every group's smallest ratio:
        ``(cost, profile)`` at each step, costs falling. Any target stops somewhere on it, so
        it is walked once."""
        if self._path is None:
            curves = self.curves()
            position = dict.fromkeys(curves, 0)
            profile = {name: float(grid[0]) for name, (grid, _) in curves.items()}
            cost = self.space.costs(profile)[self.cost]
            self._path = [(cost, dict(profile))]
            while True:
                best, best_score, best_cost, best_index = None, math.inf, cost, 0
                for name, (grid, drops) in curves.items():
                    step = self._next_saving(profile, name, grid, position[name], cost)
                    if step is None:
                        continue
                    index, new_cost = step
                    score = max(drops[index] - drops[position[name]], 0.0) / (cost - new_cost)
                    if score < best_score or (score == best_score and new_cost < best_cost):
                        best, best_score, best_cost, best_index = name, score, new_cost, index
                if best is None:
                    break  # every group at its smallest ratio
                position[best] = best_index
                profile[best] = float(curves[best][0][best_index])
                cost = best_cost
                self._path.append((cost, dict(profile)))
        return self._path

    def _next_saving(
        self, profile: dict[str, float], name: str, grid: np.ndarray, index: int, cost: float
    ) -> tuple[int, float] | None:
        """The next grid point of group ``name`` below ``index`` that lowers the cost (the
        channel rule keeps the same channels over neighbouring ratios), and that cost."""
        for later in range(index + 1, len(grid)):
            new_cost = self.space.costs({**profile, name: float(grid[later])})[self.cost]
            if new_cost < cost:
                return later, new_cost
        return None

    # -- state -----------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        return {
            **super().extra_state(),
            "sensitivity": {
                "queue": list(self.queue),
                "probing": dict(self.probing),
                "probes": {g: dict(p) for g, p in self.probes.items()},
                "reference": self.reference,
            },
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        mine = state["sensitivity"]
        self.queue, self.probing = [tuple(q) for q in mine["queue"]], dict(mine["probing"])
        self.probes = {g: dict(p) for g, p in mine["probes"].items()}
        self.reference = mine["reference"]  # not a report key
        self._curves = self._path = None
        super().load_extra_state(state)
