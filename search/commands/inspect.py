"""``prunetune inspect MODEL``: a model's prunable groups, MACs and parameters."""

from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    parser = sub.add_parser("inspect", help="print a model's prunable groups, MACs and parameters")
    parser.add_argument("model", help="a registry name, e.g. resnet20 or resnet18 (see `prunetune models`)")
    parser.add_argument("--input-size", type=int, default=32)
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from prunetune.budgets import get_cost
    from prunetune.trainables import build_model, find_groups
    from prunetune.trainables.tracing import TracingError

    model = build_model(args.model, num_classes=args.num_classes, input_size=args.input_size, width=args.width)
    example = torch.randn(1, 3, args.input_size, args.input_size)
    try:
        groups = find_groups(model, example)
    except TracingError as err:
        raise TracingError(f"{args.model}: {err}") from None
    report = {
        "model": args.model,
        "input_size": args.input_size,
        "num_classes": args.num_classes,
        "macs": get_cost("macs")(model, example),
        "params": get_cost("params")(model, example),
        "groups": [{"name": g.name, "channels": g.channels, "modules": list(g.modules)} for g in groups],
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"{args.model} at {args.input_size}px, {args.num_classes} classes: {report['macs']:,.0f} MACs, "
        f"{report['params']:,.0f} parameters, {len(groups)} prunable groups"
    )
    for g in groups:
        print(f"  {g.name:<40} {g.channels:>6} channels  ({len(g.modules)} coupled layers)")
    return 0
