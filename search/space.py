"""The profile space a searcher explores: groups, their channel counts and allowed ratios.

Searchers see only this (names, channel counts, ratio ranges or levels), never a torch model,
so they run and test in milliseconds without torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from budgets.errors import ConfigError

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

    def sample(self, rng: np.random.Generator) -> float:
        if self.levels is not None:
            options = self.choices()
            return float(options[rng.integers(len(options))])
        return round(float(rng.uniform(self.floor, self.high)), RATIO_DECIMALS)


@dataclass(frozen=True)
class ProfileSpace:
    """Every prunable group's allowed ratios, in the model's group order."""

    groups: tuple[GroupSpace, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.groups)

    def __len__(self) -> int:
        return len(self.groups)

    def sample(self, rng: np.random.Generator) -> dict[str, float]:
        return {g.name: g.sample(rng) for g in self.groups}

    @classmethod
    def build(
        cls,
        channels: Mapping[str, int],
        *,
        low: float = 0.25,
        high: float = 1.0,
        levels: Sequence[float] | None = None,
        overrides: Mapping[str, Mapping[str, object]] | None = None,
    ) -> ProfileSpace:
        """A space over ``channels`` (group -> count) with per-group ``overrides``
        (``{group: {low:, high:, levels:}}``); an override for an unknown group is an error."""
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
        return cls(tuple(groups))
