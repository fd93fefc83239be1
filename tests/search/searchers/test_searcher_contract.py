"""The contract every registered searcher keeps (random, exhaustive, rl, and any added later),
and a user's searcher named by its ``module:Class`` path (tests/search/searchers/usersearcher.py).

Runs on a small synthetic profile space with a synthetic analytic cost model (no torch, no
Ray cluster): four groups with four levels each, a MACs limit at 60% of dense. Trials are
simulated by feeding ``on_trial_complete`` a result computed from the profile.
"""

from __future__ import annotations

import pytest

from prunetune.budgets import AnalyticCostModel, Term
from prunetune.budgets.errors import ConfigError
from prunetune.search.searchers import get_searcher, searcher_names
from prunetune.search.space import ProfileSpace

# Options that make a searcher's proposals depend on its seed (exhaustive's default order is
# fixed), so the determinism test can tell seeds apart.
OPTIONS = {
    "exhaustive": {"mode": "sampled"},
    # The baselines give one profile per level: enough levels to keep several running.
    "uniform": {"levels": [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]},
    "sensitivity": {"levels": [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]},
}

# A user's searcher, registered nowhere: loaded from its path as `searcher.name` in a config.
USER_SEARCHER = "tests.search.searchers.usersearcher:LocalSearcher"

CHANNELS = {"a": 16, "b": 32, "c": 8, "d": 16}


def cost_model() -> AnalyticCostModel:
    names = list(CHANNELS)
    macs = [Term("macs", f"conv{i}", 9 * 64, (x, y)) for i, (x, y) in enumerate(zip(names, names[1:]))]
    params = [Term("params", f"conv{i}", 9, (x, y)) for i, (x, y) in enumerate(zip(names, names[1:]))]
    return AnalyticCostModel(
        CHANNELS, (*macs, Term("macs", "stem", 27 * 64, ("a",)), *params, Term("params", "fc", 10 * 17))
    )


def make_space(limit: float = 0.6, levels=(0.25, 0.5, 0.75, 1.0)) -> ProfileSpace:
    model = cost_model()
    return ProfileSpace.build(CHANNELS, levels=levels, cost_model=model, limits={"macs": limit * model.dense()["macs"]})


def result(space: ProfileSpace, profile: dict[str, float]) -> dict[str, float]:
    """What a trial would report: accuracy grows with kept channels, costs from the model."""
    costs, dense = space.costs(profile), space.cost_model.dense()
    weights = {"a": 0.1, "b": 0.2, "c": 0.05, "d": 0.15}
    accuracy = 0.5 + sum(weights.get(group, 0.1) * ratio for group, ratio in profile.items())
    out = {"accuracy": accuracy, "loss": 1 - accuracy, "feasible": 1.0, "done": True}
    for key in ("macs", "params"):
        out |= {f"cost/{key}": costs[key], f"rel/{key}": costs[key] / dense[key]}
    out["meets/macs"] = float(space.feasible(profile))
    return out


def drive(searcher, count: int, prefix: str = "t", *, candidates_only: bool = False) -> list[dict[str, float] | str]:
    """Suggest and complete ``count`` trials one at a time; FINISHED ends the list.
    ``candidates_only`` leaves out probes (a sensitivity searcher's measurements of one group
    pruned alone, marked ``probe``: measurements, not candidate profiles)."""
    proposals = []
    for i in range(count):
        trial_id = f"{prefix}{i}"
        config = searcher.suggest(trial_id)
        assert config is not None, "a searcher with no running trial must not wait"
        if config == searcher.FINISHED:
            proposals.append(config)
            break
        if not (candidates_only and "probe" in config):
            proposals.append(config["profile"])
        searcher.on_trial_complete(trial_id, result(searcher.space, config["profile"]))
    return proposals


@pytest.fixture(params=[*searcher_names(), USER_SEARCHER])
def name(request) -> str:
    return request.param


def build(name: str, seed: int = 0, space: ProfileSpace | None = None, **options):
    return get_searcher(name)(space or make_space(), seed=seed, **{**OPTIONS.get(name, {}), **options})


class TestSearcherContract:
    def test_suggest_and_complete_bookkeeping(self, name):
        searcher = build(name)
        first, second = searcher.suggest("t0"), searcher.suggest("t1")
        assert set(searcher.pending) == {"t0", "t1"} and set(first["profile"]) == set(CHANNELS)
        searcher.on_trial_complete("t0", result(searcher.space, first["profile"]))
        assert set(searcher.pending) == {"t1"} and searcher.completed == 1
        searcher.on_trial_complete("t1", result(searcher.space, second["profile"]))
        assert searcher.pending == {} and searcher.completed == 2
        searcher.suggest("t2")
        # An errored trial is counted; a searcher may keep it pending for a rerun
        # (Tuner.restore(resume_errored=True) reruns it under the same id).
        searcher.on_trial_complete("t2", None, error=True)
        searcher.on_trial_complete("unknown", None)  # a trial it never suggested is ignored
        assert searcher.completed == 3

    def test_restore_into_a_fresh_instance_continues_identically(self, name, tmp_path):
        original = build(name, seed=3)
        drive(original, 5)
        running = original.suggest("running")  # a trial still running when the state is saved
        original.save(str(tmp_path / "searcher.pkl"))
        restored = build(name, seed=3)
        restored.restore(str(tmp_path / "searcher.pkl"))
        assert restored.pending == original.pending and restored.completed == original.completed == 5
        for searcher in (original, restored):
            searcher.on_trial_complete("running", result(searcher.space, running["profile"]))
        assert drive(restored, 5, "next") == drive(original, 5, "next")

    def test_same_seed_same_suggestions_other_seed_differs(self, name):
        assert drive(build(name, seed=1), 20) == drive(build(name, seed=1), 20)
        if build(name).seeded:  # the baselines are deterministic: no seed to tell apart
            assert drive(build(name, seed=1), 6) != drive(build(name, seed=2), 6)

    def test_every_suggestion_meets_the_analytic_limits(self, name):
        space = make_space(limit=0.3)
        proposals = drive(build(name, space=space), 40, candidates_only=True)
        assert proposals and all(space.feasible(p) for p in proposals if p != "FINISHED")

    def test_finished_is_final_and_books_nothing(self, name):
        # Two groups of two levels: at most 4 profiles, fewer once the limit is applied.
        space = ProfileSpace.build(
            {"a": 4, "b": 4},
            levels=(0.5, 1.0),
            cost_model=AnalyticCostModel(
                {"a": 4, "b": 4}, (Term("macs", "conv", 1, ("a", "b")), Term("params", "conv", 1, ("a", "b")))
            ),
            limits={"macs": 8},
        )
        searcher = build(name, space=space)
        proposals = drive(searcher, 8)
        # A searcher that never repeats a profile must run out of them and say so.
        assert proposals[-1] == searcher.FINISHED or not searcher.unique_proposals
        if proposals[-1] == searcher.FINISHED:
            assert searcher.suggest("after") == searcher.FINISHED and "after" not in searcher.pending
            assert len(proposals) - 1 == searcher.completed

    def test_no_duplicates_where_promised(self, name, tmp_path):
        searcher = build(name)
        if not searcher.unique_proposals:
            pytest.skip(f"searcher {name!r} does not promise unique proposals")
        proposals = drive(searcher, 10)
        searcher.save(str(tmp_path / "s.pkl"))
        restored = build(name)
        restored.restore(str(tmp_path / "s.pkl"))
        proposals += drive(restored, 200, "next")
        profiles = [tuple(sorted(p.items())) for p in proposals if p != "FINISHED"]
        assert len(profiles) == len(set(profiles))

    def test_unknown_option_is_a_config_error(self, name):
        with pytest.raises(ConfigError, match="no_such_option"):
            build(name, no_such_option=1)
