"""``prunetune models [PATTERN]``: list registered model names."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    parser = sub.add_parser("models", help="list model names (CIFAR-style and torchvision)")
    parser.add_argument("pattern", nargs="?", help="a glob such as 'resnet*'")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from prunetune.budgets.errors import ConfigError
    from prunetune.trainables import model_names

    names = model_names(args.pattern)
    if not names:
        raise ConfigError(f"no model name matches {args.pattern!r}; `prunetune models` lists all of them")
    print("\n".join(names))
    return 0
