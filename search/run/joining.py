"""Joining a Ray cluster, or starting a private local one: what ``tuner.start`` and the device
check before any write (:mod:`.devices`) both call. A user's plug-in modules travel to the
workers as a ``py_modules`` runtime env.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from prunetune.budgets import Budget
from prunetune.budgets.errors import ConfigError
from prunetune.search.config import SearchConfig
from prunetune.search.store.trials import last_line


def init_ray(
    address: str | None,
    num_cpus: int | None = None,
    budgets: Sequence[Budget] = (),
    plugins: Sequence[str] = (),
    *,
    quiet: bool = False,
) -> None:
    """Join ``address`` (refused in one line when nothing answers there within
    ``resources.CONNECT_TIMEOUT_S``), or start a private local Ray on the loopback interface.

    On a joined cluster the modules of the ``budgets``' user cost functions and of the other
    ``plugins`` (``module:attribute`` paths, e.g. a user searcher) travel to the workers
    (:func:`plugin_runtime_env`), and workers' log lines reach this console only with
    ``--verbose``, as on a local Ray (``console.set_mode``). ``quiet`` leaves out Ray's own
    "connecting" lines, for a join made while checking the config (whose refusal is one line)."""
    import ray

    from prunetune.search.run.console import mode
    from prunetune.search.run.resources import check_address

    if ray.is_initialized():
        return
    if address:
        check_address(address)
        runtime_env = plugin_runtime_env([*(b.cost for b in budgets), *plugins])
        try:
            extra = {"logging_level": logging.WARNING} if quiet else {}
            ray.init(address=address, log_to_driver=mode() == "verbose", runtime_env=runtime_env, **extra)
        except ConnectionError as err:  # e.g. the port answers but is no Ray cluster
            raise ConfigError(
                f"could not join the Ray cluster at --address {address!r}: {last_line(str(err))}"
            ) from None
        return
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, configure_logging=False)


def plugins_of(config: SearchConfig) -> list[str]:
    """The ``module:attribute`` paths of ``config``'s plug-ins other than cost functions: a
    user searcher (``searcher: mypkg.search:MySearcher``)."""
    return [config.searcher.name] if ":" in config.searcher.name else []


def plugin_runtime_env(names: Sequence[str]) -> dict[str, list[str]] | None:
    """Ray's ``runtime_env`` that ships the folders or files of the user modules ``names``
    refer to (``mypkg.meters:energy`` ships the ``mypkg`` folder found here) as
    ``py_modules``; None when none names a module the workers lack (built-in cost names,
    installed packages). A searcher runs in the driver, but a driver on the cluster (a
    ``ray://`` address) unpickles it there."""
    from prunetune.budgets.registry import source_path

    paths = sorted({str(p) for name in names if ":" in name and (p := source_path(name)) is not None})
    return {"py_modules": paths} if paths else None
