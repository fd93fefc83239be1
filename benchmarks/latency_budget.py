"""One search under a latency budget of 60% of dense on mobilenet_v2: the MACs budget's profile
against the latency table's, each measured on the device (here: this CPU, eager, one thread)
and confirmed (fine-tuned again from the base, accuracy on the test split).

Both searches are the uniform searcher's (one keep ratio for every group, the largest that
meets the budget, found without trials): under ``macs <= 60%`` by the exact cost model, under
``latency <= 60%`` by the per-layer latency table's prediction. Run by
``benchmarks/latency_table.py`` (``--search``).
"""

from __future__ import annotations

import statistics
import tempfile
from dataclasses import replace

from prunetune.budgets import get_cost
from prunetune.budgets import report as R
from prunetune.search.config import parse_config
from prunetune.search.run.prepare import build_space
from prunetune.search.setup import specs, trial_setup
from prunetune.trainables import Profile, ensure_base_checkpoint, run_trial
from prunetune.trainables.trial import Confirmation, example_input, pruned_model

LEVEL = 0.6
CONFIG = {
    "name": "latency-budget",
    "model": {"name": "mobilenet_v2", "input_size": 32},
    "data": {"name": "digits"},
    "base": {"steps": 300, "lr": 0.05, "batch_size": 64},
    "finetune": {"steps": 150, "lr": 0.01, "batch_size": 64},
    "space": {"low": 0.2, "high": 1.0},
}


def largest_ratio(fits, low: float = 0.2, high: float = 1.0, steps: int = 20) -> float:
    """The largest uniform keep ratio in [low, high] that ``fits`` (bisection)."""
    if fits(high):
        return high
    for _ in range(steps):
        middle = (low + high) / 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def compare(table_for, protocol: dict, rounds: int = 3) -> list[dict]:
    """Rows for the MACs-budget and latency-table profiles; ``table_for(model, sample, latency)``
    measures and fits a table."""
    config = parse_config(CONFIG)
    model_spec, data, recipe = specs(config)
    splits = data.load(model_spec.input_size)
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = ensure_base_checkpoint(model_spec, data, recipe, folder, seed=0, show_progress=False)
        setup = replace(trial_setup(config), base_checkpoint=str(checkpoint))
        space = build_space(config, splits.num_classes)
        sample = example_input(setup)
        latency = get_cost("latency", **protocol)
        dense = pruned_model(setup, Profile({g.name: 1.0 for g in space.groups}), splits.num_classes).eval()
        table, quality = table_for(dense, sample, latency)
        dense_macs = space.cost_model.dense()["macs"]
        dense_ms = latency(dense, sample)
        uniform = lambda r: {g.name: r for g in space.groups}  # noqa: E731
        by_macs = largest_ratio(lambda r: space.costs(uniform(r))["macs"] <= LEVEL * dense_macs)
        by_table = largest_ratio(lambda r: table.predict(space.kept(uniform(r))) <= LEVEL * dense_ms)
        rows = []
        for label, ratio in (("MACs budget", by_macs), ("latency table", by_table)):
            profile = Profile(uniform(round(ratio, 4)))
            pruned = pruned_model(setup, profile, splits.num_classes).eval()
            measured = [latency.measure_interval(pruned, sample) for _ in range(rounds)]
            dense_again = [latency(dense, sample) for _ in range(rounds)]
            reports: list[dict] = []
            run_trial(
                setup, profile, lambda metrics, _, sink=reports: sink.append(metrics), confirm=Confirmation("bench")
            )
            rows.append(
                {
                    "label": label,
                    "ratio": ratio,
                    "macs": space.costs(profile.ratios)["macs"] / dense_macs,
                    "predicted": table.predict(space.kept(profile.ratios)) / dense_ms,
                    "latency": statistics.median(m.value for m in measured) / statistics.median(dense_again),
                    "high": statistics.median(m.high for m in measured) / statistics.median(dense_again),
                    "accuracy": reports[-1][R.TEST_ACCURACY],
                    "quality": quality,
                }
            )
    return rows


def print_rows(rows: list[dict]) -> None:
    print(f"\nmobilenet_v2 (32 px, digits), uniform profile under a budget of {LEVEL:.0%} of dense:")
    print(
        f"{'budget':<14} {'ratio':>6} {'MACs':>6} {'pred. latency':>13} {'latency':>8} {'upper':>6} "
        f"{'meets':>5} {'test acc':>8}"
    )
    for row in rows:
        meets = "yes" if row["high"] <= LEVEL else "no"
        print(
            f"{row['label']:<14} {row['ratio']:>6.3f} {row['macs']:>6.0%} {row['predicted']:>13.0%} "
            f"{row['latency']:>8.0%} {row['high']:>6.0%} {meets:>5} {row['accuracy']:>8.3f}"
        )
    print("meets: the measured interval's upper end within the latency budget; a ratio at the space's low end")
    print("(0.200) means no uniform profile is predicted to meet it: the smallest is shown")
    print(f"table on this model: {rows[0]['quality']}; latency: measured / dense, median of 3 rounds")
