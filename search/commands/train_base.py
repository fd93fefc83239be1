"""``prunetune train-base CONFIG``: train (or find) the dense base model of a config."""

from __future__ import annotations

import argparse
from pathlib import Path

from prunetune.search.commands import add_config_args


def register(sub) -> None:
    parser = sub.add_parser("train-base", help="train and save the dense base model of a config")
    add_config_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from prunetune.search.config import load_config
    from prunetune.search.setup import specs, with_steps
    from prunetune.trainables import ensure_base_checkpoint

    config = with_steps(load_config(args.config, args.set))  # base.epochs: the same steps a search trains
    model, data, recipe = specs(config)
    directory = Path(config.storage_path).resolve() / "base"
    path = ensure_base_checkpoint(model, data, recipe, directory, seed=config.seed)
    from prunetune.search.store.dense import dense_accuracy

    accuracy = dense_accuracy(path)
    print(f"base checkpoint: {path}")
    print(
        f"validation accuracy: {accuracy:.4f}"
        if accuracy is not None
        else "validation accuracy: not recorded in the checkpoint"
    )
    return 0
