"""Searchers by name: ``get_searcher("random")``, ``"exhaustive"``, ``"rl"``; importing this package
registers them."""

from prunetune.search.searchers import _random  # noqa: F401  (registers "random")
from prunetune.search.searchers._random import RandomSearcher
from prunetune.search.searchers.exhaustive import ExhaustiveSearcher  # registers "exhaustive"
from prunetune.search.searchers.rl import RLSearcher  # registers "rl"
from prunetune.search.searchers.base import ProfileSearcher, get_searcher, register_searcher, searcher_names

__all__ = ["ExhaustiveSearcher", "ProfileSearcher", "RLSearcher", "RandomSearcher", "get_searcher", "register_searcher", "searcher_names"]
