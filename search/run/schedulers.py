"""Multi-fidelity scheduling on Ray Tune's own schedulers (``scheduler:`` in a config).

Search trials report their validation accuracy every ``scheduler.report_every`` fine-tune
steps with ``rung_steps``, the schedulers' clock; Tune's ASHA or HyperBand compares trials at
rungs of that clock and stops the weakest. Confirmation trials report no ``rung_steps``, so no
scheduler ever stops them. ``fifo`` runs every trial to the end.
"""

from __future__ import annotations

from collections.abc import Callable

from prunetune.budgets import report as R
from prunetune.budgets.errors import ConfigError
from prunetune.budgets.registry import Registry
from prunetune.search.config import SearchConfig

TIME_ATTR = R.RUNG_STEPS

SCHEDULERS: Registry[Callable[[SearchConfig], object | None]] = Registry(
    "scheduler", hint=" (config key `scheduler.name`)"
)


@SCHEDULERS.register("fifo")
def _fifo(config: SearchConfig) -> None:
    return None  # Tune's default: every trial runs to the end


@SCHEDULERS.register("asha")
def _asha(config: SearchConfig):
    from ray.tune.schedulers import ASHAScheduler

    s = config.scheduler
    return ASHAScheduler(
        time_attr=TIME_ATTR,
        max_t=config.finetune.steps,
        grace_period=s.grace_steps,
        reduction_factor=s.reduction_factor,
        brackets=s.brackets,
    )


@SCHEDULERS.register("hyperband")
def _hyperband(config: SearchConfig):
    from ray.tune.schedulers import HyperBandScheduler

    s = config.scheduler
    return HyperBandScheduler(time_attr=TIME_ATTR, max_t=config.finetune.steps, reduction_factor=s.reduction_factor)


def check_scheduler(config: SearchConfig) -> None:
    """A ConfigError for a scheduler that cannot work with ``config`` (before any write; a
    fine-tune given in epochs once ``prepare`` has resolved it to steps)."""
    s = config.scheduler
    SCHEDULERS.get(s.name)
    if config.finetune.steps is None:
        return  # finetune.epochs: checked again when prepare knows the steps
    if s.name != "fifo" and s.grace_steps >= config.finetune.steps:
        raise ConfigError(
            f"scheduler.grace_steps={s.grace_steps} is not below finetune.steps={config.finetune.steps}"
            f"{_in_epochs(config)}: "
            "no trial could be stopped early; "
            f"lower grace_steps (e.g. {max(1, config.finetune.steps // 9)}) or use scheduler fifo"
        )


def _in_epochs(config: SearchConfig) -> str:
    epochs = config.finetune.epochs
    return "" if epochs is None else f" (finetune.epochs={epochs:g})"


def build_scheduler(config: SearchConfig):
    """The Tune scheduler of ``config`` (None: Tune's FIFO)."""
    return SCHEDULERS.get(config.scheduler.name)(config)
