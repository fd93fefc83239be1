"""Names the config cannot check itself (it sits below the registries in run/): the method,
the scheduler and the searcher, each refused in one line listing the valid names before a
search writes anything, or a resumed one restores Tune's state; a method or scheduler
registered later is taken by name."""

from __future__ import annotations

import pytest

from prunetune.budgets.errors import ConfigError
from prunetune.search.config import parse_config
from prunetune.search.run.methods import METHODS, ProfileSearch, check_config
from prunetune.search.run.schedulers import SCHEDULERS
from tests.search.conftest import write_manifest


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            {"method": "tapr"},
            r"^unknown search method 'tapr' \(did you mean 'taper'\?\); "
            r"choose one of: search, taper \(config key `method`\)$",
        ),
        (
            {"scheduler": "ashaa"},
            r"^unknown scheduler 'ashaa' \(did you mean 'asha'\?\); choose one of: asha, fifo, hyperband ",
        ),
        (
            {"method": "taper", "scheduler": "median"},
            r"^unknown scheduler 'median'; choose one of: asha, fifo, hyperband ",
        ),
        (
            {"searcher": "randon"},
            r"^unknown searcher 'randon' \(did you mean 'random'\?\); choose one of: .*'module:Class'$",
        ),
    ],
)
def test_an_unknown_name_is_one_line_listing_the_valid_ones(config, expected):
    with pytest.raises(ConfigError, match=expected):
        check_config(parse_config(config))


def test_a_registered_method_and_scheduler_are_taken_by_name(monkeypatch):
    monkeypatch.setattr(METHODS, "_items", dict(METHODS._items))
    monkeypatch.setattr(SCHEDULERS, "_items", dict(SCHEDULERS._items))

    @METHODS.register("search-twice")
    class SearchTwice(ProfileSearch):
        name = "search-twice"

    SCHEDULERS.add("never-stop", lambda config: None)
    method = check_config(parse_config({"method": "search-twice", "scheduler": "never-stop"}))
    assert isinstance(method, SearchTwice)


def test_resuming_with_the_searcher_module_gone_is_one_line_before_ray_starts(tmp_path):
    from prunetune.search.run.prepare import from_manifest
    from prunetune.search.store.manifest import read_manifest
    from tests.conftest import TINY

    directory = tmp_path / "exp"
    directory.mkdir()
    config = parse_config({**TINY, "name": "exp", "storage_path": str(tmp_path), "searcher": "gone_searchers:Mine"})
    write_manifest(directory, config)
    with pytest.raises(ConfigError, match=r"^searcher 'gone_searchers:Mine': cannot import module 'gone_searchers'"):
        from_manifest(read_manifest(directory))


def test_a_missing_cost_module_is_named_before_confirm_uniform_is_judged():
    config = parse_config(
        {"budgets": [{"cost": "nosuchmod:energy", "max": 5.0}], "confirm": {"top": 1, "uniform": True}}
    )
    from prunetune.budgets.errors import PrunetuneError

    with pytest.raises(PrunetuneError, match=r"cost 'nosuchmod:energy': cannot import module 'nosuchmod'"):
        check_config(config)
