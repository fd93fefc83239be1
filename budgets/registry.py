"""One registry type for every extension point: searchers, costs, models, data sets, pruning
criteria, export formats and search methods.

A :class:`Registry` maps names to objects (classes, factories, loaders). ``register(name)`` is a
decorator; ``get(name)`` raises the registry's project error naming the valid choices (and the
closest ones, for a typo); ``names(pattern)`` lists them, optionally filtered by an fnmatch
pattern. One duplicate rule everywhere: a name is registered once; registering it again is a
:class:`DuplicateName` error, so two plug-ins cannot silently replace each other.

It lives in ``budgets`` because that package imports nothing of ours, so every package can use
it; it imports nothing heavy.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from prunetune.budgets.errors import ConfigError, PrunetuneError

T = TypeVar("T")


class DuplicateName(ConfigError, ValueError):
    """A name registered twice: a plug-in's mistake, reported like a user's (one line)."""


class Registry(Generic[T]):
    """Objects by name for one kind of extension (``kind`` names it in messages).

    ``error`` is the project error an unknown name raises; ``hint`` is appended to that
    message (e.g. how else a value may be given).
    """

    def __init__(self, kind: str, *, error: type[PrunetuneError] = ConfigError, hint: str = ""):
        self.kind = kind
        self.error = error
        self.hint = hint
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register the decorated object as ``name`` and return it unchanged."""

        def decorate(obj: T) -> T:
            self.add(name, obj)
            return obj

        return decorate

    def add(self, name: str, obj: T) -> None:
        """Register ``obj`` as ``name``; a name already taken is a :class:`DuplicateName`."""
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{self.kind} name {name!r} is invalid: give a non-empty string")
        if name in self._items:
            raise DuplicateName(f"{self.kind} {name!r} is already registered ({self._items[name]!r}); pick another name")
        self._items[name] = obj

    def get(self, name: str) -> T:
        """The object registered as ``name``; an unknown name raises ``self.error`` listing the
        valid names (closest first when there is a close one)."""
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise self.error(self.unknown(name)) from None

    def unknown(self, name: object) -> str:
        """The message for an unknown ``name``: what is valid, closest matches first."""
        close = difflib.get_close_matches(str(name), self.names(), n=3)
        guess = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
        valid = ", ".join(self.names()) or "none registered"
        return f"unknown {self.kind} {name!r}{guess}; choose one of: {valid}{self.hint}"

    def names(self, pattern: str | None = None) -> list[str]:
        """The registered names, sorted; only those matching ``pattern`` (fnmatch) if given."""
        names = sorted(self._items)
        return fnmatch.filter(names, pattern) if pattern is not None else names

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
