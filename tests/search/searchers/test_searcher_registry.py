"""A user's searcher plugs in by name like the built-in ones, options checked up front."""

from __future__ import annotations

import pytest
from pydantic import Field

from prunetune.budgets.errors import ConfigError
from prunetune.budgets.registry import DuplicateName
from prunetune.search.config import parse_config
from prunetune.search.run.methods import get_method
from prunetune.search.searchers import SEARCHERS, ProfileSearcher, SearcherOptions, get_searcher, register_searcher
from prunetune.search.space import ProfileSpace


class HalfOptions(SearcherOptions):
    ratio: float = Field(0.5, gt=0, le=1)


@pytest.fixture
def half(monkeypatch):
    monkeypatch.setattr(SEARCHERS, "_items", dict(SEARCHERS._items))

    @register_searcher("half")
    class HalfSearcher(ProfileSearcher):
        Options = HalfOptions

        def propose(self, trial_id):
            return {"profile": {g.name: self.options.ratio for g in self.space.groups}}

    return HalfSearcher


def test_a_registered_searcher_runs_from_its_name_and_options(half):
    config = parse_config({"searcher": {"name": "half", "options": {"ratio": 0.75}}})
    get_method("search").check(config)  # what prepare runs before anything is written
    searcher = get_searcher("half")(
        ProfileSpace.build({"a": 8, "b": 16}, low=0.25, high=1.0), **config.searcher.options
    )
    assert searcher.suggest("t1") == {"profile": {"a": 0.75, "b": 0.75}}


def test_bad_options_and_names_are_one_line_errors_before_any_write(half):
    with pytest.raises(ConfigError, match=r"^searcher 'half' option ratio=2: must be <= 1\.0$"):
        get_method("search").check(parse_config({"searcher": {"name": "half", "options": {"ratio": 2}}}))
    with pytest.raises(
        ConfigError, match=r"searcher 'half' got unknown option 'ratoi' in searcher.options; it accepts: ratio"
    ):
        get_method("search").check(parse_config({"searcher": {"name": "half", "options": {"ratoi": 0.5}}}))
    with pytest.raises(ConfigError, match=r"unknown searcher 'halff' \(did you mean 'half'\?\); choose one of: .*half"):
        get_method("search").check(parse_config({"searcher": {"name": "halff"}}))


def test_a_name_is_registered_once(half):
    with pytest.raises(DuplicateName, match="searcher 'half' is already registered"):
        register_searcher("half")(half)


USER = "tests.search.searchers.usersearcher"  # a user's searcher module, registered nowhere


def test_a_user_searcher_loads_from_its_path_with_its_options_checked():
    config = parse_config({"searcher": {"name": f"{USER}:LocalSearcher", "options": {"explore": 1.0}}})
    get_method("search").check(config)  # imports the class, validates its options
    searcher = get_searcher(config.searcher.name)(
        ProfileSpace.build({"a": 8, "b": 16}, levels=(0.5, 1.0)), seed=1, **config.searcher.options
    )
    assert set(searcher.suggest("t1")["profile"]) == {"a", "b"}
    with pytest.raises(ConfigError, match=rf"^searcher '{USER}:LocalSearcher' option explore=2: must be <= 1\.0$"):
        get_method("search").check(
            parse_config({"searcher": {"name": f"{USER}:LocalSearcher", "options": {"explore": 2}}})
        )


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            "no_such_module_here:Mine",
            r"^searcher 'no_such_module_here:Mine': cannot import module 'no_such_module_here' "
            r"\(ModuleNotFoundError: .*\); check the path, .* or put it on PYTHONPATH$",
        ),
        (f"{USER}:Missing", rf"^searcher '{USER}:Missing': module '{USER}' has no 'Missing'$"),
        (
            f"{USER}:NotASearcher",
            r"is a class NotASearcher, not a ProfileSearcher subclass; derive it from "
            r"prunetune\.search\.searchers\.ProfileSearcher$",
        ),
        (f"{USER}:not_a_class", r"is a function, not a ProfileSearcher subclass"),
        (f"{USER}:ProposesNothing", r"does not implement propose\(trial_id\)"),
        (":Mine", r"^searcher ':Mine' is not a 'module:Class' path$"),
    ],
)
def test_a_user_searcher_path_that_cannot_work_is_one_line(path, expected):
    with pytest.raises(ConfigError, match=expected) as err:
        get_method("search").check(parse_config({"searcher": path}))
    assert "\n" not in str(err.value)


def test_a_registered_name_may_not_look_like_a_path():
    with pytest.raises(ConfigError, match="reserved for 'module:Class' paths"):
        register_searcher("my:searcher")
