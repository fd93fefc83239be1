"""The RLlib pieces of the RL searcher: a small policy module with reward and cost value heads,
and the PPO-Lagrangian learner that trains it.

Imported only when an RL searcher first builds its policy (RLlib is a heavy import).

:class:`ConstrainedPolicy` is a ``TorchRLModule``: a Gaussian policy over a bounded ``Box``
(state-dependent mean, state-independent log-std set to ``init_std`` at the start, so the
initial spread is a deliberate choice and not RLlib's default std of 1), a reward value head
(RLlib's ``ValueFunctionAPI``, which PPO's GAE connector uses) and a separate cost value head.

:class:`LagrangianPPOLearner` is RLlib's PPO torch learner with one change, the PPO-Lagrangian
objective of the constrained-RL paper (Malik et al., "Neural network pruning through constrained
reinforcement learning", arXiv:2110.08558): the policy is trained on
``(A_r - nu * A_c) / (1 + nu)`` where ``A_r`` is RLlib's GAE reward advantage and
``A_c = C_t - V_c(s_t)`` the cost advantage with GAE lambda 1 (a Monte-Carlo cost return, as in
the paper), and the cost head is regressed on ``C_t``. Both advantages are standardised (RLlib
standardises ``A_r`` over the batch; we standardise ``A_c`` over the minibatch, by default the
whole batch, so ``nu`` weighs two quantities of one scale; our choice). The episodes carry
``C_t`` and the multiplier ``nu`` at update time as extra model outputs per step.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.env.single_agent_episode import SingleAgentEpisode
from ray.rllib.evaluation.postprocessing import Postprocessing
from torch import nn

COST_TARGETS = "cost_targets"
"""Per-step cost return ``C_t`` (extra model output of each episode step)."""

MULTIPLIER = "multiplier"
"""The Lagrange multiplier ``nu`` used for this update (extra model output of each step)."""


def _mlp(sizes: list[int], out: int, out_scale: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes, sizes[1:]):
        layers += [nn.Linear(a, b), nn.Tanh()]
    head = nn.Linear(sizes[-1], out)
    # A small last layer: the policy starts at its configured mean, values start near 0.
    nn.init.normal_(head.weight, std=out_scale)
    nn.init.zeros_(head.bias)
    return nn.Sequential(*layers, head)


class ConstrainedPolicy(TorchRLModule, ValueFunctionAPI):
    """Gaussian policy with reward and cost value heads.

    ``model_config``: ``hidden`` (layer sizes, default ``[32, 32]``), ``init_std`` (initial
    standard deviation of the raw action), ``init_mean`` (initial mean of the raw action).
    """

    def setup(self) -> None:
        config = self.model_config or {}
        sizes = [self.observation_space.shape[0], *config.get("hidden", [32, 32])]
        act_dim = self.action_space.shape[0]
        self.pi = _mlp(sizes, act_dim, out_scale=0.01)
        with torch.no_grad():
            self.pi[-1].bias.fill_(float(config.get("init_mean", 0.0)))
        self.log_std = nn.Parameter(torch.full((act_dim,), math.log(float(config.get("init_std", 0.6)))))
        if not self.inference_only:
            self.vf = _mlp(sizes, 1, out_scale=0.1)
            self.cf = _mlp(sizes, 1, out_scale=0.1)

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        mean = self.pi(batch[Columns.OBS])
        log_std = self.log_std.expand_as(mean)
        return {Columns.ACTION_DIST_INPUTS: torch.cat([mean, log_std], dim=-1)}

    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> torch.Tensor:
        return self.vf(batch[Columns.OBS]).squeeze(-1)

    def compute_cost_values(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.cf(batch[Columns.OBS]).squeeze(-1)


def _standardise(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    valid = values[mask] if mask is not None else values
    return (values - valid.mean()) / valid.std(unbiased=False).clamp_min(1e-4)


class LagrangianPPOLearner(PPOTorchLearner):
    """PPO's torch learner with the PPO-Lagrangian advantage and a cost value loss."""

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        module = self.module[module_id].unwrapped()
        mask = batch.get(Columns.LOSS_MASK)
        nu = batch[MULTIPLIER]
        cost_values = module.compute_cost_values(batch)
        cost_advantages = _standardise(batch[COST_TARGETS] - cost_values.detach(), mask)
        combined = (batch[Postprocessing.ADVANTAGES] - nu * cost_advantages) / (1.0 + nu)
        loss = super().compute_loss_for_module(
            module_id=module_id,
            config=config,
            batch={**batch, Postprocessing.ADVANTAGES: combined},
            fwd_out=fwd_out,
        )
        cost_loss = (cost_values - batch[COST_TARGETS]).pow(2)
        cost_loss = cost_loss[mask].mean() if mask is not None else cost_loss.mean()
        return loss + config.vf_loss_coeff * cost_loss


def build_engine(settings, dims: tuple[int, int], seed: int, learner_state: dict | None) -> tuple:
    """A local PPO-Lagrangian learner group (no Ray actors) and a synced sampling module.

    ``dims`` are the observation and action sizes; ``settings`` an
    :class:`~prunetune.search.searchers.rl.RLSettings`. Initial weights come from ``seed`` without
    touching the global torch RNG; ``learner_state`` (from ``LearnerGroup.get_state``) is
    loaded into the freshly built group (``Learner.set_state`` may skip weights on a used one).
    Returns ``(learner_group, module, action_distribution_class)``.
    """
    obs_space = gym.spaces.Box(-np.inf, np.inf, (dims[0],), np.float32)
    act_space = gym.spaces.Box(-1.0, 1.0, (dims[1],), np.float32)
    # The raw action space is [-1, 1]: an initial std of init_std of the range is 2 * init_std.
    model = {"hidden": list(settings.hidden), "init_std": 2.0 * settings.init_std, "init_mean": 0.0}
    config = (
        PPOConfig()
        .environment(observation_space=obs_space, action_space=act_space)
        .rl_module(rl_module_spec=RLModuleSpec(module_class=ConstrainedPolicy, model_config=model))
        .learners(num_learners=0, learner_class=LagrangianPPOLearner)
        # No KL penalty: its adaptive coefficient is not part of the learner's state, so a
        # restored search would drift from an uninterrupted one; PPO's clipping remains.
        .training(
            lr=settings.lr,
            gamma=settings.gamma,
            lambda_=settings.gae_lambda,
            clip_param=settings.clip,
            use_kl_loss=False,
        )
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        learner_group = config.build_learner_group()
    if learner_state is not None:
        learner_group.set_state(learner_state)
    module = config.get_rl_module_spec(inference_only=True).build()
    module.set_state(learner_group.get_weights()[DEFAULT_MODULE_ID])
    module.eval()  # only ever samples: no mode switch per action (see RLSearcher._sample)
    return learner_group, module, module.get_exploration_action_dist_cls()


def to_episode(record: dict[str, Any], nu: float, gamma: float) -> SingleAgentEpisode:
    """One finished trial as an RLlib episode: reward and cost at the last step, and per step
    the cost return ``gamma**(T-1-t) * cost`` and the multiplier for the learner."""
    episode = SingleAgentEpisode()
    episode.add_env_reset(observation=record["obs"][0])
    length = len(record["actions"])
    for t in range(length):
        last = t == length - 1
        episode.add_env_step(
            observation=record["obs"][t + 1],
            action=record["actions"][t],
            reward=record["reward"] if last else 0.0,
            terminated=last,
            extra_model_outputs={
                Columns.ACTION_LOGP: record["logp"][t],
                Columns.ACTION_DIST_INPUTS: record["inputs"][t],
                COST_TARGETS: np.float32(gamma ** (length - 1 - t) * record["cost"]),
                MULTIPLIER: np.float32(nu),
            },
        )
    return episode.to_numpy()
