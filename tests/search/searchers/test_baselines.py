"""The baselines every search is judged against (uniform, sensitivity) and search-then-confirm.

On the contract suite's synthetic space (four groups, an exact analytic cost model), without
torch or Ray: trials are simulated by feeding results computed from the profile.
"""

from __future__ import annotations

import numpy as np
import pytest

from prunetune.budgets import AnalyticCostModel, Term
from prunetune.budgets.errors import ConfigError
from prunetune.search.searchers import ConfirmingSearcher, get_searcher
from prunetune.search.space import ProfileSpace
from tests.search.searchers.test_searcher_contract import CHANNELS, cost_model, result


def continuous_space(limit: float = 0.5, low: float = 0.1) -> ProfileSpace:
    model = cost_model()
    return ProfileSpace.build(CHANNELS, low=low, cost_model=model, limits={"macs": limit * model.dense()["macs"]})


def run(searcher, outcome=result, limit: int = 100) -> list[dict]:
    """Suggest and complete trials one at a time until FINISHED; the suggested configs."""
    configs = []
    for index in range(limit):
        config = searcher.suggest(f"t{index}")
        assert config is not None, "nothing running, yet the searcher waits"
        if config == searcher.FINISHED:
            return configs
        configs.append(config)
        searcher.on_trial_complete(f"t{index}", outcome(searcher.space, config["profile"]))
    raise AssertionError("the searcher never finished")


def test_uniform_uses_the_budget_as_fully_as_the_channel_rule_allows():
    space = continuous_space(limit=0.5)
    [config] = run(get_searcher("uniform")(space))
    ratios = set(config["profile"].values())
    assert len(ratios) == 1 and space.feasible(config["profile"])
    # No uniform ratio on a fine grid keeps more MACs within the budget.
    best = max(
        space.costs(dict.fromkeys(CHANNELS, r))["macs"]
        for r in np.linspace(0.1, 1, 2000)
        if space.feasible(dict.fromkeys(CHANNELS, r))
    )
    assert space.costs(config["profile"])["macs"] == pytest.approx(best)


def test_uniform_gives_one_profile_per_level_each_within_it():
    space = continuous_space(limit=0.9)
    configs = run(get_searcher("uniform")(space, levels=[0.25, 0.5, 0.75]))
    dense = space.cost_model.dense()["macs"]
    relative = [space.costs(c["profile"])["macs"] / dense for c in configs]
    assert [c["level"] for c in configs] == [0.25, 0.5, 0.75]
    assert all(r <= level + 1e-9 for r, level in zip(relative, [0.25, 0.5, 0.75]))
    assert relative == sorted(relative) and relative[0] > 0.15  # each close to its level


def test_uniform_bisects_over_trials_on_a_budget_only_trials_measure():
    """A "latency" budget the cost model cannot see: met only at ratios up to 0.42."""
    space = continuous_space(limit=1.0)

    def outcome(space, profile):
        out = result(space, profile)
        return {**out, "meets/latency": float(max(profile.values()) <= 0.42)}

    searcher = get_searcher("uniform")(space, probes=8)
    first = searcher.suggest("t0")
    assert searcher.suggest("t1") is None  # the next step waits for this trial's result
    searcher.on_trial_complete("t0", outcome(space, first["profile"]))
    configs = [first, *run(searcher, outcome)]
    tried = [max(c["profile"].values()) for c in configs]
    assert tried[0] == 1.0 and len(configs) == 9  # the analytic profile, then 8 bisection steps
    met = [r for r in tried if r <= 0.42]
    assert max(met) == pytest.approx(0.42, abs=0.01)
    assert searcher.knobs.answers()[None] == {g: max(met) for g in CHANNELS}


def test_sensitivity_probes_each_group_then_prunes_the_insensitive_ones():
    space = continuous_space(limit=0.5)

    def outcome(space, profile):  # group "b" is fragile, the others barely matter
        out = result(space, profile)
        return {
            **out,
            "accuracy": 0.9 - 0.5 * (1 - profile["b"]) - 0.01 * sum(1 - r for g, r in profile.items() if g != "b"),
        }

    searcher = get_searcher("sensitivity")(space, ratios=[0.25, 0.5, 0.75])
    configs = run(searcher, outcome)
    probes, answers = [c for c in configs if "probe" in c], [c for c in configs if "probe" not in c]
    assert len(probes) == 1 + 4 * 3 and all(c["finetune_steps"] == 0 for c in probes)
    assert {c["probe"] for c in probes} == {"__reference__", *CHANNELS}
    [answer] = answers
    profile = answer["profile"]
    assert space.feasible(profile)
    others = [r for g, r in profile.items() if g != "b"]
    assert profile["b"] >= max(others) and profile["b"] > min(others)  # the fragile group kept
    dense = space.cost_model.dense()["macs"]
    assert space.costs(profile)["macs"] / dense > 0.45  # the budget used, not wasted


def test_sensitivity_does_not_take_cuts_below_its_lowest_probe_for_free():
    """The probes stop at 0.25; nothing measured below is no reason to think a cut there loses
    nothing: each group's drop keeps rising down to its floor, at least at the pace of its
    probes."""
    space = continuous_space(limit=0.3, low=0.1)

    def outcome(space, profile):
        return {**result(space, profile), "accuracy": 0.9 - 0.2 * sum(1 - r for r in profile.values())}

    searcher = get_searcher("sensitivity")(space, ratios=[0.25, 0.5, 0.75])
    run(searcher, outcome)
    for group, (grid, drops) in searcher.curves().items():
        below = grid <= 0.25
        assert np.all(np.diff(drops[below]) > 0), (group, drops[below])  # the grid descends
        assert drops[-1] == pytest.approx(0.2 * (1 - grid[-1]), abs=1e-6), group  # the probes' pace


def test_sensitivity_under_a_parameter_budget_saves_parameters():
    """Under a parameter budget the greedy saves parameters, not MACs: naming ``cost: macs``
    gives a worse profile at the same budget. Group "d" holds a large share of the parameters
    (the classifier's inputs) and few MACs."""
    names = list(CHANNELS)
    convs = [(f"conv{i}", 9, (x, y)) for i, (x, y) in enumerate(zip(names, names[1:]))]
    model = AnalyticCostModel(
        CHANNELS,
        (
            *(Term("macs", name, 64 * weight, groups) for name, weight, groups in convs),
            *(Term("params", name, weight, groups) for name, weight, groups in convs),
            Term("params", "fc", 10 * 49, ("d",)),
        ),
    )
    space = ProfileSpace.build(CHANNELS, low=0.1, cost_model=model, limits={"params": 0.4 * model.dense()["params"]})

    def outcome(space, profile):
        return {**result(space, profile), "accuracy": 0.9 - 0.1 * sum(1 - r for r in profile.values())}

    answers = {}
    for cost in (None, "macs"):
        options = {"cost": cost} if cost else {}
        searcher = get_searcher("sensitivity")(space, ratios=[0.25, 0.5, 0.75], **options)
        [answers[cost]] = [c["profile"] for c in run(searcher, outcome) if "probe" not in c]
        assert space.feasible(answers[cost])
    assert searcher.cost == "macs" and get_searcher("sensitivity")(space).cost == "params"
    dense = model.dense()["params"]
    assert space.costs(answers[None])["params"] / dense > 0.37  # the budget used
    assert outcome(space, answers[None])["accuracy"] > outcome(space, answers["macs"])["accuracy"] + 0.01


def test_sensitivity_needs_a_cost_model():
    space = ProfileSpace.build(CHANNELS)
    with pytest.raises(ConfigError, match="cost model"):
        get_searcher("sensitivity")(space)


def test_sensitivity_restores_its_probes_and_continues_identically(tmp_path):
    space = continuous_space(limit=0.5)
    original = get_searcher("sensitivity")(space)
    for index in range(5):
        config = original.suggest(f"t{index}")
        original.on_trial_complete(f"t{index}", result(space, config["profile"]))
    original.save(str(tmp_path / "s.pkl"))
    restored = get_searcher("sensitivity")(space)
    restored.restore(str(tmp_path / "s.pkl"))
    assert restored.probes == original.probes
    assert run(restored) == run(original)


def test_confirm_passes_the_search_through_then_confirms_the_best_per_seed(tmp_path):
    space = continuous_space(limit=0.6)
    searcher = ConfirmingSearcher(get_searcher("random")(space, seed=1), trials=6, top=2, steps=300, seeds=2)
    searcher.set_search_properties("accuracy", "max", {}, num_samples=10)
    assert searcher.inner.completed == 0
    search = [searcher.suggest(f"s{i}") for i in range(6)]
    assert searcher.suggest("early") is None  # the best is known only when every search trial is done
    results = {}
    for index, config in enumerate(search):
        results[f"s{index}"] = result(space, config["profile"])
        searcher.on_trial_complete(f"s{index}", results[f"s{index}"])
    searcher.save(str(tmp_path / "c.pkl"))
    confirmations = [searcher.suggest(f"c{i}") for i in range(4)]
    assert searcher.suggest("after") == searcher.FINISHED
    ranked = sorted(results, key=lambda tid: results[tid]["accuracy"], reverse=True)[:2]
    assert [c["confirm"] for c in confirmations] == [
        {"source": ranked[0], "seed": 0},
        {"source": ranked[0], "seed": 1},
        {"source": ranked[1], "seed": 0},
        {"source": ranked[1], "seed": 1},
    ]
    assert all(c["finetune_steps"] == 300 for c in confirmations)
    restored = ConfirmingSearcher(get_searcher("random")(space, seed=1), trials=6, top=2, steps=300, seeds=2)
    restored.restore(str(tmp_path / "c.pkl"))
    assert [restored.suggest(f"c{i}") for i in range(4)] == confirmations


def test_confirm_uniform_confirms_each_level_s_uniform_profile_beside_the_best():
    space = continuous_space(limit=0.9)
    levels = [0.3, 0.6]
    searcher = ConfirmingSearcher(
        get_searcher("random")(space, seed=2), trials=5, top=1, steps=200, seeds=2, levels=levels, uniform=True
    )
    searcher.set_search_properties("accuracy", "max", {}, num_samples=5 + 3 * 2 * 2)
    configs = run(searcher)
    confirmations = [c for c in configs if "confirm" in c]
    references = [c for c in confirmations if c["confirm"].get("reference") == "uniform"]
    assert [c["confirm"]["source"] for c in references] == ["uniform@0.3"] * 2 + ["uniform@0.6"] * 2
    assert [c["confirm"]["seed"] for c in references] == [0, 1, 0, 1]
    assert all(c["finetune_steps"] == 200 for c in references)
    # each is what `searcher: uniform` places at that level on the exact cost model
    alone = run(get_searcher("uniform")(space, levels=levels))
    assert [c["profile"] for c in references[::2]] == [c["profile"] for c in alone]
    assert all(len(set(c["profile"].values())) == 1 for c in references)


def test_confirm_uniform_needs_the_top_and_an_analytic_frontier_cost():
    from prunetune.search.config import parse_config
    from prunetune.search.run.methods import get_method

    with pytest.raises(ConfigError, match="set confirm.top too"):
        parse_config({"name": "x", "confirm": {"uniform": True}})
    config = parse_config(
        {
            "name": "x",
            "confirm": {"top": 1, "uniform": True, "levels": [0.5]},
            "budgets": [{"cost": "latency", "max": 5.0}],
        }
    )
    with pytest.raises(ConfigError, match="frontier cost 'latency' is measured"):
        get_method("search").check(config)
    counted = parse_config(
        {"name": "x", "trials": 4, "confirm": {"top": 2, "seeds": 3, "uniform": True, "levels": [0.3, 0.5]}}
    )
    assert get_method("search").trial_count(counted) == 4 + (2 + 1) * 3 * 2


def test_confirm_ranks_trials_a_scheduler_stopped_below_finished_ones():
    from prunetune.search.searchers.confirm import select_top

    results = {
        "stopped": {"profile": {"a": 0.5}, "metrics": {"accuracy": 0.99, "feasible": 1.0, "done": False}},
        "finished": {"profile": {"a": 0.6}, "metrics": {"accuracy": 0.80, "feasible": 1.0, "done": True}},
        "broke": {"profile": {"a": 0.7}, "metrics": {"accuracy": 0.999, "feasible": 0.0, "done": True}},
        "same": {"profile": {"a": 0.6}, "metrics": {"accuracy": 0.79, "feasible": 1.0, "done": True}},
    }
    assert select_top(results, 3, None, "macs") == ["finished", "stopped"]  # infeasible and repeated left out


def test_rl_compares_rewards_at_one_fidelity():
    searcher = get_searcher("rl")(continuous_space())
    for _ in range(3):
        searcher._at_common_fidelity(0.9, 40)
        searcher._at_common_fidelity(0.5, 10)
    # A rung-10 result 0.1 above its rung's mean is worth 0.1 above the full-length mean.
    assert searcher._at_common_fidelity(0.6, 10) == pytest.approx(0.9 + 0.1 - 0.1 / 4, abs=1e-9)
    assert searcher._at_common_fidelity(0.95, 40) == 0.95
