"""Search methods by name (``method:`` in a config): how a search's trials are made and read.

- ``search`` (the default): a profile searcher (``searcher:``) proposes one profile per trial;
  each trial prunes the base model to it, fine-tunes briefly and reports once at the end.
- ``taper``: one trial per combination of the taper sweep (``taper.sweep``); each walks down the
  budget levels and every report, with its own checkpoint, is a frontier point (docs/taper.md).

A :class:`Method` says what each trial runs, how Tune makes the trials, how many there are and
which frontier points a finished trial gives; the Tuner assembly
(:func:`~prunetune.search.run.tuner.make_tuner`) is the same for all. A new method is a
subclass registered with ``@METHODS.register(name)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from prunetune.budgets import report as R
from prunetune.budgets.errors import ConfigError
from prunetune.budgets.registry import Registry
from prunetune.search.config import SearchConfig
from prunetune.search.store.frontier import TrialRecord


class Method:
    """How a search runs on Tune. Stateless: one instance serves any number of searches."""

    name = "base"

    def check(self, config: SearchConfig) -> None:
        """Raise a project error for a setting of ``config`` this method cannot run; called
        before anything is written."""

    def trainable(self) -> Callable:
        """The Tune function every trial of this method runs (with a ``setup`` parameter)."""
        raise NotImplementedError

    def trials(self, prepared) -> tuple[dict[str, Any], dict[str, Any]]:
        """Tune's ``param_space`` and the TuneConfig settings that make the trials."""
        raise NotImplementedError

    def trial_count(self, config: SearchConfig) -> int:
        raise NotImplementedError

    def describe(self, config: SearchConfig) -> str:
        """What the search will run, for the line printed before it starts."""
        raise NotImplementedError

    def frontier_cost(self, config: SearchConfig) -> str:
        """The cost key the frontier is drawn against."""
        raise NotImplementedError

    def records(self, result, trial_id: str) -> list[TrialRecord]:
        """The frontier points of one finished Tune result (none for a trial that stopped
        before its final report)."""
        raise NotImplementedError


METHODS: Registry[type[Method]] = Registry("search method", hint=" (config key `method`)")


def get_method(name: str) -> Method:
    """The method registered as ``name``; an unknown name is a ConfigError listing them."""
    return METHODS.get(name)()


def check_config(config: SearchConfig) -> Method:
    """``config``'s method, once the names the config cannot check itself (it sits below these
    registries) are known: the method, the scheduler, and the method's own settings (for
    ``search``, the searcher, a user's ``module:Class`` imported now, and its options).

    Called before a search writes anything and before a resumed one restores Tune's state;
    each mistake is a one-line ConfigError naming the bad value and the valid ones."""
    from prunetune.search.run.schedulers import SCHEDULERS

    method = get_method(config.method)
    SCHEDULERS.get(config.scheduler.name)
    method.check(config)
    return method


@METHODS.register("search")
class ProfileSearch(Method):
    """A searcher's profiles, one trial each, behind Tune's ConcurrencyLimiter."""

    name = "search"

    def check(self, config: SearchConfig) -> None:
        from prunetune.search.run.schedulers import check_scheduler
        from prunetune.search.searchers import get_searcher

        get_searcher(config.searcher.name).parse_options(config.searcher.options)
        check_scheduler(config)
        cost = self.frontier_cost(config)
        if config.confirm.uniform and cost not in ("macs", "params"):
            from prunetune.budgets.spec import cost_functions

            cost_functions(config.budgets)  # a user cost whose module is missing is named as itself, first
            raise ConfigError(
                f"confirm.uniform places the uniform profile on the exact cost model (macs, params), but the frontier "
                f"cost {cost!r} is measured by trials: run `searcher: uniform` for it, or list an analytic budget first"
            )

    def trainable(self) -> Callable:
        from prunetune.trainables import prune_and_finetune

        return prune_and_finetune

    def trials(self, prepared) -> tuple[dict[str, Any], dict[str, Any]]:
        from ray.tune.search import ConcurrencyLimiter

        from prunetune.search.run.schedulers import build_scheduler
        from prunetune.search.run.tune_searcher import TuneSearcher
        from prunetune.search.searchers import ConfirmingSearcher, get_searcher

        config = prepared.config
        searcher = get_searcher(config.searcher.name)(
            prepared.space, seed=config.searcher.seed, **config.searcher.options
        )
        if config.confirm.top:
            confirm = config.confirm
            searcher = ConfirmingSearcher(
                searcher,
                trials=config.trials,
                top=confirm.top,
                steps=confirm.steps,
                seeds=confirm.seeds,
                levels=confirm.levels,
                cost=self.frontier_cost(config),
                uniform=confirm.uniform,
            )
        space = {"model": config.model.name, "data": config.data.name, "criterion": config.prune.criterion}
        limited = ConcurrencyLimiter(TuneSearcher(searcher), max_concurrent=config.concurrency)
        tune_config = {"search_alg": limited, "num_samples": self.trial_count(config)}
        scheduler = build_scheduler(config)
        if scheduler is not None:
            tune_config["scheduler"] = scheduler
        return space, tune_config

    def trial_count(self, config: SearchConfig) -> int:
        """The most trials: the search's, then its confirmations (a searcher may end sooner)."""
        return config.trials + config.confirm.trials

    def describe(self, config: SearchConfig) -> str:
        how = f"{config.trials} trials with the {config.searcher.name} searcher"
        if config.scheduler.name != "fifo":
            how += f", {config.scheduler.name} stopping weak ones from {config.scheduler.grace_steps} steps"
        if config.confirm.top:
            how += (
                f", then the top {config.confirm.top}{' and the uniform profile' if config.confirm.uniform else ''}"
                f" confirmed at {config.confirm.steps} steps x {config.confirm.seeds} seed(s) on the test split"
            )
        return how

    def frontier_cost(self, config: SearchConfig) -> str:
        return config.budgets[0].key if config.budgets else "macs"

    def records(self, result, trial_id: str) -> list[TrialRecord]:
        if not R.is_finished(result.metrics):
            return []
        checkpoint = result.checkpoint.path if result.checkpoint else None
        return [TrialRecord.from_metrics(trial_id, result.metrics, result.config["profile"], checkpoint)]


@METHODS.register("taper")
class TaperSweep(Method):
    """One tapering run per combination of ``taper.sweep``; every level it reports is a point."""

    name = "taper"

    def check(self, config: SearchConfig) -> None:
        if config.scheduler.name != "fifo":
            raise ConfigError(
                f"scheduler {config.scheduler.name!r} stops searched trials at rungs; a taper run reports "
                "once per level: use scheduler fifo with method taper"
            )
        if config.confirm.top:
            raise ConfigError(
                "confirm re-trains a search's best profiles; with method taper set taper.finetune_steps "
                "to the full length instead (each level's point is hardened and fine-tuned)"
            )

    def trainable(self) -> Callable:
        from prunetune.trainables import taper_run

        return taper_run

    def param_space(self, config: SearchConfig) -> dict[str, Any]:
        """``{"taper": options}`` with every swept option a ``tune.grid_search``: one trial
        per combination of the sweep's values."""
        from ray import tune

        from prunetune.trainables import taper_trial_config

        options = config.taper.settings()
        options.update({name: tune.grid_search(list(values)) for name, values in config.taper.sweep.items()})
        return taper_trial_config(config.model.name, config.data.name, options)

    def trials(self, prepared) -> tuple[dict[str, Any], dict[str, Any]]:
        return self.param_space(prepared.config), {
            "num_samples": 1,
            "max_concurrent_trials": prepared.config.concurrency,
        }

    def trial_count(self, config: SearchConfig) -> int:
        return len(list(itertools.product(*config.taper.sweep.values()))) if config.taper.sweep else 1

    def describe(self, config: SearchConfig) -> str:
        return f"{self.trial_count(config)} taper run(s) through levels {list(config.taper.levels)}"

    def frontier_cost(self, config: SearchConfig) -> str:
        return config.taper.cost

    def records(self, result, trial_id: str) -> list[TrialRecord]:
        """One record per level, named ``<trial id>@<level>``, with that report's profile and
        checkpoint."""
        from prunetune.search.tracking.points import point_summaries, read_profile

        reports = [(m, read_profile(c), c.path) for c, m in result.best_checkpoints or [] if R.LEVEL in m]
        return [point.record() for point in point_summaries(trial_id, reports)]
