"""``prunetune export RESULTS``: a trial's pruned model as a verified artifact, optionally registered."""

from __future__ import annotations

import argparse

FORMATS = ("state_dict", "torch_export", "onnx", "torchscript")

EPILOG = """\
--budget NAME<=VALUE filters --best on a cost the trials reported: a VALUE ending in % is
relative to the dense model (macs<=40% means rel/macs <= 0.40), a plain number is absolute
(params<=25000, macs<=1.2e6). Formats: state_dict (a folder: model.pt, profile.json,
export.json, preprocessing.json; reload with trainables.load_pruned), torch_export (.pt2
ExportedProgram, dynamic batch; torch.export.load), onnx (.onnx file, dynamic batch; needs pip
install 'prunetune[export]'), torchscript (legacy .pt file). Every artifact records the input
preprocessing (resize, gray to RGB, mean and std) it expects: see docs/export.md. Every export is verified against the
trial's model (outputs on validation inputs, MACs and parameters) before it is moved to --out.
A fine-tuned checkpoint (prunetune finetune) is exported with --trial <trial>-e<N> or --trial DIR.
"""


def register(sub) -> None:
    parser = sub.add_parser(
        "export",
        help="export a trial's pruned model (state_dict, torch_export, onnx, torchscript), verified",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("results", metavar="RESULTS", help="experiment folder, e.g. results/demo")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--trial", metavar="ID", help="trial id (see frontier.csv), <trial>-e<N>, or a fine-tuned folder"
    )
    which.add_argument("--best", action="store_true", help="the feasible trial with the highest accuracy")
    parser.add_argument(
        "--budget", metavar="NAME<=VALUE", help="with --best: only trials within this cost, e.g. macs<=40%%"
    )
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument(
        "--out", required=True, metavar="PATH", help="file (torchscript, onnx) or folder (state_dict) to write"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing --out")
    parser.add_argument(
        "--register", metavar="NAME", help="also register the model in the MLflow model registry as NAME"
    )
    parser.add_argument("--tracking-uri", metavar="URI", help="MLflow for --register (default: the search's own store)")
    parser.set_defaults(func=run)


def choose_trial(args: argparse.Namespace, experiment):
    """The trial to export and the line describing its figure (the one definition of best for
    ``--best``: search/store/best.py). Damaged trial folders are named on stderr, left out."""
    import sys

    from prunetune.budgets.errors import ConfigError
    from prunetune.search.store.trials import (
        choose_best,
        damaged_trials,
        find_trial,
        parse_budget_filter,
        read_trials,
    )

    trials = read_trials(experiment)
    if args.budget and not args.best:
        raise ConfigError("--budget only filters --best; drop it or use --best instead of --trial")
    if not args.best:
        trial = find_trial(trials, args.trial, experiment)
        return trial, f"{_figure(trial.report)}"
    damaged = damaged_trials(experiment)
    for damage in damaged:
        print(f"prunetune: warning: {damage.line('left out of --best')}", file=sys.stderr)
    trial, best = choose_best(trials, parse_budget_filter(args.budget) if args.budget else None)
    left = f" ({len(damaged)} damaged trial(s) left out)" if damaged else ""
    return trial, f"best: {best.label}{left}"


def _figure(report) -> str:
    if report.test_accuracy is not None:
        return f"test accuracy {report.test_accuracy:.4f} (validation {report.accuracy:.4f})"
    return f"validation accuracy {report.accuracy:.4f}"


def run(args: argparse.Namespace) -> int:
    from prunetune.search.artifacts.export import export_trial
    from prunetune.search.store.manifest import read_manifest

    manifest = read_manifest(args.results)
    trial, figure = choose_trial(args, manifest.directory)
    result = export_trial(manifest, trial, args.format, args.out, force=args.force)
    costs = "  ".join(f"{k} {v:,.0f}" for k, v in result.costs.items())
    print(f"trial {trial.trial_id}: {figure}, {costs}")
    print(
        f"verified: outputs within {result.max_abs_diff:.2g} of the trial's model on {result.inputs} validation "
        f"inputs (tolerance {result.tolerance:.2g}); MACs and parameters match the trial's report"
    )
    print(f"exported {args.format}: {result.path}")
    if args.register:
        _register(args, manifest, result)
    return 0


def _register(args: argparse.Namespace, manifest, result) -> None:
    from prunetune.search.artifacts.model_registry import default_tracking_uri, register_export
    from prunetune.search.tracking.tracker import experiment_name

    setup = manifest.setup()
    example = next(setup.data.open(setup.model.input_size).eval_batches("val", 2))[0].float().numpy()
    uri = args.tracking_uri or default_tracking_uri(manifest)
    registered = register_export(result, args.register, uri, experiment_name(manifest.config), example)
    print(f"registered: {registered.name} version {registered.version} ({registered.uri}) at {uri}")
