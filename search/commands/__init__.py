"""CLI subcommands: one module each, exposing ``register(subparsers)``.

A module here sets ``func`` on its subparser; ``prunetune.search.cli`` discovers every public module of
this package, so adding a command is adding a file.
"""

from __future__ import annotations

import os

__all__ = ["add_config_args", "local_ray_env", "named", "print_results"]


def local_ray_env(address: str | None) -> None:
    """Environment for a private local Ray; must run before Ray is imported.

    Keeps the node on the loopback interface and token auth off (an earlier ``ray start`` may
    have left ``~/.ray/auth_token``, which would switch auth on for this driver only).
    """
    if not address:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # A trial's error reaches the user once, as Tune's one line and error.txt; a run stopped by
    # a failure (a full disk) must not add Ray's "Unhandled error" traceback per in-flight trial.
    os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")


def named(config, name: str):
    """``config`` under the experiment name ``name`` (a command's ``--name``), checked like a
    name in the YAML: one folder under storage_path, never a path out of it."""
    from prunetune.budgets.errors import ConfigError
    from prunetune.search.config import parse_config

    try:
        return parse_config({**config.model_dump(mode="json"), "name": name})
    except ConfigError as err:
        raise ConfigError(f"--name {name!r}: {str(err).split(': ', 1)[-1]}") from None


def add_config_args(parser) -> None:
    parser.add_argument("config", nargs="?", help="YAML search config (omit for the embedded defaults)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (repeatable), e.g. --set trials=8",
    )


def print_results(errors: dict, directory, files: dict, label: str) -> None:
    """The end of a command's output: errored trials with their reasons, the results folder,
    and every file written (``label`` names them: "frontier", "report")."""
    for name, reason in errors.items():
        print(f"  errored {name}: {reason}")
    print()
    print(f"results:  {directory}")
    for kind, path in files.items():
        print(f"{label} {kind}: {path}")
