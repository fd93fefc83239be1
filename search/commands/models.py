"""``prunetune models [PATTERN]``: list model names, ours and torchvision's apart."""

from __future__ import annotations

import argparse

# Torchvision's vision transformers: buildable, but prunetune prunes the channels of CNNs.
TRANSFORMERS = ("vit_", "swin_", "maxvit_")


def register(sub) -> None:
    parser = sub.add_parser("models", help="list model names (CIFAR-style and torchvision)")
    parser.add_argument("pattern", nargs="?", help="a glob such as 'resnet*'")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from prunetune.budgets.errors import ConfigError
    from prunetune.trainables import model_names
    from prunetune.trainables.models import TORCHVISION_PREFIX, is_cifar_model

    names = model_names(args.pattern)
    if not names:
        raise ConfigError(f"no model name matches {args.pattern!r}; `prunetune models` lists all of them")
    ours = [n for n in names if is_cifar_model(n)]
    bare = lambda n: n.removeprefix(TORCHVISION_PREFIX)  # noqa: E731
    transformers = [n for n in names if not is_cifar_model(n) and bare(n).startswith(TRANSFORMERS)]
    theirs = [n for n in names if not is_cifar_model(n) and n not in transformers]
    if ours:
        print("ours (CIFAR-style, any model.width):")
        print("\n".join(f"  {n}" for n in ours))
    if theirs:
        print(f"torchvision (ImageNet CNNs, model.width 1.0; {TORCHVISION_PREFIX}NAME where ours has the name):")
        print("\n".join(f"  {n}" for n in theirs))
    if transformers and args.pattern:  # asked for by name: listed, with what they are
        print("torchvision vision transformers (buildable; prunetune prunes CNN channels):")
        print("\n".join(f"  {n}" for n in transformers))
    elif transformers:
        print(f"(and {len(transformers)} torchvision vision transformers, e.g. `prunetune models 'vit*'`)")
    return 0
