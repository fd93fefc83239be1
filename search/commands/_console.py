"""What ``search`` and ``resume`` print around a run, and the exit code it ends with.

- before: the dense model's accuracy and costs (every figure is read against it);
- during: the live view of :mod:`prunetune.search.run.console` (``--verbose``: Tune's own
  output; ``--quiet``: nothing until the result);
- after: the frontier table with its dense row (marked partial after Ctrl-C), each errored
  trial, every file written. Exit 0; 130 after Ctrl-C and 143 after SIGTERM (each with how to
  resume); 1 when no trial finished (a search with nothing to show failed).
"""

from __future__ import annotations

import sys

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT; SIGTERM gives 128 + 15 = 143


def add_console_args(parser) -> None:
    loud = parser.add_mutually_exclusive_group()
    loud.add_argument("--verbose", action="store_true", help="show Ray Tune's own progress tables and logs")
    loud.add_argument("--quiet", action="store_true", help="print only the result (no live view)")


def start_console(args) -> None:
    """Select the console mode of ``args``; before Ray runs."""
    from prunetune.search.run.console import set_mode

    set_mode("verbose" if args.verbose else "quiet" if args.quiet else "live")


def reference(prepared):
    """The dense model and budgets of ``prepared``'s search (see ``run.tuner.reference``)."""
    from prunetune.search.run.tuner import reference as of

    return of(prepared)


def print_dense(prepared) -> None:
    from prunetune.search.config import frontier_costs
    from prunetune.search.run.console import mode
    from prunetune.search.store.dense import describe_dense

    if mode() != "quiet":
        costs = dict.fromkeys([*frontier_costs(prepared.config), "macs", "params"])
        print(describe_dense(reference(prepared), list(costs)))


def exit_code(prepared, outcome) -> int:
    """0, or 130 after Ctrl-C and 143 after SIGTERM (saying how to resume), or 1 when no trial
    finished."""
    import signal

    from prunetune.search.run.console import interrupting_signal, was_interrupted

    if was_interrupted():
        signum = interrupting_signal()
        by = "" if signum == signal.SIGINT else f" by {signal.Signals(signum).name}"
        print(f"interrupted{by}: resume with `prunetune resume {prepared.experiment_dir}`", file=sys.stderr)
        return 128 + signum
    if not outcome.records:
        why = f"all {len(outcome.errors)} trials errored" if outcome.errors else "no trial finished"
        print(f"prunetune: search failed: {why}; see the errors above", file=sys.stderr)
        return EXIT_FAILED
    return 0
