"""Exhaustive search: every feasible profile of a discrete space, once (the search of the
out-of-the-box profiles paper, "Out-of-the-box channel pruned networks", arXiv:2004.14584).

The space must give every group discrete levels (``space.levels`` or per-group ``levels`` in
``space.overrides``). Profiles are numbered like a mixed-radix counter: profile ``i`` takes, for
each group in the model's group order, one of its levels (ascending), the **last group
changing fastest** and the first slowest, so profile 0 has every group at its smallest level
and the last profile keeps every group at its largest. Profiles that break an analytic budget
(``space.limits``) are skipped, so no trial is spent on them.

Options (``searcher.options``):

- ``mode: full`` (default) proposes the feasible profiles in that order; ``mode: sampled``
  proposes them in a random order without replacement, reproducible from the searcher seed
  (the out-of-the-box profiles paper's "exhaustive random search").
- ``max_profiles`` (default 10000): in ``full`` mode a feasible set larger than this is a
  :class:`ConfigError`, before any trial runs; ``sampled`` mode accepts any size, and the
  search's ``trials`` bounds how many are drawn.

The feasible set is counted before the search starts (printed and kept as
:attr:`ExhaustiveSearcher.feasible_count`): exactly, by enumerating the product in vectorised
chunks, when the product has at most :data:`ENUMERATION_LIMIT` profiles; otherwise it is
estimated from random draws, and only ``sampled`` mode is allowed. When every feasible profile
has been proposed, :meth:`propose` returns ``FINISHED`` and Tune ends the search even if
``trials`` is larger; with ``trials`` smaller than the feasible set, the search ends after
``trials`` profiles (in ``full`` mode those are the first ones in the order above).

The saved state is a position (and, for sampled searches over very large products, the set of
drawn profiles and the generator), so a restored search continues exactly where it stopped and
never proposes a profile twice.
"""

from __future__ import annotations

import math
import sys
from typing import Any, Literal

import numpy as np
from pydantic import Field

from prunetune.budgets import report as R
from prunetune.budgets.analytic import channels_kept
from prunetune.budgets.errors import ConfigError
from prunetune.search.searchers.base import ProfileSearcher, SearcherOptions, register_searcher
from prunetune.search.space import ProfileSpace

ENUMERATION_LIMIT = 2_000_000
"""Largest product of levels enumerated exactly (about a second of vectorised evaluation)."""

_CHUNK = 1 << 16
_ESTIMATE_DRAWS = 20_000
_MAX_REJECTIONS = 100_000  # sampled search of a huge product: draws without a new profile


class ExhaustiveOptions(SearcherOptions):
    """``searcher.options`` of ``exhaustive``: ``mode`` full (enumeration order) or sampled
    (a seeded permutation), and the most feasible profiles a full search may have."""

    mode: Literal["full", "sampled"] = "full"
    max_profiles: int = Field(10_000, ge=1, strict=True)


@register_searcher("exhaustive")
class ExhaustiveSearcher(ProfileSearcher):
    """Proposes each feasible profile of a discrete space once; see the module docstring."""

    unique_proposals = True
    Options = ExhaustiveOptions

    def __init__(self, space: ProfileSpace, *, seed: int = 0, metric: str = R.ACCURACY, **options: Any):
        # ``mode`` among the options is the search order (full | sampled); the searcher always
        # maximises ``metric``.
        super().__init__(space, seed=seed, metric=metric, mode="max", options=options)
        search_mode = self.options.mode
        self.search_mode = search_mode
        self.max_profiles = self.options.max_profiles
        self.levels = _levels(space)
        self.radices = tuple(len(levels) for levels in self.levels)
        self.product = math.prod(self.radices)
        self.exact = self.product <= ENUMERATION_LIMIT
        self.feasible_count = int(self._feasible_indices().size) if self.exact else self._estimate()
        self._check_size()
        print(f"exhaustive search ({search_mode}): {self._describe()}", file=sys.stderr, flush=True)
        self.position = 0  # profiles proposed so far
        self.rng = np.random.default_rng(seed)  # sampled mode beyond ENUMERATION_LIMIT only
        self.drawn: set[tuple[int, ...]] = set()

    # -- the feasible set ----------------------------------------------------------------------
    def _kept_table(self) -> list[np.ndarray]:
        return [
            np.array([channels_kept(g.channels, v, self.space.round_to, self.space.min_channels) for v in levels])
            for g, levels in zip(self.space.groups, self.levels)
        ]

    def _digits(self, indices: np.ndarray) -> np.ndarray:
        """Mixed-radix digits of profile numbers, last group fastest: ``(n, groups)``."""
        digits = np.empty((len(indices), len(self.radices)), dtype=np.int64)
        rest = indices.astype(np.int64)
        for column in range(len(self.radices) - 1, -1, -1):
            rest, digits[:, column] = np.divmod(rest, self.radices[column])
        return digits

    def _feasible_digits(self, digits: np.ndarray) -> np.ndarray:
        table = self._kept_table()
        kept = np.stack([table[i][digits[:, i]] for i in range(len(table))], axis=1)
        return self.space.feasible_kept(kept)

    def _feasible_indices(self) -> np.ndarray:
        """Every feasible profile number, ascending (cached, never pickled)."""
        cached = self.__dict__.get("_indices")
        if cached is None:
            chunks = []
            for start in range(0, self.product, _CHUNK):
                block = np.arange(start, min(start + _CHUNK, self.product), dtype=np.int64)
                chunks.append(block[self._feasible_digits(self._digits(block))])
            cached = np.concatenate(chunks) if chunks else np.empty(0, dtype=np.int64)
            self._indices = cached
        return cached

    def _order(self) -> np.ndarray:
        """Profile numbers in proposal order: ascending, or a seeded permutation (sampled)."""
        cached = self.__dict__.get("_ordered")
        if cached is None:
            cached = self._feasible_indices()
            if self.search_mode == "sampled":
                cached = np.random.default_rng(self.seed).permutation(cached)
            self._ordered = cached
        return cached

    def _estimate(self) -> int:
        rng = np.random.default_rng(self.seed)
        digits = np.stack([rng.integers(r, size=_ESTIMATE_DRAWS) for r in self.radices], axis=1)
        return int(round(self._feasible_digits(digits).mean() * self.product))

    def _describe(self) -> str:
        size = f"{self.feasible_count:,}" if self.exact else f"about {self.feasible_count:,} (estimated)"
        shape = (
            " x ".join(map(str, self.radices))
            if len(self.radices) <= 8
            else (f"{len(self.radices)} groups of {min(self.radices)}-{max(self.radices)}")
        )
        return f"{size} feasible profiles of {self.product:,} ({shape} levels)"

    def _check_size(self) -> None:
        if self.search_mode == "sampled":
            return
        if not self.exact:
            raise ConfigError(
                f"exhaustive search over {self.product:,} profiles is too many to enumerate "
                f"(limit {ENUMERATION_LIMIT:,}); set searcher.options.mode: sampled or use fewer space.levels"
            )
        if self.feasible_count > self.max_profiles:
            raise ConfigError(
                f"exhaustive search: {self._describe()} exceeds max_profiles={self.max_profiles:,}; "
                "raise searcher.options.max_profiles, use fewer space.levels or a tighter budget, "
                "or set searcher.options.mode: sampled"
            )

    def _profile(self, digits: tuple[int, ...] | np.ndarray) -> dict[str, float]:
        return {g.name: float(levels[int(d)]) for g, levels, d in zip(self.space.groups, self.levels, digits)}

    # -- the searcher contract ------------------------------------------------------------------
    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        trials = spec.get("num_samples")
        if trials and self.search_mode == "full" and trials < self.feasible_count:
            print(
                f"exhaustive search: trials={trials} covers only the first {trials} of "
                f"{self.feasible_count:,} feasible profiles in enumeration order; raise trials "
                "or set searcher.options.mode: sampled",
                file=sys.stderr,
                flush=True,
            )
        return super().set_search_properties(metric, mode, config, **spec)

    def propose(self, trial_id: str) -> dict[str, Any] | str:
        if self.exact:
            order = self._order()
            if self.position >= len(order):
                return self.FINISHED
            digits = self._digits(order[self.position : self.position + 1])[0]
        else:
            digits = self._draw()
            if digits is None:
                return self.FINISHED
            self.drawn.add(digits)
        self.position += 1
        return {"profile": self._profile(digits)}

    def _draw(self) -> tuple[int, ...] | None:
        """A feasible profile not drawn before, by rejection (products beyond enumeration)."""
        for _ in range(_MAX_REJECTIONS):
            digits = tuple(int(self.rng.integers(r)) for r in self.radices)
            if digits not in self.drawn and self.space.feasible(self._profile(digits)):
                return digits
        return None

    def extra_state(self) -> dict[str, Any]:
        return {"position": self.position, "rng": self.rng.bit_generator.state, "drawn": sorted(self.drawn)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.position = state["position"]
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = state["rng"]
        self.drawn = set(map(tuple, state["drawn"]))
        self.__dict__.pop("_ordered", None)  # the seed may have changed with the state

    def __getstate__(self) -> dict[str, Any]:
        # The enumerated indices (up to 16 MB) are rebuilt on demand, not pickled with Tune's
        # experiment state.
        state = self.__dict__.copy()
        state.pop("_indices", None)
        state.pop("_ordered", None)
        return state


def _levels(space: ProfileSpace) -> list[tuple[float, ...]]:
    ranged = [g.name for g in space.groups if g.levels is None]
    if ranged:
        raise ConfigError(
            f"searcher 'exhaustive' needs discrete levels but group(s) {', '.join(ranged[:4])}"
            f"{' ...' if len(ranged) > 4 else ''} have a continuous range; set space.levels "
            "(e.g. [0.25, 0.5, 0.75, 1.0]) or per-group levels in space.overrides"
        )
    return [g.choices() for g in space.groups]
