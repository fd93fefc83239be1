"""One registry type for every extension point: searchers, costs, models, data sets, pruning
criteria, export formats and search methods.

A :class:`Registry` maps names to objects (classes, factories, loaders). ``register(name)`` is a
decorator; ``get(name)`` raises the registry's project error naming the valid choices (and the
closest ones, for a typo); ``names(pattern)`` lists them, optionally filtered by an fnmatch
pattern. One duplicate rule everywhere: a name is registered once; registering it again is a
:class:`DuplicateName` error, so two plug-ins cannot silently replace each other.

A user's plug-in outside any registry is named by its import path, ``module:attribute``
(``cost: mypkg.meters:energy``, ``searcher: mypkg.search:MySearcher``): :func:`import_path`
imports it when it is needed, and :func:`source_path` finds the module's files to ship to a
cluster's workers.

It lives in ``budgets`` because that package imports nothing of ours, so every package can use
it; it imports nothing heavy.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.util
import os
import sys
import sysconfig
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

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
            raise DuplicateName(
                f"{self.kind} {name!r} is already registered ({self._items[name]!r}); pick another name"
            )
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


def split_path(
    path: str, *, kind: str, form: str = "module:attribute", error: type[PrunetuneError] = ConfigError
) -> tuple[str, str]:
    """(module, attribute) of a plug-in's ``module:attribute`` path; ``error`` names ``kind``
    and the expected ``form`` (e.g. ``module:function``) when it is not one."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise error(f"{kind} {path!r} is not a {form!r} path")
    return module_name, attribute


def import_path(
    path: str, *, kind: str, form: str = "module:attribute", error: type[PrunetuneError] = ConfigError
) -> Any:
    """The object a ``module:attribute`` path names (``attribute`` may be dotted), imported now.

    The working directory is importable (:func:`with_working_directory`). A module that fails
    to import in any way, or lacks the attribute, raises ``error`` in one line naming the path."""
    module_name, attribute = split_path(path, kind=kind, form=form, error=error)
    with_working_directory()
    try:
        found = importlib.import_module(module_name)
    except Exception as err:  # a user's module may fail to import in any way
        raise error(
            f"{kind} {path!r}: cannot import module {module_name!r} ({type(err).__name__}: {err}); "
            "check the path, and run from the folder that holds the module or put it on PYTHONPATH"
        ) from err
    for part in attribute.split("."):
        found = getattr(found, part, None)
        if found is None:
            raise error(f"{kind} {path!r}: module {module_name!r} has no {attribute!r}")
    return found


def with_working_directory() -> None:
    """Let a module in the working directory import under every entry point (``python -m``
    puts it first on ``sys.path``, the ``prunetune`` script does not); last, so it shadows
    nothing installed."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)


def source_path(path: str) -> Path | None:
    """The folder (a package) or ``.py`` file holding a plug-in's top-level module, as found on
    this machine, for shipping to a cluster's workers; None when the workers have it anyway
    (prunetune, the standard library, an installed package) or it is not found."""
    top = path.partition(":")[0].partition(".")[0]
    if not top or top == "prunetune" or top in sys.stdlib_module_names:
        return None
    with_working_directory()
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or spec.origin in ("built-in", "frozen"):
        locations = list(spec.submodule_search_locations or []) if spec else []
        found = Path(locations[0]) if len(locations) == 1 else None  # a namespace package's one folder
    else:
        found = Path(spec.origin).parent if spec.submodule_search_locations else Path(spec.origin)
    if found is None or found.suffix not in ("", ".py"):
        return None  # a compiled extension module: the workers' environment must have it
    installed = {Path(sysconfig.get_paths()[key]).resolve() for key in ("purelib", "platlib")}
    return None if installed & {found.resolve(), *found.resolve().parents} else found
