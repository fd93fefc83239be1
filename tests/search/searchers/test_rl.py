"""The RL searcher: PPO-Lagrangian with RLlib's local learner, on synthetic profile spaces.

No Ray cluster and no torch model: a hand-built analytic cost model over a chain of groups, and
trial results made up from the suggested profile (a real RLlib learner does the updates).
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from prunetune.budgets.analytic import AnalyticCostModel, Term
from prunetune.budgets.errors import ConfigError
from prunetune.search.searchers import RLSearcher, get_searcher
from prunetune.search.space import ProfileSpace

FIDELITY = [[0, 0], [0.33, 32], [0.66, 128]]


def chain_space(budget: float | None = 0.5, levels=None, groups: int = 5) -> ProfileSpace:
    """Groups g0..g4 of 8-24 channels, each conv fed by the previous group (a plain CNN)."""
    channels = {f"g{i}": 8 * (1 + i // 2) for i in range(groups)}
    names = list(channels)
    terms = []
    for i, name in enumerate(names):
        pair = (names[i - 1], name) if i else (name,)
        terms += [Term("macs", f"conv{i}", 9 * 64, pair), Term("params", f"conv{i}", 9, pair)]
    model = AnalyticCostModel(channels, tuple(terms))
    limits = {"macs": budget * model.dense()["macs"]} if budget else {}
    return ProfileSpace.build(channels, levels=levels, cost_model=model, limits=limits)


def accuracy_of(profile: dict[str, float]) -> float:
    """A made-up accuracy that prefers keeping g0 (what the policy can learn)."""
    return 0.5 + 0.4 * profile["g0"] + 0.02 * sum(profile.values())


def run(searcher: RLSearcher, start: int, stop: int, extra: dict | None = None) -> list[dict]:
    """Suggest and complete trials ``start..stop-1`` one after another; their configs."""
    configs = []
    for i in range(start, stop):
        config = searcher.suggest(f"t{i}")
        configs.append(config)
        result = {"accuracy": accuracy_of(config["profile"]), **(extra or {})}
        searcher.on_trial_complete(f"t{i}", result)
    return configs


def test_registered_as_rl_and_bad_options_are_one_line_errors():
    assert get_searcher("rl") is RLSearcher
    with pytest.raises(ConfigError, match="unknown option.*batch_size.*accepts: episode"):
        RLSearcher(chain_space(), batch_size=4)
    with pytest.raises(ConfigError, match="episode='layers' is not one of per_group, one_step"):
        RLSearcher(chain_space(), episode="layers")
    with pytest.raises(ConfigError, match="fidelity.*increasing fractions starting at 0"):
        RLSearcher(chain_space(), fidelity=[[0.5, 10], [0.2, 20]])


def test_same_seed_same_profiles_and_policy_other_seed_differs():
    first = run(RLSearcher(chain_space(), seed=7, batch_episodes=4), 0, 10)
    again = run(RLSearcher(chain_space(), seed=7, batch_episodes=4), 0, 10)
    other = run(RLSearcher(chain_space(), seed=8, batch_episodes=4), 0, 10)
    assert first == again  # including the two updates in between
    assert first != other


@pytest.mark.parametrize("episode", ["per_group", "one_step"])
@pytest.mark.parametrize("levels", [None, [0.25, 0.5, 0.75, 1.0]])
def test_every_suggestion_meets_the_analytic_budget(episode, levels):
    space = chain_space(budget=0.35, levels=levels)
    searcher = RLSearcher(space, seed=0, episode=episode, init_std=0.5)
    configs = run(searcher, 0, 40)
    dense = space.cost_model.dense()["macs"]
    relative = [space.costs(c["profile"])["macs"] / dense for c in configs]
    assert all(space.feasible(c["profile"]) for c in configs)
    assert max(relative) > 0.3  # clipped to the budget, not squeezed far below it
    if levels:
        assert all(set(c["profile"].values()) <= set(levels) for c in configs)
    assert searcher.updates == 40 // 8


def test_update_after_batch_episodes_learns_from_rewards():
    searcher = RLSearcher(chain_space(budget=None), seed=1, batch_episodes=8, lr=3e-3)
    run(searcher, 0, 7)
    assert searcher.updates == 0
    before = [c["profile"]["g0"] for c in run(searcher, 7, 8)]
    assert searcher.updates == 1
    early = [c["profile"]["g0"] for c in run(searcher, 8, 24)]
    late = [c["profile"]["g0"] for c in run(searcher, 24, 56)]
    assert searcher.updates == 7
    assert before  # the first update happened at the 8th completion, not before
    assert np.mean(late) > np.mean(early) + 0.05  # the reward prefers keeping g0


def test_multiplier_rises_over_a_black_box_budget_and_falls_when_met():
    searcher = RLSearcher(chain_space(), seed=2, batch_episodes=4)
    initial = searcher.multiplier
    over = {"cost/latency": 2.0, "limit/latency": 1.0, "meets/latency": 0.0}
    run(searcher, 0, 12, extra=over)
    assert searcher.updates == 3 and searcher.multiplier > initial
    peak = searcher.multiplier
    met = {"cost/latency": 0.5, "limit/latency": 1.0, "meets/latency": 1.0}
    run(searcher, 12, 24, extra=met)
    assert searcher.multiplier < peak


def test_analytic_budgets_do_not_move_the_multiplier():
    searcher = RLSearcher(chain_space(), seed=2, batch_episodes=4)
    run(searcher, 0, 8, extra={"meets/macs": 1.0, "cost/macs": 1.0, "limit/macs": 2.0})
    assert searcher.updates == 2 and searcher.multiplier == pytest.approx(1.0)


def test_save_restore_and_pickle_continue_identically(tmp_path):
    kwargs = {"seed": 3, "batch_episodes": 4}
    extra = {"cost/latency": 1.5, "limit/latency": 1.0, "meets/latency": 0.0}
    original = RLSearcher(chain_space(), **kwargs)
    run(original, 0, 10, extra)
    pending = original.suggest("waiting")  # a trial still running at save time
    original.save(str(tmp_path / "searcher.pkl"))
    pickled = pickle.loads(pickle.dumps(original))  # how Tune stores the searcher itself

    restored = RLSearcher(chain_space(), **kwargs)
    restored.restore(str(tmp_path / "searcher.pkl"))
    expected = run(original, 10, 22, extra)
    for copy in (restored, pickled):
        assert copy.pending == {"waiting": pending}
        assert run(copy, 10, 22, extra) == expected
        assert copy.updates == original.updates == 5
        assert copy.multiplier == original.multiplier


def test_errored_trial_keeps_its_pending_entry_for_a_rerun():
    searcher = RLSearcher(chain_space(), seed=0, batch_episodes=1)
    config = searcher.suggest("t0")
    searcher.on_trial_complete("t0", None, error=True)
    assert searcher.pending == {"t0": config} and searcher.updates == 0
    searcher.on_trial_complete("t0", {"accuracy": 0.9})  # resume_errored ran it again
    assert searcher.pending == {} and searcher.updates == 1


def test_fidelity_schedule_by_fraction_of_trials():
    searcher = RLSearcher(chain_space(), seed=0, fidelity=FIDELITY, max_trials=9)
    steps = [c["finetune_steps"] for c in run(searcher, 0, 9)]
    assert steps == [0, 0, 0, 32, 32, 32, 128, 128, 128]

    from_tune = RLSearcher(chain_space(), seed=0, fidelity=FIDELITY)
    from_tune.set_search_properties("accuracy", "max", {"model": "resnet20"}, num_samples=3)
    assert [c["finetune_steps"] for c in run(from_tune, 0, 3)] == [0, 32, 128]

    with pytest.raises(ConfigError, match="fidelity needs the number of trials.*max_trials"):
        RLSearcher(chain_space(), fidelity=FIDELITY).suggest("t0")


def test_target_reward_penalises_distance_to_the_expected_compression():
    space = chain_space(budget=None)
    searcher = RLSearcher(space, seed=0, reward="target", target=0.5, beta=2.0, batch_episodes=100)
    config = searcher.suggest("t0")
    searcher.on_trial_complete("t0", {"accuracy": 0.8})
    relative = space.costs(config["profile"])["macs"] / space.cost_model.dense()["macs"]
    assert searcher.ready[0]["reward"] == pytest.approx(0.8 - 2.0 * abs(relative - 0.5))


def _probe_then_rollouts(searcher: RLSearcher, rollouts: int) -> tuple[list[dict], list[dict]]:
    """Suggest every warm-start probe before completing any, then ``rollouts`` RL profiles."""
    probes = []
    while (config := searcher.suggest(f"p{len(probes)}")) is not None:
        assert "probe" in config, "an RL episode before the probes were in"
        probes.append(config)
    for i, config in enumerate(probes):  # the prior waits for every probe: None until then
        searcher.on_trial_complete(f"p{i}", {"accuracy": accuracy_of(config["profile"])})
    return probes, run(searcher, 0, rollouts)


def test_a_warm_start_probes_each_group_then_samples_around_the_sensitivity_allocation(tmp_path):
    space = chain_space(budget=0.5)
    searcher = RLSearcher(space, seed=0, warm_start="sensitivity", init_std=0.02, batch_episodes=50)
    probes, rollouts = _probe_then_rollouts(searcher, 6)
    assert len(probes) == 1 + 5 * 3 and all(p["finetune_steps"] == 0 for p in probes)  # the reference, 3 ratios a group
    # the prior is what `searcher: sensitivity` allocates from the same probes
    alone = get_searcher("sensitivity")(space)
    for i in range(100):
        config = alone.suggest(f"s{i}")
        if "probe" not in config:
            break  # its allocation, after its probes
        alone.on_trial_complete(f"s{i}", {"accuracy": accuracy_of(config["profile"])})
    assert searcher.prior == config["profile"]
    assert searcher.prior["g0"] > np.mean([searcher.prior[g] for g in ("g1", "g2", "g3", "g4")])  # g0 matters most
    dense = space.cost_model.dense()["macs"]
    assert all(space.feasible(c["profile"]) for c in rollouts)
    near = np.mean([abs(c["profile"][g] - searcher.prior[g]) for c in rollouts for g in space.names])
    cold = run(RLSearcher(space, seed=0, init_std=0.02, batch_episodes=50), 0, 6)
    far = np.mean([abs(c["profile"][g] - searcher.prior[g]) for c in cold for g in space.names])
    assert near < 0.06 < far, (near, far)  # the untrained policy starts at the prior, not mid-range
    assert max(space.costs(c["profile"])["macs"] / dense for c in rollouts) > 0.4  # using the budget


def test_a_warm_started_search_restored_mid_probe_continues_identically(tmp_path):
    def fresh():
        return RLSearcher(chain_space(budget=0.5), seed=3, warm_start="sensitivity", batch_episodes=4)

    searcher = fresh()
    first = [searcher.suggest(f"p{i}") for i in range(5)]
    for i in range(3):
        searcher.on_trial_complete(f"p{i}", {"accuracy": accuracy_of(first[i]["profile"])})
    searcher.save(str(tmp_path / "rl.pkl"))
    restored = fresh()
    restored.restore(str(tmp_path / "rl.pkl"))

    def finish(s: RLSearcher) -> list[dict]:
        for i in (3, 4):
            s.on_trial_complete(f"p{i}", {"accuracy": accuracy_of(first[i]["profile"])})
        return _probe_then_rollouts(s, 10)

    assert finish(searcher) == finish(restored)
    assert restored.prior == searcher.prior and restored.updates == searcher.updates == 2


def test_a_warm_start_needs_the_cost_model_and_keep_ratios():
    with pytest.raises(ConfigError, match="probe_ratios must list keep ratios in"):
        RLSearcher(chain_space(), warm_start="sensitivity", probe_ratios=[1.5])
    with pytest.raises(ConfigError, match="warm_start='cold' is not one of none, sensitivity"):
        RLSearcher(chain_space(), warm_start="cold")
