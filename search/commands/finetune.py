"""``prunetune finetune RESULTS --trial ID --epochs N``: fine-tune a chosen trial at full length."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    parser = sub.add_parser(
        "finetune",
        help="fine-tune a trial's pruned model for whole epochs; prints accuracy beside the search's",
        description=(
            "Continue a trial's checkpoint for N epochs of the training set with the search's fine-tune "
            "recipe (cosine decay over the whole run). The result is written to "
            "RESULTS/finetuned/<trial>-e<N>/ and exported with `prunetune export RESULTS --trial <trial>-e<N>`."
        ),
    )
    parser.add_argument("results", metavar="RESULTS", help="experiment folder, e.g. results/demo")
    parser.add_argument("--trial", required=True, metavar="ID", help="trial id (see frontier.csv)")
    parser.add_argument(
        "--epochs",
        required=True,
        type=int,
        metavar="N",
        help="whole passes over the training set (one cosine LR decay over all of them)",
    )
    parser.add_argument(
        "--out", metavar="PATH", help="checkpoint folder to write (default RESULTS/finetuned/<trial>-e<N>)"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing output folder")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from prunetune.search.artifacts.finetune import finetune_trial
    from prunetune.search.store.manifest import read_manifest
    from prunetune.search.store.trials import find_trial, read_trials

    manifest = read_manifest(args.results)
    trial = find_trial(read_trials(manifest.directory), args.trial)
    result = finetune_trial(manifest, trial, args.epochs, out=args.out, force=args.force)
    print(
        f"trial {result.source_trial} after {result.epochs} epochs ({result.steps} steps): accuracy "
        f"{result.accuracy:.4f} (search's estimate {result.estimate:.4f}, {result.accuracy - result.estimate:+.4f})"
    )
    print(f"checkpoint: {result.directory}")
    print(
        f"export it:  prunetune export {args.results} --trial {result.directory if args.out else result.trial_id} "
        "--format onnx --out model.onnx"
    )
    return 0
