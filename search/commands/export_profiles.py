"""``prunetune export-profiles RESULTS --top K``: a search's best profiles as library files."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    parser = sub.add_parser(
        "export-profiles",
        help="write a search's best profiles as versioned JSON with provenance (the profile library)",
        description="Write the top K feasible trials by accuracy (or, with --frontier, the most accurate "
        "points of the accuracy-vs-cost frontier) as library profiles for `prunetune apply`.",
    )
    parser.add_argument("results", metavar="RESULTS", help="experiment folder, e.g. results/demo")
    parser.add_argument("--top", type=int, default=3, metavar="K", help="how many profiles (default 3)")
    parser.add_argument("--frontier", action="store_true", help="choose among the frontier's points only")
    parser.add_argument("--out", metavar="DIR", help="folder to write (default RESULTS/profiles)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from prunetune.search.artifacts.library import export_profiles, load_profile
    from prunetune.search.store.trials import damaged_trials

    for damage in damaged_trials(args.results):
        print(f"prunetune: warning: {damage.line()}", file=sys.stderr)
    for path in export_profiles(args.results, args.top, args.out, frontier=args.frontier):
        profile = load_profile(path)
        macs = profile.relative.get("macs")
        share = f", {macs:.1%} of dense MACs" if macs is not None else ""
        print(f"{path}  ({profile.accuracy_kind} {profile.accuracy:.4f}{share}, trial {profile.trial_id})")
    return 0
