"""``prunetune resume RESULTS_DIR``: continue an interrupted search where it stopped.

Everything comes from the experiment folder given (the manifest and Tune's own state), never
from a possibly edited YAML nor the name the manifest recorded: a renamed or moved folder
resumes in place. Finished trials stay finished, unfinished ones restart from their last
checkpoint, and the searcher continues from its saved state. The folder's lock is held
throughout (a driver that died holding it is taken over).
"""

from __future__ import annotations

import argparse

from prunetune.search.commands import local_ray_env
from prunetune.search.commands._console import add_console_args, exit_code, start_console


def register(sub) -> None:
    parser = sub.add_parser("resume", help="continue an interrupted search from its results folder")
    parser.add_argument("results", help="the experiment folder `prunetune search` printed as 'results:'")
    parser.add_argument(
        "--address", help="Ray cluster to join (default: the one the search was started on, else a private local Ray)"
    )
    parser.add_argument(
        "--trust",
        action="store_true",
        help="resume an experiment folder owned by another user (resuming unpickles its state)",
    )
    add_console_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from prunetune.budgets.errors import ConfigError
    from prunetune.search.store.manifest import check_unchanged, read_manifest
    from prunetune.search.store.trust import check_owner

    manifest = read_manifest(args.results)
    check_owner(manifest.directory, trust=args.trust)  # before Tune unpickles a byte of it
    check_unchanged(manifest)
    if _finished(manifest):
        return 0
    address = args.address or manifest.config.address
    local_ray_env(address)
    start_console(args)
    from ray.tune import Tuner

    from prunetune.search import ray_compat
    from prunetune.search.commands.search import print_outcome
    from prunetune.search.run.prepare import from_manifest
    from prunetune.search.run.tuner import run_search
    from prunetune.search.store.lock import ExperimentLock

    ray_compat.new_trials_follow_a_moved_experiment()  # a renamed folder gets its own new trials
    with ExperimentLock(manifest.directory, "prunetune resume"):
        prepared = from_manifest(manifest, address=address)
        if not Tuner.can_restore(prepared.experiment_uri):
            raise ConfigError(
                f"{prepared.experiment_uri} has no Tune state to resume (the search stopped before its "
                f"first snapshot); start it again with `prunetune search` under a new name"
            )
        config = prepared.config
        print(f"resuming {config.name}: {config.trials} trials with the {config.searcher.name} searcher")
        outcome = run_search(prepared)
    print_outcome(prepared, outcome)
    return exit_code(prepared, outcome)


def _finished(manifest) -> bool:
    """Say so (without starting Ray) when the search has nothing left to run."""
    from prunetune.search.config import is_uri
    from prunetune.search.run.methods import get_method
    from prunetune.search.store.progress import read_progress

    if is_uri(manifest.config.storage_path):
        return False  # trials in object storage: Tune's own restore decides
    progress = read_progress(manifest.directory, get_method(manifest.config.method).trial_count(manifest.config))
    if not progress.finished or progress.having("errored"):
        return False
    print(
        f"search {progress.name} is finished ({len(progress.having('done'))} trials done): nothing to resume; "
        f"its frontier is in {progress.directory}"
    )
    return True
