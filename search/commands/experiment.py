"""``prunetune experiment criteria|transfer CONFIG``: the third seed's experiments, with a report."""

from __future__ import annotations

import argparse

from prunetune.search.commands import add_config_args, local_ray_env, named


def register(sub) -> None:
    parser = sub.add_parser("experiment", help="run a seed experiment (criteria, transfer) and write its report")
    kinds = parser.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")
    criteria = kinds.add_parser("criteria", help="the same profiles pruned with l1, l2, random, bn_scale over seeds")
    add_config_args(criteria)
    criteria.add_argument("--criteria", default="l1,l2,random,bn_scale", help="comma-separated criteria (default %(default)s)")
    criteria.add_argument("--seeds", type=int, default=3, help="seeds per (profile, criterion) (default 3)")
    _common(criteria, profiles=3)
    criteria.set_defaults(func=run_criteria)
    transfer = kinds.add_parser("transfer", help="sampled profiles on two data sets: rank correlation and top-k placement")
    add_config_args(transfer)
    transfer.add_argument("--other", help="the second data set (default shapes, or digits when the config's is shapes)")
    transfer.add_argument("--top", type=int, default=3, help="k of the top-k placement (default 3)")
    transfer.add_argument("--no-uniform", action="store_true", help="leave out the uniform baseline profiles")
    _common(transfer, profiles=12)
    transfer.set_defaults(func=run_transfer)


def _common(parser, profiles: int) -> None:
    parser.add_argument("--profiles", type=int, default=profiles, help=f"profiles to draw from the space (default {profiles})")
    parser.add_argument("--profile", action="extend", nargs="+", default=[], metavar="FILE", help="library profiles instead of drawing")
    parser.add_argument("--name", help="results folder name (default <config name>-<experiment>)")


def _config(args: argparse.Namespace):
    from prunetune.search.config import load_config

    config = load_config(args.config, args.set)
    config = named(config, args.name or f"{config.name}-{args.experiment}")
    local_ray_env(config.address)
    return config


def _print_files(outcome) -> None:
    print(f"results:  {outcome.directory}")
    for kind, path in outcome.files.items():
        print(f"report {kind}: {path}")


def run_criteria(args: argparse.Namespace) -> int:
    config = _config(args)
    from prunetune.search.reproduce import CriteriaSettings, run_criteria as run
    from prunetune.search.reproduce.common import pm
    from prunetune.search.reproduce.criteria import METRICS, verdict

    criteria = tuple(c.strip() for c in args.criteria.split(",") if c.strip())
    outcome = run(config, CriteriaSettings(criteria, args.seeds, args.profiles, tuple(args.profile)))
    print()
    print(f"{'criterion':<10} {'after pruning':>18} {'after fine-tune':>18}")
    for criterion, stats in outcome.summary.items():
        cells = [pm(*stats[m]) if m in stats else "-" for m in METRICS]
        print(f"{criterion:<10} {cells[0]:>18} {cells[1]:>18}")
    print(verdict(outcome.summary))
    _print_files(outcome)
    return 0


def run_transfer(args: argparse.Namespace) -> int:
    config = _config(args)
    from prunetune.search.reproduce import TransferSettings, run_transfer as run

    settings = TransferSettings(args.other, args.profiles, args.top, not args.no_uniform, tuple(args.profile))
    outcome = run(config, settings)
    a, b = outcome.datasets
    stats = outcome.stats
    print()
    print(f"Spearman rank correlation {a} vs {b}: {stats['spearman']:.3f} (p {stats['p_value']:.3g}, n {stats['profiles']}); "
          f"given MACs: {stats['partial_spearman_given_macs']:.3f}")
    for direction, places in stats["placement"].items():
        print(f"top-{stats['top']} {direction}: ranks " + ", ".join(f"{p['rank_target']:g}" for p in places))
    _print_files(outcome)
    return 0
