"""Random search: every group's ratio drawn independently from its range or levels."""

from __future__ import annotations

from typing import Any

import numpy as np

from search.searchers.base import ProfileSearcher, register_searcher


@register_searcher("random")
class RandomSearcher(ProfileSearcher):
    """Independent uniform draws per group, reproducible from ``seed``.

    The generator's state is part of the saved state, so a restored search draws exactly the
    profiles an uninterrupted one would have drawn next.
    """

    def __init__(self, space, *, seed: int = 0, **kwargs):
        super().__init__(space, seed=seed, **kwargs)
        self.rng = np.random.default_rng(seed)

    def propose(self, trial_id: str) -> dict[str, Any]:
        return {"profile": self.space.sample(self.rng)}

    def extra_state(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = state["rng"]
