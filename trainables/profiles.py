"""Profiles: one keep ratio per prunable group, and the rule that turns a ratio into channels.

A :class:`Profile` is a value that flows from a searcher through a Tune trial into a checkpoint
and the profile library, so it is frozen and serialises to plain JSON. The channel rule
(:func:`kept_channels`) is shared by the pruner and the analytic cost model: both must agree on
exactly how many channels a ratio keeps, or budgets would be checked against the wrong model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from prunetune.budgets.analytic import channels_kept
from prunetune.budgets.errors import PrunetuneError


class ProfileError(PrunetuneError):
    """A profile does not fit the model it is applied to."""


def kept_channels(channels: int, ratio: float, *, round_to: int = 1, min_channels: int = 1) -> int:
    """Channels a group of ``channels`` keeps at keep ratio ``ratio``.

    Our rule (documented in the README): round ``ratio * channels`` to the nearest multiple of
    ``round_to`` (at least one multiple), then clamp to ``[min_channels, channels]``. A ratio
    that keeps less than half a channel before rounding is an error, not a silent single
    channel: the caller asked for an empty layer.
    """
    if not 0.0 < ratio <= 1.0 or math.isnan(ratio):
        raise ProfileError(f"keep ratio {ratio!r} is outside (0, 1]; use a value like 0.5")
    wanted = ratio * channels
    if wanted < 0.5:
        raise ProfileError(
            f"keep ratio {ratio:g} leaves no channel of {channels}; "
            f"the smallest ratio for this group is {1 / channels:.4g}"
        )
    return channels_kept(channels, ratio, round_to, min_channels)


@dataclass(frozen=True)
class Profile:
    """Keep ratios by group name. Groups not named keep every channel (ratio 1.0)."""

    ratios: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        clean = {str(k): float(v) for k, v in self.ratios.items()}
        for name, ratio in clean.items():
            if not 0.0 < ratio <= 1.0 or math.isnan(ratio):
                raise ProfileError(f"profile ratio for group {name!r} is {ratio!r}; ratios must lie in (0, 1]")
        object.__setattr__(self, "ratios", clean)

    def ratio(self, group: str) -> float:
        return self.ratios.get(group, 1.0)

    def check_groups(self, groups: Mapping[str, int] | list[str]) -> None:
        """Raise :class:`ProfileError` if the profile names a group the model lacks."""
        unknown = sorted(set(self.ratios) - set(groups))
        if unknown:
            known = ", ".join(list(groups)[:6])
            raise ProfileError(
                f"profile names unknown group(s) {', '.join(unknown[:5])}; this model's groups "
                f"are {known}{', ...' if len(groups) > 6 else ''} (see `prunetune inspect`)"
            )

    def to_json(self) -> str:
        return json.dumps(dict(self.ratios), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Profile:
        return cls(json.loads(text))

    def summary(self, width: int = 60) -> str:
        """A short human rendering, e.g. ``0.50 0.75 1.00 ...``, for tables."""
        text = " ".join(f"{v:.2f}" for v in self.ratios.values())
        return text if len(text) <= width else text[: width - 3] + "..."
