"""``prunetune models [PATTERN]``: list registered model names."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    parser = sub.add_parser("models", help="list model names (CIFAR-style and torchvision)")
    parser.add_argument("pattern", nargs="?", help="a glob such as 'resnet*'")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from prunetune.trainables import model_names

    print("\n".join(model_names(args.pattern)))
    return 0
