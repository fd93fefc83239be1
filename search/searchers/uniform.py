"""The uniform baseline: one keep ratio for every group, as high as the budget allows.

What a user does without a search tool, and the baseline every pruning paper compares
against. The ratio is found by bisection on the exact cost model, so the profile uses the
budget as fully as the channel rule allows (rounding makes some ratios keep the same channels);
for budgets only a trial measures it is bisected over trials (see ``_one_knob``). A group whose
range or levels cannot take the ratio gets the nearest ratio it allows below it (its lowest
when none is below).

Options (``searcher.options``):

- ``levels``: relative costs of ``cost`` (e.g. ``[0.3, 0.5, 0.7]``): one profile per level, each
  also meeting every budget. Default: one profile for the budgets alone.
- ``cost``: the cost key the levels are relative to, and the one ``sensitivity``'s greedy
  allocation saves. Default: the first budget's cost the cost model computes (``macs`` or
  ``params``), else ``macs``.
- ``probes`` (default 6): most trials per level spent bisecting on measured budgets.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from prunetune.budgets import report as R
from prunetune.search.searchers._one_knob import KnobSearch
from prunetune.search.searchers.base import ProfileSearcher, SearcherOptions, register_searcher
from prunetune.search.space import GroupSpace, ProfileSpace


class LevelOptions(SearcherOptions):
    """Options shared by the one-knob searchers (``uniform``, ``sensitivity``)."""

    levels: tuple[float, ...] | None = None
    cost: str | None = None  # None: the space's own (``budget_cost``)
    probes: int = Field(6, ge=0, strict=True)

    @field_validator("levels")
    @classmethod
    def _relative(cls, levels: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if levels is not None and (not levels or any(not 0 < level <= 1 for level in levels)):
            raise ValueError("levels must list relative costs in (0, 1], e.g. [0.3, 0.5]")
        return tuple(sorted(set(levels))) if levels else levels


def budget_cost(space: ProfileSpace) -> str:
    """The cost a one-knob searcher works in when its options name none: the first analytic
    budget's (``macs`` or ``params``, in the config's order), ``macs`` without one. Saving MACs
    under a parameter budget spends the cuts where they save little of what the budget counts."""
    return next(iter(space.limits), "macs")


def ratio_in(group: GroupSpace, ratio: float) -> float:
    """The ratio ``group`` takes for a uniform ``ratio``: clipped into its range, or its
    largest level at or below ``ratio`` (its smallest when none is)."""
    if group.levels is None:
        return min(group.high, max(group.floor, ratio))
    below = [level for level in group.choices() if level <= ratio + 1e-12]
    return max(below) if below else min(group.choices())


class LevelSearcher(ProfileSearcher):
    """Base of the one-knob searchers: one profile per level, bisected over trials where a
    budget only trials measure is broken. Subclasses give :meth:`family` and its knob range."""

    Options = LevelOptions
    unique_proposals = False
    seeded = False

    def __init__(
        self, space: ProfileSpace, *, seed: int = 0, metric: str = R.ACCURACY, mode: str = "max", **options: Any
    ):
        super().__init__(space, seed=seed, metric=metric, mode=mode, options=options)
        self.cost: str = self.options.cost or budget_cost(space)
        self._knobs: KnobSearch | None = None

    def family(self, knob: float) -> dict[str, float]:
        raise NotImplementedError

    def knob_range(self) -> tuple[float, float]:
        raise NotImplementedError

    @property
    def knobs(self) -> KnobSearch:
        """The level searches, built when first needed (a subclass may first need trials)."""
        if self._knobs is None:
            low, high = self.knob_range()
            levels = list(self.options.levels) if self.options.levels else [None]
            self._knobs = KnobSearch(self.space, self.family, levels, self.cost, low, high, self.options.probes)
        return self._knobs

    def propose_level(self, trial_id: str) -> dict[str, Any] | None | str:
        if self.knobs.finished:
            return self.FINISHED
        step = self.knobs.propose(trial_id)
        if step is None:
            return None
        knob, state = step
        config: dict[str, Any] = {"profile": self.family(knob)}
        if state.level is not None:
            config[R.LEVEL] = state.level  # the budget level the trial aims at, as a taper point's
        return config

    def observe_level(self, trial_id: str, result: dict | None) -> None:
        self.knobs.observe(trial_id, result)

    def extra_state(self) -> dict[str, Any]:
        return {"knobs": self._knobs.state() if self._knobs is not None else None}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self._knobs = None
        if state.get("knobs") is not None:
            self.knobs.load(state["knobs"])


@register_searcher("uniform")
class UniformSearcher(LevelSearcher):
    """Every group at one keep ratio, the highest each budget level allows."""

    def family(self, knob: float) -> dict[str, float]:
        return {group.name: ratio_in(group, knob) for group in self.space.groups}

    def knob_range(self) -> tuple[float, float]:
        return min(g.smallest for g in self.space.groups), max(
            g.high if g.levels is None else max(g.choices()) for g in self.space.groups
        )

    def propose(self, trial_id: str) -> dict[str, Any] | None | str:
        return self.propose_level(trial_id)

    def observe(self, trial_id: str, config: dict[str, Any], result: dict | None, error: bool) -> None:
        self.observe_level(trial_id, None if error else result)
