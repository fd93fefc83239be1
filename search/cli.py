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
import pkgutil
import sys
from collections.abc import Sequence

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    import prunetune.search.commands as commands

    parser = argparse.ArgumentParser(prog="prunetune", description="Search channel-pruning profiles on Ray Tune.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"prunetune.search.commands.{info.name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from prunetune.budgets.errors import PrunetuneError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except PrunetuneError as err:
        print(f"prunetune: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("prunetune: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
