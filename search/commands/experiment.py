"""``prunetune experiment criteria|transfer CONFIG``: the out-of-the-box profiles paper's two
experiments (Venkatesan et al., "Out-of-the-box channel pruned networks", arXiv:2004.14584), each
with a report: does the channel-selection criterion matter once the profile is fixed, and do
good profiles on one data set stay good on another."""

from __future__ import annotations

import argparse

from prunetune.search.commands import add_config_args, local_ray_env, named


def register(sub) -> None:
    parser = sub.add_parser(
        "experiment",
        help="does the criterion matter at a fixed profile (criteria)? do profiles transfer between data sets "
        "(transfer)? writes a report",
        description="Test a claim of the out-of-the-box profiles paper (Out-of-the-box channel pruned networks, "
        "arXiv:2004.14584) on your config's model and data, and write a report (Markdown, JSON, PNG; "
        "also on the MLflow parent run). Results go to <storage_path>/<config name>-<experiment>.",
    )
    kinds = parser.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")
    criteria = kinds.add_parser(
        "criteria",
        help="does the channel-selection criterion matter once the profile is fixed? (l1 vs l2 vs random vs bn_scale)",
        description="Does the channel-selection criterion matter once the profile is fixed? The same profiles are "
        "pruned from one base model with each criterion (l1, l2, random, bn_scale by default) over "
        "several seeds and fine-tuned; the report compares random with the best metric criterion.",
    )
    add_config_args(criteria)
    criteria.add_argument(
        "--criteria", default="l1,l2,random,bn_scale", help="comma-separated criteria (default %(default)s)"
    )
    criteria.add_argument("--seeds", type=int, default=3, help="seeds per (profile, criterion) (default 3)")
    _common(criteria, profiles=3)
    criteria.set_defaults(func=run_criteria)
    transfer = kinds.add_parser(
        "transfer",
        help="do good profiles on one data set stay good on another? (rank correlation, top-k placement)",
        description="Do good profiles on one data set stay good on another? Sampled profiles (and the uniform ones) "
        "are pruned and fine-tuned on the config's data set and a second one; the report gives their "
        "rank correlation, where each data set's top-k land on the other, and which beat uniform.",
    )
    add_config_args(transfer)
    transfer.add_argument("--other", help="the second data set (default shapes, or digits when the config's is shapes)")
    transfer.add_argument(
        "--other-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a key of the second data set's section (repeatable), e.g. --other-set options.n_train=300 "
        "or --other-set root=/data/cifar10; it takes none of the config's root or options",
    )
    transfer.add_argument("--top", type=int, default=3, help="k of the top-k placement (default 3)")
    transfer.add_argument("--no-uniform", action="store_true", help="leave out the uniform baseline profiles")
    _common(transfer, profiles=12)
    transfer.set_defaults(func=run_transfer)


def _common(parser, profiles: int) -> None:
    parser.add_argument(
        "--profiles", type=int, default=profiles, help=f"profiles to draw from the space (default {profiles})"
    )
    parser.add_argument(
        "--profile", action="extend", nargs="+", default=[], metavar="FILE", help="library profiles instead of drawing"
    )
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
    from prunetune.search.reproduce import CriteriaSettings
    from prunetune.search.reproduce import run_criteria as run
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
    from prunetune.search.reproduce import TransferSettings
    from prunetune.search.reproduce import run_transfer as run
    from prunetune.search.reproduce.transfer import noise_lines, saturation_lines

    settings = TransferSettings(
        args.other, args.profiles, args.top, not args.no_uniform, tuple(args.profile), tuple(args.other_set)
    )
    outcome = run(config, settings)
    a, b = outcome.datasets
    stats = outcome.stats
    print()
    print(
        f"Spearman rank correlation {a} vs {b}: {stats['spearman']:.3f} "
        f"(p {stats['p_value']:.3g}, n {stats['profiles']}); "
        f"given MACs: {stats['partial_spearman_given_macs']:.3f}"
    )
    for direction, places in stats["placement"].items():
        print(f"top-{stats['top']} {direction}: ranks " + ", ".join(f"{p['rank_target']:g}" for p in places))
    for line in saturation_lines(stats) + noise_lines(stats):
        print(line)
    _print_files(outcome)
    return 0
