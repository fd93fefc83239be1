"""Run every benchmark in turn (``make bench``); each prints its own table.

Benchmarks are long (minutes each on 2 CPU cores); record their latest figures in BENCHMARKS.md.
"""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = (
    "cost_model",
    "latency_vs_macs",
    "latency_table",
    "searcher_quality",
    "taper_vs_search",
    "trial_overhead",
    "prune_step",
    "scheduler_overhead",
    "episodes_per_hour",
)


def main() -> int:
    failed = []
    for name in BENCHMARKS:
        print(f"\n=== benchmarks.{name} ===", flush=True)
        if subprocess.run([sys.executable, "-m", f"benchmarks.{name}"]).returncode != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
