"""``prunetune apply --profile FILE --config CONFIG``: library profiles on another model or data set."""

from __future__ import annotations

import argparse

from prunetune.search.commands import local_ray_env, named, print_results
from prunetune.search.commands._console import add_console_args, start_console


def register(sub) -> None:
    parser = sub.add_parser(
        "apply",
        help="prune the config's base model with library profiles, fine-tune and measure (one Tune trial each)",
        description="Train or load the config's base model (as `prunetune search` does), prune it with each "
        "--profile, fine-tune with the config's finetune recipe and report accuracy and costs.",
    )
    parser.add_argument(
        "--profile",
        action="extend",
        nargs="+",
        required=True,
        metavar="FILE",
        help="library profile file(s); repeatable",
    )
    parser.add_argument(
        "--config", metavar="CONFIG", help="YAML search config: model, data, criterion, finetune, budgets"
    )
    parser.add_argument("--name", help="results folder name (default <config name>-apply)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (repeatable)"
    )
    add_console_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from prunetune.search.config import load_config

    config = load_config(args.config, args.set)
    config = named(config, args.name or f"{config.name}-apply")
    local_ray_env(config.address)
    start_console(args)  # the live line, not Tune's boxed tables (--verbose brings them back)
    from prunetune.search.artifacts.apply import apply_profiles, format_applied, load_profiles

    profiles = load_profiles(args.profile)  # wrong-type fields are one line, before any model is built
    outcome = apply_profiles(config, profiles)
    print()
    print(format_applied(outcome.rows, config.data.name))
    print_results(outcome.errors, outcome.experiment_dir, outcome.files, "report")
    return 0 if not outcome.errors else 1
