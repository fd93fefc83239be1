"""The profile space a searcher explores: groups, their channel counts and allowed ratios.

Searchers see only this (names, channel counts, ratio ranges or levels, and the exact analytic
cost model with the limits of the analytic budgets), never a torch model, so they run and test
in milliseconds without torch. :meth:`ProfileSpace.feasible` screens a profile against every
analytic budget before a trial is spent on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from prunetune.budgets.analytic import AnalyticCostModel, channels_kept
from prunetune.budgets.errors import ConfigError
from prunetune.budgets.latency_table import LatencyTable

RATIO_DECIMALS = 4


@dataclass(frozen=True)
class GroupSpace:
    """Allowed keep ratios of one group: a range ``[low, high]`` or discrete ``levels``."""

    name: str
    channels: int
    low: float = 0.25
    high: float = 1.0
    levels: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.low <= self.high <= 1.0:
            raise ConfigError(
                f"group {self.name!r}: ratio range [{self.low}, {self.high}] must satisfy 0 < low <= high <= 1"
            )
        if self.levels is not None:
            if not self.levels or any(not 0.0 < v <= 1.0 for v in self.levels):
                raise ConfigError(f"group {self.name!r}: levels {list(self.levels)} must be ratios in (0, 1]")
            object.__setattr__(self, "levels", tuple(sorted(set(self.levels))))

    @property
    def floor(self) -> float:
        """The smallest ratio that still keeps one channel of this group."""
        return max(self.low, 1.0 / self.channels)

    def choices(self) -> tuple[float, ...]:
        """Discrete levels that keep at least one channel (levels below that are dropped)."""
        assert self.levels is not None
        kept = tuple(v for v in self.levels if v * self.channels >= 0.5)
        return kept or (max(self.levels),)

    @property
    def smallest(self) -> float:
        """The smallest ratio a searcher may give this group: its floor or lowest level."""
        return min(self.choices()) if self.levels is not None else self.floor

    def sample(self, rng: np.random.Generator) -> float:
        if self.levels is not None:
            options = self.choices()
            return float(options[rng.integers(len(options))])
        return round(float(rng.uniform(self.floor, self.high)), RATIO_DECIMALS)


# Budget.meets' tolerance: a profile the space calls feasible is one the trial's check passes.
_TOLERANCE = 1e-9


@dataclass(frozen=True)
class ProfileSpace:
    """Every prunable group's allowed ratios, in the model's group order.

    ``round_to`` and ``min_channels`` are the pruner's channel rule (``prune.*`` in the
    config), so :meth:`kept` gives the channels a trial will keep. ``cost_model`` (optional)
    gives exact MACs/params of any profile; ``limits`` are the absolute limits of the analytic
    budgets keyed by cost key (``"macs"``, ``"params"``), which :meth:`feasible` checks.
    ``latency_table`` (optional) predicts the latency budget ``table_key``'s cost from the
    kept channels, so a limit under that key screens profiles by predicted latency too (set
    only where the table was validated against whole-model measurements; trials still measure).
    """

    groups: tuple[GroupSpace, ...]
    round_to: int = 1
    min_channels: int = 1
    cost_model: AnalyticCostModel | None = None
    limits: Mapping[str, float] = field(default_factory=dict)
    latency_table: LatencyTable | None = None
    table_key: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.groups)

    def __len__(self) -> int:
        return len(self.groups)

    def sample(self, rng: np.random.Generator) -> dict[str, float]:
        return {g.name: g.sample(rng) for g in self.groups}

    def kept(self, ratios: Mapping[str, float]) -> dict[str, int]:
        """Channels every group keeps under ``ratios`` (groups not named keep all)."""
        return {
            g.name: channels_kept(g.channels, ratios.get(g.name, 1.0), self.round_to, self.min_channels)
            for g in self.groups
        }

    def costs(self, ratios: Mapping[str, float]) -> dict[str, float]:
        """Exact analytic costs (``macs``, ``params``) of ``ratios``, and the predicted latency
        under ``table_key`` with a latency table; empty without either."""
        kept = self.kept(ratios)
        costs = self.cost_model.evaluate(kept) if self.cost_model is not None else {}
        if self.latency_table is not None:
            costs[self.table_key] = self.latency_table.predict(kept)
        return costs

    def feasible(self, ratios: Mapping[str, float]) -> bool:
        """Whether ``ratios`` meets every analytic limit (True when there are none)."""
        if not self.limits:
            return True
        costs = self.costs(ratios)
        return all(costs[key] <= limit + _TOLERANCE * abs(limit) for key, limit in self.limits.items())

    def feasible_kept(self, kept: np.ndarray) -> np.ndarray:
        """:meth:`feasible` for many profiles given as kept channels, an int array
        ``(n, len(groups))`` in group order; a boolean array of ``n``."""
        mask = np.ones(len(kept), dtype=bool)
        if not self.limits:
            return mask
        costs = dict(self.cost_model.evaluate_batch(kept)) if self.cost_model is not None else {}
        if self.latency_table is not None:
            names = self.names
            costs[self.table_key] = np.array([self.latency_table.predict(dict(zip(names, row))) for row in kept])
        for key, limit in self.limits.items():
            mask &= costs[key] <= limit + _TOLERANCE * abs(limit)
        return mask

    def smallest(self) -> dict[str, float]:
        """The profile with every group at its smallest allowed ratio."""
        return {g.name: g.smallest for g in self.groups}

    def min_costs(self) -> dict[str, float]:
        """The smallest reachable analytic costs: every group at its smallest ratio (costs
        only grow with channels); empty without a cost model."""
        return self.costs(self.smallest())

    @classmethod
    def build(
        cls,
        channels: Mapping[str, int],
        *,
        low: float = 0.25,
        high: float = 1.0,
        levels: Sequence[float] | None = None,
        overrides: Mapping[str, Mapping[str, object]] | None = None,
        round_to: int = 1,
        min_channels: int = 1,
        cost_model: AnalyticCostModel | None = None,
        limits: Mapping[str, float] | None = None,
    ) -> ProfileSpace:
        """A space over ``channels`` (group -> count) with per-group ``overrides``
        (``{group: {low:, high:, levels:}}``); an override for an unknown group is an error.
        ``limits`` need a ``cost_model`` that evaluates their keys."""
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(channels))
        if unknown:
            raise ConfigError(
                f"space.overrides names unknown group(s) {', '.join(unknown)}; "
                f"valid groups: {', '.join(list(channels)[:8])}{' ...' if len(channels) > 8 else ''}"
            )
        groups = []
        for name, count in channels.items():
            spec = {"low": low, "high": high, "levels": tuple(levels) if levels else None}
            spec.update({k: (tuple(v) if k == "levels" and v else v) for k, v in overrides.get(name, {}).items()})
            groups.append(GroupSpace(name=name, channels=count, **spec))
        limits = dict(limits or {})
        if cost_model is not None and dict(cost_model.channels) != dict(channels):
            raise ValueError("the cost model was extracted from a model with other groups")
        if limits and cost_model is None:
            raise ConfigError(f"limits on {', '.join(limits)} need an analytic cost model")
        return cls(tuple(groups), round_to, min_channels, cost_model, limits)
