"""The RL searcher: a PPO-Lagrangian pruning policy (the constrained-RL paper: Malik et al., "Neural
network pruning through constrained reinforcement learning", arXiv:2110.08558), trained with
RLlib in the driver.

Formulation (the constrained-RL paper's, with our choices named):

- **Episode.** One step per group in the space's group order (``episode: per_group``, the
  default) or the whole profile as one vector action (``episode: one_step``). Each Tune trial
  evaluates one episode's profile.
- **Observation** (per step): normalised group index, the group's channels, the previous
  group's kept channels (0 at the first group), the group's share of dense MACs from the
  analytic cost model (0 without one), the running mean of previous ratios, the group's lowest
  ratio, its feasibility cap and the budget target. See :mod:`prunetune.search.searchers._pruning_env`.
- **Action.** A raw Gaussian sample over ``Box(-1, 1)``; the raw value is kept for the
  log-probability, we clip and map it onto the group's ratio range ourselves. The policy
  starts at the middle of every range with a standard deviation of ``init_std`` (default 0.3)
  of the range. Analytic budgets (``space.limits``) clip each ratio AMC-style so that every
  suggested profile is feasible: such budgets never cost a trial.
- **Reward.** 0 at intermediate steps, the trial's ``accuracy`` at the last one. Option
  ``reward: target`` (the out-of-the-box profiles paper; our formula):
  ``R = accuracy - beta * |c - target|`` with ``c`` the profile's relative ``target_cost``
  (default ``macs``) from the analytic cost model, else the trial's ``rel/<cost>``.
- **Cost.** Budgets only a trial can measure (latency, peak memory, user functions; every
  ``meets/<key>`` in a result that is not an analytic limit) give the episode's cost at its
  last step: ``max_k (cost_k / limit_k - 1)``, the worst relative excess (``limit/<key>`` is
  reported by the trainable). The multiplier ``nu = softplus(log_nu)`` (initially
  ``init_multiplier``) rises by dual ascent (Adam without momentum, step ``dual_lr``) while the
  batch's mean cost is above 0 and falls while below, after every policy update.
- **Update.** RLlib PPO on the new API stack with a local learner (no Ray actors, no CPU taken
  from trials, ``torch.set_num_threads(1)`` during updates), and a custom module with a
  separate cost value head (:mod:`prunetune.search.searchers._policy`): policy advantage
  ``(A_r - nu * A_c) / (1 + nu)``. One update every ``batch_episodes`` finished episodes.
  Without any black-box budget ``nu`` plays no part (plain PPO on the reward).
- **Warm start** (``warm_start: sensitivity``, our choice). The search's first trials are the
  sensitivity searcher's probes (each group alone at ``probe_ratios``, ``probe_steps`` of
  fine-tune; see :mod:`~prunetune.search.searchers.sensitivity`); their greedy allocation at
  the analytic budget (at ``target`` with ``reward: target``) becomes the policy's prior: a raw
  action is an offset from the prior's ratio in each group (:meth:`PruningEnv.set_prior`), so
  the untrained policy samples around the sensitivity profile instead of the middle of every
  range and learns what to change. The probes count as trials; their results only shape the
  prior (they are no episodes).
- **Fidelity.** ``fidelity: [[0, 0], [0.33, 32], [0.66, 128]]`` gives each suggestion
  ``finetune_steps`` by the fraction of trials suggested so far; the number of trials is
  ``max_trials`` or Tune's ``num_samples`` (passed through ``set_search_properties``).
  Rewards are compared at one fidelity: a result reached after fewer fine-tune steps than the
  most common highest fidelity (a trial ASHA stopped at a rung, or an early part of the
  fidelity schedule) has its accuracy shifted by the mean gap between its fidelity and the
  highest one seen at least :data:`FIDELITY_SAMPLES` times, so a stopped trial is not punished
  for being stopped, only for being worse than its peers at its rung.

State (policy and optimiser as numpy via ``LearnerGroup.get_state``, multiplier and its Adam
moments, trials awaiting results, finished episodes awaiting an update, counters, RNG) goes
through :meth:`extra_state`; RLlib objects are never pickled and are rebuilt lazily into a fresh
learner group. Errored trials keep their pending entry so ``resume_errored`` can rerun them.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from prunetune.budgets import report as R
from prunetune.budgets.errors import ConfigError
from prunetune.budgets.report import TrialReport
from prunetune.search import ray_compat
from prunetune.search.searchers._pruning_env import GROUP_FEATURES, ONE_STEP_FEATURES, PruningEnv
from prunetune.search.searchers.base import ProfileSearcher, SearcherOptions, register_searcher
from prunetune.search.searchers.sensitivity import SensitivitySearcher, keep_ratios
from prunetune.search.space import ProfileSpace

FIDELITY_SAMPLES = 3  # results at a fidelity before its mean is trusted for the shift


class RLSettings(SearcherOptions):
    """The RL searcher's options (``searcher.options`` in a search config)."""

    episode: Literal["per_group", "one_step"] = "per_group"
    batch_episodes: int = Field(8, ge=1, strict=True)
    num_epochs: int = Field(10, ge=1, strict=True)
    minibatch_size: int | None = Field(None, ge=1, strict=True)  # None: the whole batch
    lr: float = Field(1e-3, gt=0)
    hidden: tuple[int, ...] = (32, 32)
    init_std: float = Field(0.3, gt=0)  # of the ratio range
    gamma: float = Field(0.99, ge=0, le=1)
    gae_lambda: float = Field(0.95, ge=0, le=1)
    clip: float = Field(0.2, gt=0)
    dual_lr: float = Field(0.1, gt=0)
    init_multiplier: float = Field(1.0, gt=0)
    reward: Literal["accuracy", "target"] = "accuracy"
    target: float = 0.5
    beta: float = Field(1.0, gt=0)
    target_cost: str = "macs"
    fidelity: tuple[tuple[float, int], ...] = ()
    max_trials: int | None = Field(None, ge=1, strict=True)
    warm_start: Literal["none", "sensitivity"] = "none"
    probe_ratios: tuple[float, ...] = (0.25, 0.5, 0.75)
    probe_steps: int = Field(0, ge=0, strict=True)

    @field_validator("probe_ratios")
    @classmethod
    def _keep_ratios(cls, ratios: tuple[float, ...]) -> tuple[float, ...]:
        return keep_ratios(ratios, "probe_ratios")

    @field_validator("fidelity")
    @classmethod
    def _increasing(cls, fidelity: tuple[tuple[float, int], ...]) -> tuple[tuple[float, int], ...]:
        if fidelity and (fidelity[0][0] != 0 or any(a[0] >= b[0] for a, b in zip(fidelity, fidelity[1:]))):
            raise ValueError(
                f"fidelity={[list(f) for f in fidelity]} must list [fraction, steps] pairs with increasing "
                "fractions starting at 0, e.g. [[0, 0], [0.33, 32], [0.66, 128]]"
            )
        return fidelity


def _softplus(x: float) -> float:
    return math.log1p(math.exp(-abs(x))) + max(x, 0.0)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


@register_searcher("rl")
class RLSearcher(ProfileSearcher):
    """PPO-Lagrangian over layer-wise keep ratios; see the module docstring for the method.

    ``updates`` counts policy updates, ``multiplier`` is the current Lagrange multiplier.
    """

    Options = RLSettings

    def __init__(
        self, space: ProfileSpace, *, seed: int = 0, metric: str = R.ACCURACY, mode: str = "max", **options: Any
    ):
        super().__init__(space, seed=seed, metric=metric, mode=mode, options=options)
        self.settings: RLSettings = self.options
        target = self.settings.target if self.settings.reward == "target" else None
        self.env = PruningEnv(space, target=target)
        self.rng = np.random.default_rng(seed)
        self.max_trials = self.settings.max_trials
        self.updates = 0
        self.suggested = 0
        self.env_steps = 0
        self.constrained = False  # a result named a budget only trials measure
        self.log_nu = math.log(math.expm1(self.settings.init_multiplier))
        self.dual_moments = (0.0, 0)  # the dual optimiser's second moment and step count
        self.rollouts: dict[str, dict[str, Any]] = {}  # trial -> what the policy did
        self.ready: list[dict[str, Any]] = []  # finished episodes waiting for an update
        self._learner_state: dict | None = None
        self.fidelities: dict[int, list[float]] = {}  # fine-tune steps -> [sum of accuracy, count]
        self._engine: tuple | None = None  # (learner group, sampling module, dist class): never pickled
        self.prober = self._prober() if self.settings.warm_start == "sensitivity" else None
        self.prior: dict[str, float] | None = None  # the warm start's profile, once its probes are in

    @property
    def multiplier(self) -> float:
        return _softplus(self.log_nu)

    # -- Tune ------------------------------------------------------------------------------
    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        """Tune passes ``num_samples``: the trial count the fidelity schedule divides by."""
        if self.settings.max_trials is None and spec.get("num_samples"):
            self.max_trials = int(spec["num_samples"])
        return super().set_search_properties(metric, mode, config, **spec)

    def propose(self, trial_id: str) -> dict[str, Any] | None:
        if self.prober is not None and self.prior is None:
            if self.prober.queue:
                return self.prober.propose(trial_id)  # a probe: marked ``probe`` in its config
            if self.prober.probing:
                return None  # the prior needs every probe's result
            self._set_prior(self._warm_prior())
        rollout = self._rollout()
        config: dict[str, Any] = {"profile": rollout.pop("profile")}
        steps = self._fidelity()
        if steps is not None:
            config[R.FINETUNE_STEPS] = steps
        self.rollouts[trial_id] = rollout
        self.suggested += 1
        return config

    def observe(self, trial_id: str, config: dict[str, Any], result: dict | None, error: bool) -> None:
        if self.prober is not None and trial_id in self.prober.probing:
            self.prober.observe(trial_id, config, result, error)  # an errored probe reads as unknown
            return
        if error:
            self._keep_pending(trial_id, config)  # resume_errored reruns it: keep its rollout too
            return
        rollout = self.rollouts.pop(trial_id, None)
        if rollout is None or not result or self._metric_name not in result:
            return
        self.ready.append({**rollout, "reward": self._reward(config, result), "cost": self._cost(result)})
        if len(self.ready) >= self.settings.batch_episodes:
            self._update()

    # -- warm start ------------------------------------------------------------------------
    def _prober(self) -> SensitivitySearcher:
        if self.space.cost_model is None:
            raise ConfigError(
                "rl searcher option warm_start=sensitivity allocates on the exact cost model, which this "
                "model has none of; use warm_start: none"
            )
        return SensitivitySearcher(
            self.space,
            seed=self.seed,
            metric=self.metric or R.ACCURACY,
            mode=self.mode or "max",
            ratios=self.settings.probe_ratios,
            probe_steps=self.settings.probe_steps,
            cost=self.settings.target_cost if self.settings.reward == "target" else None,
        )

    def _warm_prior(self) -> dict[str, float]:
        """The probes' greedy allocation at the analytic budget (``target`` with ``reward:
        target``), the largest that meets every analytic limit."""
        from prunetune.search.searchers._one_knob import analytic_knob

        prober = self.prober
        low, high = prober.knob_range()
        level = self.settings.target if self.settings.reward == "target" else None
        return prober.family(analytic_knob(self.space, prober.family, low, high, prober.cost, level))

    def _set_prior(self, prior: dict[str, float]) -> None:
        self.prior = dict(prior)
        self.env.set_prior(self.prior)

    # -- episodes --------------------------------------------------------------------------
    def _rollout(self) -> dict[str, Any]:
        """Sample one profile from the policy, keeping what PPO needs to learn from it."""
        names = self.space.names
        decided: dict[str, float] = {}
        if self.settings.episode == "one_step":
            obs = self.env.one_step_observation()
            raw, logp, inputs = self._sample(obs)
            for step, name in enumerate(names):
                decided[name] = self.env.decide(step, float(raw[step]), decided)
            observations, raws, logps, dist_inputs = [obs, obs], [raw], [logp], [inputs]
        else:
            observations, raws, logps, dist_inputs = [], [], [], []
            for step, name in enumerate(names):
                obs = self.env.observation(step, decided)
                raw, logp, inputs = self._sample(obs)
                decided[name] = self.env.decide(step, float(raw[0]), decided)
                observations.append(obs), raws.append(raw), logps.append(logp), dist_inputs.append(inputs)
            observations.append(self.env.observation(len(names), decided))
        return {"profile": decided, "obs": observations, "actions": raws, "logp": logps, "inputs": dist_inputs}

    def _sample(self, obs: np.ndarray) -> tuple[np.ndarray, np.float32, np.ndarray]:
        """A raw action drawn with the searcher's own generator (reproducible and saved)."""
        import torch
        from ray.rllib.core.columns import Columns

        _, module, dist_cls = self._policy()
        with torch.no_grad():
            # The sampling module stays in eval mode (built so in _policy.build_engine).
            inputs = ray_compat.forward_exploration(module, {Columns.OBS: torch.from_numpy(obs[None])})[
                Columns.ACTION_DIST_INPUTS
            ]
            mean, log_std = inputs[0].chunk(2)
            noise = torch.from_numpy(self.rng.standard_normal(mean.shape[0]).astype(np.float32))
            raw = mean + log_std.exp() * noise
            logp = dist_cls.from_logits(inputs).logp(raw[None])[0]
        return raw.numpy(), np.float32(logp), inputs[0].numpy()

    def _fidelity(self) -> int | None:
        schedule = self.settings.fidelity
        if not schedule:
            return None
        if not self.max_trials:
            raise ConfigError(
                "rl searcher option fidelity needs the number of trials: set searcher option max_trials "
                "(a Tune run passes num_samples itself)"
            )
        fraction = self.suggested / self.max_trials
        return next(steps for start, steps in reversed(schedule) if fraction >= start)

    @property
    def _metric_name(self) -> str:
        return self.metric or R.ACCURACY

    def _reward(self, config: dict[str, Any], result: dict) -> float:
        sign = -1.0 if self.mode == "min" else 1.0
        reward = sign * self._at_common_fidelity(float(result[self._metric_name]), int(result.get(R.FINETUNE_STEPS, 0)))
        if self.settings.reward == "target":
            reward -= self.settings.beta * abs(self._relative_cost(config["profile"], result) - self.settings.target)
        return reward

    def _at_common_fidelity(self, value: float, steps: int) -> float:
        """``value`` measured after ``steps`` fine-tune steps, shifted to the highest fidelity
        seen :data:`FIDELITY_SAMPLES` times (unchanged when all results share one fidelity)."""
        total = self.fidelities.setdefault(steps, [0.0, 0])
        total[0] += value
        total[1] += 1
        trusted = [f for f, (_, count) in self.fidelities.items() if count >= FIDELITY_SAMPLES]
        if not trusted or steps >= max(trusted) or total[1] < FIDELITY_SAMPLES:
            return value
        top = self.fidelities[max(trusted)]
        return value - total[0] / total[1] + top[0] / top[1]

    def _relative_cost(self, profile: dict[str, float], result: dict) -> float:
        key = self.settings.target_cost
        if self.env.dense.get(key):
            return self.space.costs(profile)[key] / self.env.dense[key]
        relative = R.family(result, R.RELATIVE)
        if key in relative:
            return relative[key]
        raise ConfigError(
            f"rl searcher option target_cost={key!r}: neither the cost model nor the trial reports it; "
            "use macs or params, or a cost that a budget names"
        )

    def _cost(self, result: dict) -> float:
        """The worst relative excess over the budgets only a trial measures (0 without any)."""
        missed = TrialReport.read(result).missed_by()
        excess = [value for key, value in missed.items() if key not in self.env.limits]
        if not excess:
            return 0.0
        self.constrained = True
        return max(excess)

    # -- learning --------------------------------------------------------------------------
    def _update(self) -> None:
        """One PPO-Lagrangian update from the finished episodes, then one dual ascent step."""
        import torch
        from ray.rllib.core import DEFAULT_MODULE_ID

        from prunetune.search.searchers._policy import to_episode

        learner_group, module, _ = self._policy()
        batch, self.ready = self.ready, []
        nu = self.multiplier if self.constrained else 0.0
        episodes = [to_episode(record, nu, self.settings.gamma) for record in batch]
        steps = sum(len(e) for e in episodes)
        self.env_steps += steps
        threads, numpy_state = torch.get_num_threads(), np.random.get_state()
        try:
            torch.set_num_threads(1)  # keep the driver off the trials' cores
            np.random.seed(self.seed * 100_003 + self.updates)  # RLlib shuffles with numpy's RNG
            with torch.random.fork_rng():
                torch.manual_seed(self.seed * 100_003 + self.updates)
                learner_group.update(
                    episodes=episodes,
                    timesteps={"num_env_steps_sampled_lifetime": self.env_steps},
                    num_epochs=self.settings.num_epochs,
                    minibatch_size=self.settings.minibatch_size or steps + len(episodes),
                )
        finally:
            torch.set_num_threads(threads)
            np.random.set_state(numpy_state)
        module.set_state(learner_group.get_weights()[DEFAULT_MODULE_ID])
        self.updates += 1
        if self.constrained:
            self._dual_step(float(np.mean([record["cost"] for record in batch])))

    def _dual_step(self, mean_cost: float) -> None:
        """Dual ascent on ``log_nu`` for ``-nu * mean_cost``: nu grows while the batch's costs
        exceed their limits and shrinks while they are met.

        Adam without momentum (beta1 = 0, beta2 = 0.999, bias-corrected): steps of about
        ``dual_lr`` whatever the costs' scale, reversing as soon as the sign of the mean cost
        flips. The constrained-RL paper used Adam (lr 1) over thousands of updates; a search has tens, so a
        multiplier that lags behind the costs by several updates would cost trials (our choice).
        """
        v, t = self.dual_moments
        grad = -mean_cost * _sigmoid(self.log_nu)  # d(-softplus(x) * c)/dx
        t += 1
        v = 0.999 * v + 0.001 * grad * grad
        self.log_nu -= self.settings.dual_lr * grad / (math.sqrt(v / (1 - 0.999**t)) + 1e-8)
        self.dual_moments = (v, t)

    def _policy(self) -> tuple:
        """The learner group and sampling module, built on first use (and after unpickling)."""
        if self._engine is None:
            from prunetune.search.searchers._policy import build_engine

            one_step = self.settings.episode == "one_step"
            dims = (ONE_STEP_FEATURES, len(self.space)) if one_step else (GROUP_FEATURES, 1)
            self._engine = build_engine(self.settings, dims, self.seed, self._learner_state)
        return self._engine

    # -- state -----------------------------------------------------------------------------
    def _learner_snapshot(self) -> dict | None:
        return self._engine[0].get_state() if self._engine is not None else self._learner_state

    def extra_state(self) -> dict[str, Any]:
        return {
            "rl": {
                "rng": self.rng.bit_generator.state,
                "updates": self.updates,
                "suggested": self.suggested,
                "env_steps": self.env_steps,
                "max_trials": self.max_trials,
                "constrained": self.constrained,
                "log_nu": self.log_nu,
                "dual_moments": self.dual_moments,
                "rollouts": dict(self.rollouts),
                "ready": list(self.ready),
                "fidelities": {f: list(v) for f, v in self.fidelities.items()},
                "learner": self._learner_snapshot(),
                "prober": self.prober.get_state() if self.prober is not None else None,
                "prior": self.prior,
            }
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        rl = state["rl"]
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = rl["rng"]
        for name in ("updates", "suggested", "env_steps", "max_trials", "constrained", "log_nu", "dual_moments"):
            setattr(self, name, rl[name])
        self.rollouts, self.ready = dict(rl["rollouts"]), list(rl["ready"])
        self.fidelities = {int(f): list(v) for f, v in rl.get("fidelities", {}).items()}
        self._learner_state, self._engine = rl["learner"], None
        if self.prober is not None and rl.get("prober") is not None:
            self.prober.set_state(rl["prober"])
        if rl.get("prior") is not None:
            self._set_prior(rl["prior"])

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_learner_state"], state["_engine"] = self._learner_snapshot(), None
        return state
