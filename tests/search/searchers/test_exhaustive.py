"""The exhaustive searcher: its documented order, the feasible set, its modes and its limits."""

from __future__ import annotations

import itertools
import pickle

import pytest

from prunetune.budgets import AnalyticCostModel, Term
from prunetune.budgets.errors import ConfigError
from prunetune.search.searchers import exhaustive
from prunetune.search.searchers.exhaustive import ExhaustiveSearcher
from prunetune.search.space import ProfileSpace

CHANNELS = {"a": 8, "b": 16, "c": 8}
LEVELS = (0.25, 0.5, 1.0)


def make_space(limit: float | None = 0.5, levels=LEVELS, channels=CHANNELS) -> ProfileSpace:
    names = list(channels)
    terms = [Term("macs", f"conv{i}", 9, (x, y)) for i, (x, y) in enumerate(zip(names, names[1:]))]
    terms += [Term("params", "fc", 10, (names[-1],))]
    model = AnalyticCostModel(channels, tuple(terms))
    limits = {"macs": limit * model.dense()["macs"]} if limit else {}
    return ProfileSpace.build(channels, levels=levels, cost_model=model, limits=limits)


def brute_force(space: ProfileSpace) -> list[dict[str, float]]:
    """The feasible profiles in the documented order: groups in order, the last fastest."""
    combos = itertools.product(*(g.choices() for g in space.groups))
    profiles = [dict(zip(space.names, combo)) for combo in combos]
    return [p for p in profiles if space.feasible(p)]


def run_out(searcher: ExhaustiveSearcher, limit: int = 1000) -> list[dict[str, float]]:
    proposals = []
    for i in range(limit):
        config = searcher.suggest(f"t{i}")
        if config == searcher.FINISHED:
            return proposals
        proposals.append(config["profile"])
        searcher.on_trial_complete(f"t{i}", {"accuracy": 0.5})
    raise AssertionError("the searcher never finished")


def test_full_mode_proposes_the_feasible_set_in_order_then_finishes(capsys):
    space = make_space()
    searcher = ExhaustiveSearcher(space)
    expected = brute_force(space)
    assert 0 < len(expected) < 27 and searcher.feasible_count == len(expected)
    assert f"{len(expected)} feasible profiles of 27 (3 x 3 x 3 levels)" in capsys.readouterr().err
    assert run_out(searcher) == expected
    assert expected[0] == {"a": 0.25, "b": 0.25, "c": 0.25} and expected[1] == {"a": 0.25, "b": 0.25, "c": 0.5}
    assert searcher.suggest("again") == searcher.FINISHED


def test_sampled_mode_is_a_seeded_permutation_of_the_feasible_set():
    space = make_space()
    first = run_out(ExhaustiveSearcher(space, seed=1, mode="sampled"))
    again = run_out(ExhaustiveSearcher(space, seed=1, mode="sampled"))
    other = run_out(ExhaustiveSearcher(space, seed=2, mode="sampled"))
    key = lambda p: tuple(p.values())  # noqa: E731
    assert first == again and first != other
    assert sorted(first, key=key) == sorted(brute_force(space), key=key)


def test_restore_after_pickling_continues_without_repeats(tmp_path):
    space = make_space(limit=None)  # all 27 profiles
    searcher = ExhaustiveSearcher(space, seed=4, mode="sampled")
    head = [searcher.suggest(f"t{i}")["profile"] for i in range(10)]
    searcher.save(str(tmp_path / "state.pkl"))
    # Tune pickles the searcher itself too: the enumeration cache stays out of it.
    clone = pickle.loads(pickle.dumps(searcher))
    assert "_indices" not in clone.__dict__ and "_ordered" not in clone.__dict__
    fresh = ExhaustiveSearcher(space, seed=4, mode="sampled")
    fresh.restore(str(tmp_path / "state.pkl"))
    tail = run_out(fresh)
    assert tail == run_out(clone)
    assert len(head) + len(tail) == 27 and len({tuple(p.values()) for p in head + tail}) == 27


def test_continuous_range_asks_for_levels():
    with pytest.raises(ConfigError, match="space.levels"):
        ExhaustiveSearcher(ProfileSpace.build(CHANNELS, low=0.25))


def test_feasible_set_above_max_profiles_needs_sampled_mode():
    space = make_space(limit=None)
    with pytest.raises(ConfigError, match=r"27 feasible profiles .* exceeds max_profiles=10.*mode: sampled"):
        ExhaustiveSearcher(space, max_profiles=10)
    assert len(run_out(ExhaustiveSearcher(space, max_profiles=10, mode="sampled"))) == 27


@pytest.mark.parametrize(
    "options,match",
    [({"mode": "random"}, "full, sampled"), ({"max_profiles": 0}, ">= 1"), ({"levels": 3}, "unknown option")],
)
def test_bad_options(options, match):
    with pytest.raises(ConfigError, match=match):
        ExhaustiveSearcher(make_space(), **options)


def test_products_beyond_enumeration_are_sampled_from_an_estimate(monkeypatch, capsys):
    monkeypatch.setattr(exhaustive, "ENUMERATION_LIMIT", 10)
    space = make_space()
    with pytest.raises(ConfigError, match="too many to enumerate.*mode: sampled"):
        ExhaustiveSearcher(space)
    searcher = ExhaustiveSearcher(space, seed=0, mode="sampled")
    assert "(estimated)" in capsys.readouterr().err
    drawn = [searcher.suggest(f"t{i}")["profile"] for i in range(len(brute_force(space)))]
    assert all(space.feasible(p) for p in drawn)
    assert len({tuple(p.values()) for p in drawn}) == len(drawn)


def test_fewer_trials_than_profiles_is_announced(capsys):
    searcher = ExhaustiveSearcher(make_space(limit=None))
    searcher.set_search_properties("accuracy", "max", {}, num_samples=5)
    assert "trials=5 covers only the first 5 of 27" in capsys.readouterr().err


def test_per_group_levels_and_rounding_are_respected():
    space = ProfileSpace.build(
        {"a": 16, "b": 16},
        levels=[0.5, 1.0],
        overrides={"b": {"levels": [1.0]}},
        round_to=8,
        cost_model=AnalyticCostModel({"a": 16, "b": 16}, (Term("macs", "c", 1, ("a", "b")),)),
    )
    assert run_out(ExhaustiveSearcher(space)) == [{"a": 0.5, "b": 1.0}, {"a": 1.0, "b": 1.0}]
    assert space.kept({"a": 0.3}) == {"a": 8, "b": 16}


@pytest.mark.integration
def test_tune_ends_the_search_when_the_searcher_finishes(tmp_path):
    """``trials`` above the feasible set: Tune runs each feasible profile once and stops (the
    searcher's FINISHED reaches Tune through the TuneSearcher adapter)."""
    import ray
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from prunetune.search.run.tune_searcher import TuneSearcher

    space = make_space()
    ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False)
    try:
        tuner = tune.Tuner(
            lambda config: {"accuracy": sum(config["profile"].values())},
            tune_config=tune.TuneConfig(
                search_alg=ConcurrencyLimiter(TuneSearcher(ExhaustiveSearcher(space)), max_concurrent=2),
                num_samples=50,
                metric="accuracy",
                mode="max",
                reuse_actors=True,  # ~2 s per trial saved
            ),
            run_config=tune.RunConfig(storage_path=str(tmp_path), name="exhaustive", verbose=0),
        )
        results = tuner.fit()
    finally:
        ray.shutdown()
    profiles = sorted(tuple(r.config["profile"].values()) for r in results)
    assert profiles == sorted(tuple(p.values()) for p in brute_force(space))
