"""Searchers by name: ``get_searcher("random")``, ``"exhaustive"``, ``"rl"``; importing this package
registers them."""

from search.searchers import _random  # noqa: F401  (registers "random")
from search.searchers._random import RandomSearcher
from search.searchers.exhaustive import ExhaustiveSearcher  # registers "exhaustive"
from search.searchers.rl import RLSearcher  # registers "rl"
from search.searchers.base import ProfileSearcher, get_searcher, register_searcher, searcher_names

__all__ = ["ExhaustiveSearcher", "ProfileSearcher", "RLSearcher", "RandomSearcher", "get_searcher", "register_searcher", "searcher_names"]
