"""Searchers by name: ``get_searcher("random")``, ``"exhaustive"``, ``"rl"``, and the baselines
``"uniform"`` and ``"sensitivity"``, or a user's class by ``"module:Class"``; importing this
package registers them. Importing it loads neither torch nor Ray (the RL searcher loads RLlib
when its policy is first used); ``prunetune.search.run.tune_searcher`` hands a searcher to Tune."""

from prunetune.search.searchers._random import RandomOptions, RandomSearcher  # registers "random"
from prunetune.search.searchers.base import (
    SEARCHERS,
    ProfileSearcher,
    SearcherOptions,
    get_searcher,
    load_searcher,
    register_searcher,
    searcher_names,
)
from prunetune.search.searchers.confirm import ConfirmingSearcher
from prunetune.search.searchers.exhaustive import ExhaustiveOptions, ExhaustiveSearcher  # registers "exhaustive"
from prunetune.search.searchers.rl import RLSearcher, RLSettings  # registers "rl"
from prunetune.search.searchers.sensitivity import SensitivityOptions, SensitivitySearcher  # registers "sensitivity"
from prunetune.search.searchers.uniform import LevelOptions, UniformSearcher  # registers "uniform"

__all__ = [
    "SEARCHERS",
    "ConfirmingSearcher",
    "LevelOptions",
    "SensitivityOptions",
    "SensitivitySearcher",
    "UniformSearcher",
    "ExhaustiveOptions",
    "ExhaustiveSearcher",
    "ProfileSearcher",
    "RLSearcher",
    "RLSettings",
    "RandomOptions",
    "RandomSearcher",
    "SearcherOptions",
    "get_searcher",
    "load_searcher",
    "register_searcher",
    "searcher_names",
]
