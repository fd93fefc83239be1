"""The base class every prunetune searcher extends, and the searcher registry.

A :class:`ProfileSearcher` proposes profiles over a :class:`~prunetune.search.space.ProfileSpace`
with the shape of Ray Tune's ``Searcher`` contract (``suggest``, ``on_trial_complete``,
``save``/``restore``, ``set_search_properties``) but imports neither Ray nor torch, so searchers
test in milliseconds; :class:`~prunetune.search.run.tune_searcher.TuneSearcher` hands one to
Tune. Subclasses implement :meth:`propose` (the next profile, ``None`` to wait, or
``FINISHED``) and optionally :meth:`observe` (learn from a finished trial), and declare their
``searcher.options`` as a pydantic model, :attr:`ProfileSearcher.Options`. The base class keeps
the bookkeeping (which trial got which profile) and persists ``get_state()`` atomically through
``save``/``restore``, so a restored search continues warm instead of starting cold.

A searcher is named in a config by its registered name (``searcher: rl``) or, for a user's
class that is registered nowhere, by its import path (``searcher: mypkg.search:MySearcher``),
imported by :func:`get_searcher` when a search starts or resumes.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, get_args

from pydantic import BaseModel, ConfigDict, ValidationError

from prunetune.budgets import report as R
from prunetune.budgets.errors import ConfigError
from prunetune.budgets.registry import Registry, import_path
from prunetune.search.space import ProfileSpace

SEARCHERS: Registry[type[ProfileSearcher]] = Registry(
    "searcher", hint=" (config key `searcher.name`), or a user's class given as 'module:Class'"
)


def register_searcher(name: str) -> Callable[[type[ProfileSearcher]], type[ProfileSearcher]]:
    """Class decorator: make a :class:`ProfileSearcher` subclass available as ``name``."""
    if ":" in name:
        raise ConfigError(
            f"searcher name {name!r} contains ':', which is reserved for 'module:Class' paths; pick another name"
        )

    def decorate(cls: type[ProfileSearcher]) -> type[ProfileSearcher]:
        SEARCHERS.add(name, cls)
        cls.registry_name = name
        return cls

    return decorate


def searcher_names() -> list[str]:
    return SEARCHERS.names()


def get_searcher(name: str) -> type[ProfileSearcher]:
    """The searcher class registered as ``name``, or the user's class a ``module:Class`` path
    names, imported now (:func:`load_searcher`); an unknown name is a ConfigError."""
    return load_searcher(name) if ":" in name else SEARCHERS.get(name)


def load_searcher(path: str) -> type[ProfileSearcher]:
    """The :class:`ProfileSearcher` subclass at ``path`` (``module:Class``), imported now.

    Called before a search writes anything and before a resumed search restores Tune's state
    (which unpickles the searcher by its module). A module that does not import, a missing
    attribute or anything but a searcher class is a one-line ConfigError naming the path."""
    found = import_path(path, kind="searcher", form="module:Class")
    if not (isinstance(found, type) and issubclass(found, ProfileSearcher)):
        what = f"class {found.__name__}" if isinstance(found, type) else type(found).__name__
        raise ConfigError(
            f"searcher {path!r} is a {what}, not a ProfileSearcher subclass; "
            "derive it from prunetune.search.searchers.ProfileSearcher"
        )
    if found.propose is ProfileSearcher.propose:
        raise ConfigError(f"searcher {path!r} does not implement propose(trial_id); see docs/searchers.md")
    return found


class SearcherOptions(BaseModel):
    """Base of a searcher's ``searcher.options``: unknown keys are refused, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


_CONSTRAINTS = {
    "greater_than_equal": "must be >= {ge}",
    "greater_than": "must be > {gt}",
    "less_than_equal": "must be <= {le}",
    "less_than": "must be < {lt}",
    "int_type": "must be a whole number",
    "float_type": "must be a number",
}


def describe_options_error(name: str, options_cls: type[BaseModel], err: ValidationError) -> str:
    """One line for the first problem in searcher ``name``'s options: the option, the bad
    value and what is allowed."""
    error = err.errors()[0]
    key = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        accepted = ", ".join(options_cls.model_fields) or "none"
        return f"searcher {name!r} got unknown option {key!r} in searcher.options; it accepts: {accepted}"
    field = options_cls.model_fields.get(str(error["loc"][0])) if error["loc"] else None
    if error["type"] == "literal_error" and field is not None:
        choices = ", ".join(str(c) for c in get_args(field.annotation))
        return f"searcher {name!r} option {key}={error.get('input')!r} is not one of {choices}"
    template = _CONSTRAINTS.get(error["type"])
    message = template.format(**error.get("ctx", {})) if template else error["msg"].removeprefix("Value error, ")
    return f"searcher {name!r} option {key}={error.get('input')!r}: {message}"


class ProfileSearcher:
    """Base of all profile searchers: bookkeeping plus warm save/restore."""

    registry_name = "base"
    unique_proposals = False  # True: never proposes one profile twice (the contract suite checks)
    seeded = True  # False: proposals do not depend on the seed (the deterministic baselines)
    FINISHED: ClassVar[str] = "FINISHED"  # Ray Tune's Searcher.FINISHED: the search is over
    Options: ClassVar[type[SearcherOptions]] = SearcherOptions

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Until registered (register_searcher renames it), a searcher goes by its import path,
        # the name a config gives it, so errors about its options name it as the user does.
        super().__init_subclass__(**kwargs)
        if "registry_name" not in cls.__dict__:
            cls.registry_name = f"{cls.__module__}:{cls.__qualname__}"

    def __init__(
        self,
        space: ProfileSpace,
        *,
        seed: int = 0,
        metric: str | None = R.ACCURACY,
        mode: str | None = "max",
        options: Mapping[str, Any] | None = None,
        **more: Any,
    ):
        """``searcher.options`` come as keywords (``**more``), or as one mapping from a subclass
        whose own option names collide with ``mode`` or ``metric`` (``exhaustive``'s ``mode``)."""
        self.options = self.parse_options({**(options or {}), **more})
        self.metric = metric
        self.mode = mode
        self.space = space
        self.seed = seed
        self.pending: dict[str, dict[str, float]] = {}
        self.completed = 0

    @classmethod
    def parse_options(cls, options: Mapping[str, Any]) -> SearcherOptions:
        """``searcher.options`` validated by :attr:`Options`; a bad one is a one-line ConfigError
        (run before anything of a search is written)."""
        if not isinstance(options, Mapping):
            raise ConfigError(f"searcher.options must be a mapping of option names to values, got {options!r}")
        try:
            return cls.Options.model_validate(dict(options))
        except ValidationError as err:
            raise ConfigError(describe_options_error(cls.registry_name, cls.Options, err)) from None

    # -- what subclasses implement -------------------------------------------------------
    def propose(self, trial_id: str) -> dict[str, Any] | None | str:
        """The next trial's config additions (at least ``{"profile": {...}}``), ``None`` to
        wait for running trials, or :attr:`FINISHED`."""
        raise NotImplementedError

    def observe(self, trial_id: str, config: dict[str, Any], result: dict | None, error: bool) -> None:
        """Learn from a finished trial (``result`` is its last report; ``None`` on error)."""

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    # -- the Tune Searcher contract ----------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        """Tune passes the run's metric and mode (and ``num_samples`` in ``spec``); a searcher
        given its own keeps them. Returns True: the properties were taken."""
        self.metric = self.metric or metric
        self.mode = self.mode or mode
        return True

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """An intermediate report; profile searchers learn from final results only."""

    def suggest(self, trial_id: str) -> dict | None | str:
        config = self.propose(trial_id)
        if config is None or config == self.FINISHED:
            return config
        self._keep_pending(trial_id, config)
        return config

    def _keep_pending(self, trial_id: str, config: dict[str, Any]) -> None:
        """Hold ``config`` as ``trial_id``'s pending trial: :meth:`on_trial_complete` passes it to
        :meth:`observe` when Tune ends the trial, and :meth:`save` keeps it. :meth:`suggest`
        calls it for every proposal; a subclass calls it from :meth:`observe` to keep an errored
        trial pending, so that Tune's ``resume_errored`` reruns it."""
        self.pending[trial_id] = config

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
