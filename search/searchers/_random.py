"""Random search: every group's ratio drawn independently from its range or levels."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from prunetune.budgets import report as R
from prunetune.budgets.errors import BudgetError
from prunetune.search.searchers.base import ProfileSearcher, SearcherOptions, register_searcher


class RandomOptions(SearcherOptions):
    """``searcher.options`` of ``random``."""

    max_attempts: int = Field(1000, ge=1, strict=True)  # rejected draws in a row before giving up


@register_searcher("random")
class RandomSearcher(ProfileSearcher):
    """Independent uniform draws per group, reproducible from ``seed``.

    When the space has analytic limits (budgets on MACs or parameters), a draw that breaks
    one is rejected and redrawn before it is suggested, so no trial is spent on a profile the
    cost model already knows is infeasible. The draws are then uniform over the feasible part
    of the space. After ``max_attempts`` rejections in a row (option, default 1000) the
    budget is too tight for random draws and suggesting raises :class:`BudgetError`.

    The generator's state is part of the saved state, so a restored search draws exactly the
    profiles an uninterrupted one would have drawn next.
    """

    Options = RandomOptions

    def __init__(self, space, *, seed: int = 0, metric: str = R.ACCURACY, mode: str = "max", **options: Any):
        super().__init__(space, seed=seed, metric=metric, mode=mode, options=options)
        self.max_attempts = self.options.max_attempts
        self.rng = np.random.default_rng(seed)
        self.rejected = 0  # draws rejected by the analytic limits, over the whole search

    def propose(self, trial_id: str) -> dict[str, Any]:
        for _ in range(self.max_attempts):
            profile = self.space.sample(self.rng)
            if self.space.feasible(profile):
                return {"profile": profile}
            self.rejected += 1
        limits = ", ".join(f"{key} <= {limit:,.0f}" for key, limit in self.space.limits.items())
        raise BudgetError(
            f"random search drew {self.max_attempts} profiles in a row and none met the analytic "
            f"budgets ({limits}); loosen the budget, lower space.high, or use searcher exhaustive or rl"
        )

    def extra_state(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "rejected": self.rejected}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = state["rng"]
        self.rejected = state.get("rejected", 0)
