"""Searchers by name: ``get_searcher("random")``, ``"exhaustive"``, ``"rl"``; importing this package
registers them. Importing it loads neither torch nor Ray (the RL searcher loads RLlib when its
policy is first used); ``prunetune.search.run.tune_searcher`` hands a searcher to Tune."""

from prunetune.search.searchers._random import RandomOptions, RandomSearcher  # registers "random"
from prunetune.search.searchers.base import SEARCHERS, ProfileSearcher, SearcherOptions, get_searcher, register_searcher, searcher_names
from prunetune.search.searchers.exhaustive import ExhaustiveOptions, ExhaustiveSearcher  # registers "exhaustive"
from prunetune.search.searchers.rl import RLSearcher, RLSettings  # registers "rl"

__all__ = [
    "SEARCHERS",
    "ExhaustiveOptions",
    "ExhaustiveSearcher",
    "ProfileSearcher",
    "RLSearcher",
    "RLSettings",
    "RandomOptions",
    "RandomSearcher",
    "SearcherOptions",
    "get_searcher",
    "register_searcher",
    "searcher_names",
]
