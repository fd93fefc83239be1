"""What each fine-tune recipe option does to the confirmed test accuracy, on Fashion-MNIST.

The setting of ``benchmarks/vs_peers.py`` (vgg11 at width 0.25, the same cached dense model per
seed, MACs <= 30% of dense, 16 trials of 40 steps, the top profile confirmed for 600 steps and
evaluated once on the test split), with the fine-tune recipe varied: plain (SGD, cosine decay),
linear warm-up (``finetune.warmup``), label smoothing (``finetune.label_smoothing``),
distillation from the dense model (``finetune.distill``), and all three. The recipe is the
trials' and the confirmation's. Each variant runs the ``uniform`` profile and, with
``--searched``, a searcher (``sensitivity`` by default: the best searched method there).

Every outcome is appended to a JSON-lines record under ``--storage`` (as vs_peers does): a rerun
skips what is measured and prints the table over all seeds.

Run: ``python -m benchmarks.recipe_options --seeds 2 --searched sensitivity``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

VARIANTS = {
    "plain": {},
    "warmup": {"warmup": 60},
    "label smoothing": {"label_smoothing": 0.1},
    "distill": {"distill": {"alpha": 0.5, "temperature": 4.0}},
    "all three": {"warmup": 60, "label_smoothing": 0.1, "distill": {"alpha": 0.5, "temperature": 4.0}},
}


def run(args, method: str, variant: str, seed: int) -> float:
    """Confirmed test accuracy of ``method``'s pick with the ``variant`` recipe."""
    from benchmarks.vs_peers import search_config
    from prunetune.search.config import parse_config
    from prunetune.search.run import prepare, run_search

    config = search_config(args, method, seed)
    config["name"] = f"recipe-{variant.replace(' ', '-')}-{method}-s{seed}"
    config["finetune"] = {**config["finetune"], **VARIANTS[variant]}
    outcome = run_search(prepare(parse_config(config), show_progress=False))
    chosen = [r for r in outcome.records if r.confirmed]
    return chosen[0].accuracy if chosen else float("nan")


def main(argv: list[str] | None = None) -> int:
    from benchmarks.vs_peers import parse_args

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--searched", default="sensitivity", help="the searcher run beside uniform ('' for none)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--storage", type=Path, default=Path("results/benchmarks/peers").resolve())
    own = parser.parse_args(argv)
    args = parse_args(["--storage", str(own.storage)])  # vs_peers' settings: task, budget, steps, base
    record = own.storage / "recipe_options.jsonl"
    done = {}
    if record.is_file():
        for line in record.read_text().splitlines():
            entry = json.loads(line)
            done[entry["method"], entry["variant"], entry["seed"]] = entry["accuracy"]
    methods = ["uniform", *([own.searched] if own.searched else [])]
    started, ray_started = time.time(), False
    for seed in range(own.seeds):
        for method in methods:
            for variant in own.variants:
                if (method, variant, seed) in done:
                    continue
                if not ray_started:
                    from prunetune.search.run import init_ray

                    init_ray(None)
                    ray_started = True
                accuracy = run(args, method, variant, seed)
                done[method, variant, seed] = accuracy
                record.parent.mkdir(parents=True, exist_ok=True)
                with record.open("a") as file:
                    entry = {"method": method, "variant": variant, "seed": seed, "accuracy": accuracy}
                    file.write(json.dumps(entry) + "\n")
                print(f"[{time.time() - started:5.0f} s] {method} {variant} seed {seed}: {accuracy:.4f}", flush=True)
    print(f"\n## recipe options: confirmed test accuracy after {args.confirm_steps} steps, mean over seeds (sd)")
    print(f"{'variant':<16}" + "".join(f"{m:>24}" for m in methods))
    for variant in own.variants:
        cells = []
        for method in methods:
            values = [done[method, variant, s] for s in range(own.seeds) if (method, variant, s) in done]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.fmean(values):.4f} ({sd:.4f}, n={len(values)})" if values else "-")
        print(f"{variant:<16}" + "".join(f"{c:>24}" for c in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
