"""The base class every prunetune searcher extends, and the searcher registry.

A :class:`ProfileSearcher` is a Ray Tune ``Searcher`` over a :class:`~prunetune.search.space.ProfileSpace`.
Subclasses implement :meth:`propose` (the next profile, ``None`` to wait, or ``FINISHED``) and
optionally :meth:`observe` (learn from a finished trial). The base class keeps the bookkeeping
(which trial got which profile) and persists ``get_state()`` atomically through Tune's
``save``/``restore``, so a restored search continues warm instead of starting cold.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Callable
from typing import Any

from ray.tune.search import Searcher

from prunetune.budgets.errors import ConfigError
from prunetune.search.space import ProfileSpace

_REGISTRY: dict[str, type[ProfileSearcher]] = {}


def register_searcher(name: str) -> Callable[[type[ProfileSearcher]], type[ProfileSearcher]]:
    def decorate(cls: type[ProfileSearcher]) -> type[ProfileSearcher]:
        _REGISTRY[name] = cls
        cls.registry_name = name
        return cls

    return decorate


def searcher_names() -> list[str]:
    return sorted(_REGISTRY)


def get_searcher(name: str) -> type[ProfileSearcher]:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown searcher {name!r}; choose one of {', '.join(searcher_names())}")
    return _REGISTRY[name]


def reject_options(name: str, options: dict[str, Any], accepted: tuple[str, ...]) -> None:
    """A ConfigError naming options searcher ``name`` does not take (``searcher.options``)."""
    if options:
        raise ConfigError(
            f"searcher {name!r} got unknown option(s) {', '.join(sorted(options))} in searcher.options; "
            f"it accepts: {', '.join(accepted) or 'none'}"
        )


class ProfileSearcher(Searcher):
    """Base of all profile searchers: bookkeeping plus warm save/restore."""

    registry_name = "base"
    unique_proposals = False  # True: never proposes one profile twice (the contract suite checks)

    def __init__(self, space: ProfileSpace, *, seed: int = 0, metric: str = "accuracy", mode: str = "max"):
        super().__init__(metric=metric, mode=mode)
        self.space = space
        self.seed = seed
        self.pending: dict[str, dict[str, float]] = {}
        self.completed = 0

    # -- what subclasses implement -------------------------------------------------------
    def propose(self, trial_id: str) -> dict[str, Any] | None | str:
        """The next trial's config additions (at least ``{"profile": {...}}``), ``None`` to
        wait for running trials, or ``Searcher.FINISHED``."""
        raise NotImplementedError

    def observe(self, trial_id: str, config: dict[str, Any], result: dict | None, error: bool) -> None:
        """Learn from a finished trial (``result`` is its last report; ``None`` on error)."""

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    # -- the Tune Searcher contract ----------------------------------------------------
    def suggest(self, trial_id: str) -> dict | None | str:
        config = self.propose(trial_id)
        if config is None or config == Searcher.FINISHED:
            return config
        self.pending[trial_id] = config
        return config

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        config = self.pending.pop(trial_id, None)
        if config is None:
            return
        self.completed += 1
        self.observe(trial_id, config, result, error)

    def get_state(self) -> dict[str, Any]:
        return {"pending": dict(self.pending), "completed": self.completed, "seed": self.seed, **self.extra_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        self.pending = dict(state["pending"])
        self.completed = state["completed"]
        self.seed = state["seed"]
        self.load_extra_state(state)

    def save(self, checkpoint_path: str) -> None:
        # Atomic: a crash mid-write leaves the previous state, never half a file.
        directory = os.path.dirname(os.path.abspath(checkpoint_path))
        with tempfile.NamedTemporaryFile("wb", dir=directory, delete=False) as tmp:
            pickle.dump(self.get_state(), tmp)
        os.replace(tmp.name, checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))
