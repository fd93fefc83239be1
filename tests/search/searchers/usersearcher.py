"""A user's searcher registered nowhere, as a config names it: ``searcher:
{name: "tests.search.searchers.usersearcher:LocalSearcher", options: {explore: 0.5}}``.

It is what docs/searchers.md shows a user writing: a local search that changes one group of
the best profile so far (or draws a fresh one), keeping to the analytic budgets. The other
attributes are the refusals' cases: not a class, a class that is no searcher, and a searcher
that proposes nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from prunetune.search.searchers import ProfileSearcher, SearcherOptions


class LocalOptions(SearcherOptions):
    explore: float = Field(0.25, ge=0, le=1)  # chance of a fresh random profile instead of a neighbour
    max_attempts: int = Field(1000, ge=1, strict=True)


class LocalSearcher(ProfileSearcher):
    """Neighbours of the best profile so far: one group redrawn, infeasible ones skipped."""

    Options = LocalOptions

    def __init__(self, space, *, seed: int = 0, **options: Any):
        super().__init__(space, seed=seed, options=options)
        self.rng = np.random.default_rng(seed)
        self.best: tuple[float, dict[str, float]] | None = None  # (score, profile)

    def propose(self, trial_id: str) -> dict[str, Any]:
        for _ in range(self.options.max_attempts):
            profile = self._candidate()
            if self.space.feasible(profile):
                return {"profile": profile}
        raise RuntimeError(f"no feasible profile in {self.options.max_attempts} draws")

    def _candidate(self) -> dict[str, float]:
        if self.best is None or self.rng.random() < self.options.explore:
            return self.space.sample(self.rng)
        group = self.space.groups[self.rng.integers(len(self.space))]
        return {**self.best[1], group.name: group.sample(self.rng)}

    def observe(self, trial_id: str, config: dict[str, Any], result: dict | None, error: bool) -> None:
        if error or not result or self.metric not in result:
            return
        score = result[self.metric] if self.mode == "max" else -result[self.metric]
        if self.best is None or score > self.best[0]:
            self.best = (score, config["profile"])

    def extra_state(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "best": self.best}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = state["rng"]
        self.best = state["best"]


def not_a_class() -> None:
    """A function where a searcher class is expected."""


class NotASearcher:
    """A class with a searcher's method names that does not extend ProfileSearcher."""

    def propose(self, trial_id: str) -> dict[str, Any]:
        return {"profile": {}}


class ProposesNothing(ProfileSearcher):
    """A ProfileSearcher subclass that forgot to implement propose."""
