"""The adapter that hands a Ray-free profile searcher to Ray Tune.

:class:`~prunetune.search.searchers.ProfileSearcher` has the shape of Tune's ``Searcher``
contract but imports no Ray, so searchers test without it. :class:`TuneSearcher` is the real
``ray.tune.search.Searcher`` Tune (and its ``ConcurrencyLimiter``) talks to; every call goes
to the wrapped searcher. Tune pickles it into the experiment and ``Tuner.restore`` unpickles it
by this import path, then restores the searcher's own saved state through :meth:`restore`.
"""

from __future__ import annotations

from typing import Any

from ray.tune.search import Searcher

from prunetune.search.searchers import ProfileSearcher


class TuneSearcher(Searcher):
    """A Tune ``Searcher`` backed by ``profiles``, a :class:`ProfileSearcher`.

    The attribute is not called ``searcher``: Tune unwraps every object with a ``searcher``
    attribute when it saves, and this object is the one whose state Tune must save.
    """

    def __init__(self, profiles: ProfileSearcher):
        super().__init__(metric=profiles.metric, mode=profiles.mode)
        self.profiles = profiles

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        taken = self.profiles.set_search_properties(metric, mode, config, **spec)
        self._metric, self._mode = self.profiles.metric, self.profiles.mode
        return taken

    def suggest(self, trial_id: str) -> dict | None:
        config = self.profiles.suggest(trial_id)
        return Searcher.FINISHED if config == self.profiles.FINISHED else config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.profiles.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.profiles.on_trial_complete(trial_id, result=result, error=error)

    def save(self, checkpoint_path: str) -> None:
        self.profiles.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.profiles.restore(checkpoint_path)

    def get_state(self) -> dict:
        return self.profiles.get_state()

    def set_state(self, state: dict) -> None:
        self.profiles.set_state(state)
