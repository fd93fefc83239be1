"""The pruning "environment" the RL searcher's policy acts in: observations, the mapping from a
raw policy action to a keep ratio, and AMC-style clipping to analytic budgets.

Plain numpy over a :class:`~prunetune.search.space.ProfileSpace`; no RLlib, no torch. An episode
walks the groups in the space's order (one step per group, as in the constrained-RL paper,
arXiv:2110.08558), or decides every group at once (one-step mode); both go through
:meth:`PruningEnv.decide`, so both are feasible by construction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from prunetune.search.space import RATIO_DECIMALS, GroupSpace, ProfileSpace

GROUP_FEATURES = 8
"""Per-step observation: index, out channels, in channels, MACs share, mean of previous ratios,
the group's floor, its feasibility cap, the budget target (all roughly in [0, 1])."""

ONE_STEP_FEATURES = 2
"""One-step observation: the budget target and a constant 1 (the policy is a learned mean)."""


def _round_down(value: float) -> float:
    scale = 10**RATIO_DECIMALS
    return math.floor(value * scale + 1e-9) / scale


class PruningEnv:
    """How raw actions become a profile, and what the policy sees before each decision.

    A raw action ``a`` is clipped to ``[-1, 1]`` and mapped linearly onto the group's range
    ``[lowest, highest]`` (its levels' span for a discrete group, then snapped to the nearest
    level). With analytic budgets (``space.limits``), the ratio is then capped AMC-style to the
    largest value that still lets every budget be met with each later group at its lowest
    ratio; costs are monotone in every group's channels, so the cap is found by bisection over
    the group's channel counts (or levels), and every finished profile is feasible.
    """

    def __init__(self, space: ProfileSpace, *, target: float | None = None):
        self.space = space
        self.groups: tuple[GroupSpace, ...] = space.groups
        self.max_channels = max(g.channels for g in self.groups)
        self.limits: Mapping[str, float] = dict(getattr(space, "limits", None) or {})
        self.dense = space.costs({g.name: 1.0 for g in self.groups}) if self.limits or _has_costs(space) else {}
        self.target = target if target is not None else self._budget_target()
        self._candidates = [self._grid(g) for g in self.groups]
        self.shares = self._macs_shares()
        self._offsets = [0.0] * len(self.groups)  # raw-action offsets of a prior profile (none: 0)
        self._last_cap: tuple = (None, None)  # (step, decided items) -> cap(), for the one asked last

    # -- what the policy sees ------------------------------------------------------------
    def observation(self, step: int, decided: Mapping[str, float]) -> np.ndarray:
        """Features of group ``step`` given the ratios ``decided`` so far (``step == len``:
        the terminal observation, group features zero)."""
        n = len(self.groups)
        if step >= n:
            return np.array([1.0, 0, 0, 0, _mean(decided), 0, 0, self.target], dtype=np.float32)
        group = self.groups[step]
        previous = self.groups[step - 1] if step else None
        kept_in = self.space.kept(self._full(decided))[previous.name] if previous else 0
        return np.array(
            [
                step / max(n - 1, 1),
                group.channels / self.max_channels,
                kept_in / self.max_channels,
                self.shares[step],
                _mean(decided),
                self.lowest(step),
                self.cap(step, decided),
                self.target,
            ],
            dtype=np.float32,
        )

    def one_step_observation(self) -> np.ndarray:
        return np.array([self.target, 1.0], dtype=np.float32)

    # -- raw action -> ratio -------------------------------------------------------------
    def set_prior(self, prior: Mapping[str, float]) -> None:
        """Centre every group's action on ``prior``'s ratio: a raw action of 0 then maps to it
        (before the budget cap), the policy's raw output is an offset from it."""
        for step, group in enumerate(self.groups):
            low, high = self._candidates[step][0], self._candidates[step][-1]
            ratio = min(max(float(prior.get(group.name, (low + high) / 2)), low), high)
            self._offsets[step] = 2.0 * (ratio - low) / (high - low) - 1.0 if high > low else 0.0

    def decide(self, step: int, raw: float, decided: Mapping[str, float]) -> float:
        """The keep ratio of group ``step`` for raw action ``raw`` (offset by the prior, if any):
        mapped, snapped, capped."""
        group, options = self.groups[step], self._candidates[step]
        low, high = options[0], options[-1]
        raw = raw + self._offsets[step]
        ratio = low + (min(max(raw, -1.0), 1.0) + 1.0) / 2.0 * (high - low)
        if group.levels is not None:
            ratio = min(options, key=lambda level: (abs(level - ratio), level))
        else:
            ratio = min(max(round(ratio, RATIO_DECIMALS), low), high)
        return min(ratio, self.cap(step, decided))

    def lowest(self, step: int) -> float:
        return self._candidates[step][0]

    def cap(self, step: int, decided: Mapping[str, float]) -> float:
        """The largest allowed ratio of group ``step`` that keeps the profile completable
        within every analytic budget (the group's highest ratio without budgets). The last
        answer is remembered: a rollout asks twice per step (observation, then decision)."""
        options = self._candidates[step]
        if not self.limits:
            return options[-1]
        key = (step, tuple(decided.items()))
        if self._last_cap[0] != key:
            self._last_cap = (key, self._cap(step, decided))
        return self._last_cap[1]

    def _cap(self, step: int, decided: Mapping[str, float]) -> float:
        options = self._candidates[step]
        rest = {g.name: self.lowest(i) for i, g in enumerate(self.groups) if i > step}
        name = self.groups[step].name

        def fits(index: int) -> bool:
            return self.space.feasible({**self._full(decided), **rest, name: options[index]})

        if fits(len(options) - 1):
            return options[-1]
        low, high = 0, len(options) - 1  # invariant: options[high] does not fit
        if not fits(0):
            return options[0]  # even the floor breaks a budget: prepare() rejects such budgets
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if fits(middle) else (low, middle)
        return options[low]

    def _full(self, decided: Mapping[str, float]) -> dict[str, float]:
        return {**{g.name: 1.0 for g in self.groups}, **decided}

    # -- set-up ----------------------------------------------------------------------------
    def _grid(self, group: GroupSpace) -> tuple[float, ...]:
        """Every distinct ratio of ``group`` in increasing order: its levels, or one ratio per
        channel count in its range (rounded down so the channel count does not change)."""
        if group.levels is not None:
            return tuple(group.choices())
        first = math.ceil(group.floor * group.channels - 1e-9)
        last = math.floor(group.high * group.channels + 1e-9)
        grid = [min(max(_round_down(k / group.channels), group.floor), group.high) for k in range(first, last + 1)]
        return tuple(sorted(set(grid)))

    def _budget_target(self) -> float:
        """The tightest analytic budget relative to the dense model (1.0 without one)."""
        relative = [limit / self.dense[key] for key, limit in self.limits.items() if self.dense.get(key)]
        return float(min(relative, default=1.0))

    def _macs_shares(self) -> list[float]:
        """Each group's share of dense MACs that pruning it to its floor removes (0 without a
        cost model)."""
        dense = self.dense.get("macs")
        if not dense:
            return [0.0] * len(self.groups)
        shares = []
        for i, group in enumerate(self.groups):
            profile = {g.name: 1.0 for g in self.groups}
            profile[group.name] = self.lowest(i)
            shares.append((dense - self.space.costs(profile)["macs"]) / dense)
        return shares


def _has_costs(space: ProfileSpace) -> bool:
    return getattr(space, "cost_model", None) is not None


def _mean(decided: Mapping[str, float]) -> float:
    return float(np.mean(list(decided.values()))) if decided else 0.0
