"""Search, then confirm: any searcher's best profiles fine-tuned again at full length.

Short trials rank profiles cheaply but noisily; what a user deploys is a profile fine-tuned at
length. :class:`ConfirmingSearcher` wraps the search's searcher: it passes through the first
``trials`` suggestions (or fewer, if the searcher finishes), waits for them, then proposes the
``top`` best feasible profiles of each level again, once per training seed, with
``finetune_steps`` set to the confirmation length and a ``confirm`` entry (the search trial it
confirms, the seed offset) that makes the trial evaluate on the test split too. Ranking uses
validation accuracy only; trials a scheduler stopped early rank below those that ran to the end.
The confirmations are trials of the same Tune experiment, so they resume and are tracked like
any other.

With ``uniform``, each level's uniform profile (:func:`uniform_reference`) is confirmed beside
them in the same way, its ``confirm`` entry marked ``reference: uniform``: the yardstick the
search's confirmed profiles are read against (it never enters the frontier).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from prunetune.budgets import report as R
from prunetune.budgets.report import TrialReport
from prunetune.search.searchers.base import ProfileSearcher
from prunetune.search.space import ProfileSpace


class ConfirmingSearcher(ProfileSearcher):
    """``inner``'s first ``trials`` suggestions, then ``top`` confirmations per level and seed.

    ``levels`` are relative costs of ``cost`` (a result's ``rel/<cost>``); None: one level,
    every feasible trial.
    """

    registry_name = "confirm"

    def __init__(
        self,
        inner: ProfileSearcher,
        *,
        trials: int,
        top: int,
        steps: int,
        seeds: int = 1,
        levels: Sequence[float] | None = None,
        cost: str = "macs",
        uniform: bool = False,
    ):
        super().__init__(inner.space, seed=inner.seed, metric=inner.metric, mode=inner.mode)
        self.inner, self.trials, self.top, self.steps, self.seeds = inner, trials, top, steps, seeds
        self.levels, self.cost, self.uniform = (list(levels) if levels else None), cost, uniform
        self.suggested = 0  # search trials suggested
        self.inner_finished = False
        self.results: dict[str, dict[str, Any]] = {}  # search trial -> {"profile", "metrics"}
        self.queue: list[dict[str, Any]] | None = None  # confirmations not yet suggested

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        self.inner.set_search_properties(metric, mode, config, **{**spec, "num_samples": self.trials})
        self.metric, self.mode = self.inner.metric, self.inner.mode
        return True

    # -- the two phases --------------------------------------------------------------------
    def suggest(self, trial_id: str) -> dict | None | str:
        if not self.inner_finished and self.suggested < self.trials:
            config = self.inner.suggest(trial_id)
            if config is None:
                return None
            if config != self.FINISHED:
                self.suggested += 1
                self._keep_pending(trial_id, config)
                return config
            self.inner_finished = True
        if self.queue is None:
            if any(tid in self.inner.pending for tid in self.pending):
                return None  # confirm the best of every search trial, not of the first ones
            self.queue = self._confirmations()
        if not self.queue:
            return self.FINISHED
        config = self.queue.pop(0)
        self._keep_pending(trial_id, config)
        return config

    def observe(self, trial_id: str, config: dict[str, Any], result: dict | None, error: bool) -> None:
        if "confirm" in config:
            return
        self.inner.on_trial_complete(trial_id, result=result, error=error)
        if result and not error:
            keep = {k: v for k, v in result.items() if isinstance(v, (int, float, bool)) and not isinstance(v, str)}
            self.results[trial_id] = {"profile": dict(config["profile"]), "metrics": keep}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.inner.pending:
            self.inner.on_trial_result(trial_id, result)

    def _confirmations(self) -> list[dict[str, Any]]:
        chosen = select_top(self.results, self.top, self.levels, self.cost, self.mode or "max")
        queue = [
            {
                "profile": self.results[tid]["profile"],
                R.FINETUNE_STEPS: self.steps,
                "confirm": {"source": tid, "seed": seed},
            }
            for tid in chosen
            for seed in range(self.seeds)
        ]
        if self.uniform:
            for level in self.levels or [None]:
                source = "uniform" if level is None else f"uniform@{level:g}"
                profile = uniform_reference(self.space, self.cost, level)
                queue += [
                    {
                        "profile": profile,
                        R.FINETUNE_STEPS: self.steps,
                        "confirm": {"source": source, "seed": seed, R.REFERENCE: "uniform"},
                    }
                    for seed in range(self.seeds)
                ]
        return queue

    # -- state -----------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        return {
            "confirm": {
                "suggested": self.suggested,
                "inner_finished": self.inner_finished,
                "results": self.results,
                "queue": self.queue,
                "inner": self.inner.get_state(),
            }
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        mine = state["confirm"]
        self.suggested, self.inner_finished = mine["suggested"], mine["inner_finished"]
        self.results, self.queue = dict(mine["results"]), mine["queue"]
        self.inner.set_state(mine["inner"])


def uniform_reference(space: ProfileSpace, cost: str, level: float | None) -> dict[str, float]:
    """The uniform profile of ``level`` (relative ``cost``; None: the budgets alone): every group
    at the highest one keep ratio that meets the analytic budgets and the level on the exact
    cost model, as ``searcher: uniform`` places it (budgets only a trial measures are not
    looked at: the confirmation trial reports whether it meets them)."""
    from prunetune.search.searchers._one_knob import analytic_knob
    from prunetune.search.searchers.uniform import UniformSearcher

    uniform = UniformSearcher(space)
    low, high = uniform.knob_range()
    return uniform.family(analytic_knob(space, uniform.family, low, high, cost, level))


def select_top(
    results: dict[str, dict[str, Any]], top: int, levels: Sequence[float] | None, cost: str, mode: str = "max"
) -> list[str]:
    """The trial ids of the ``top`` best feasible results per level (relative ``cost`` at most
    the level), best first, each profile once: trials that ran to the end before those a
    scheduler stopped, then by accuracy."""
    sign = 1.0 if mode == "max" else -1.0

    def rank(tid: str) -> tuple:
        report = reports[tid]
        return (report.done, sign * report.accuracy if math.isfinite(report.accuracy) else -math.inf, tid)

    reports = {tid: TrialReport.read(r["metrics"]) for tid, r in results.items() if R.is_finished(r["metrics"])}
    feasible = [tid for tid, report in reports.items() if report.feasible]
    chosen: list[str] = []
    for level in levels or [None]:
        within = [tid for tid in feasible if level is None or reports[tid].relative.get(cost, math.inf) <= level + 1e-9]
        seen = {tuple(sorted(results[tid]["profile"].items())) for tid in chosen}
        picked = 0
        for tid in sorted(within, key=rank, reverse=True):
            key = tuple(sorted(results[tid]["profile"].items()))
            if picked == top:
                break
            if key in seen:
                continue
            seen.add(key)
            chosen.append(tid)
            picked += 1
    return chosen
