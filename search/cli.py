"""The ``prunetune`` command line.

Each subcommand lives in its own module under ``search/commands/`` and registers itself with
``register(subparsers)``; this module only builds the parser and maps errors to exit codes.
Heavy modules (torch, Ray, MLflow) are imported inside the commands, so ``prunetune --help``
answers at once. A user's mistake (any :class:`PrunetuneError`) prints one line on stderr and
exits with code 2; no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

EXIT_USAGE = 2
EXIT_FAILED = 1


def build_parser() -> argparse.ArgumentParser:
    import prunetune.search.commands as commands

    parser = argparse.ArgumentParser(prog="prunetune", description="Search channel-pruning profiles on Ray Tune.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"prunetune.search.commands.{info.name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from prunetune.budgets.errors import STORAGE_ERRNOS, MachineError, PrunetuneError, StorageError, storage_message

    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()  # inside the try: a reader that left (| head) fails here, not at exit
        return code
    except (StorageError, MachineError) as err:
        print(f"prunetune: error: {err}", file=sys.stderr)
        return EXIT_FAILED
    except PrunetuneError as err:
        print(f"prunetune: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("prunetune: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `prunetune models | head`: the reader left; nothing more to say
        _silence_stdout()
        return 0
    except OSError as err:  # after BrokenPipeError, which is one too
        if err.errno not in STORAGE_ERRNOS:
            raise
        print(f"prunetune: error: {storage_message(err)}", file=sys.stderr)
        return EXIT_FAILED


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so flushing it at exit raises no second BrokenPipeError."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
