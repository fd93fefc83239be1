"""The dense model a search prunes, as every figure and table reads it: its accuracy (recorded
in the base checkpoint when prunetune trained it) and its measured costs (in the manifest).

:func:`experiment_reference` is what ``search``, ``status``, ``compare``, ``sync`` and the
tracker draw and print against; it reads the experiment folder only (no Ray, no cost function).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

from prunetune.budgets import report as R
from prunetune.search.store.frontier import Reference, TrialRecord, reference_of


def dense_accuracy(checkpoint: str | Path | None) -> float | None:
    """The validation accuracy ``ensure_base_checkpoint`` recorded in a base checkpoint; None
    for a checkpoint without it (a user's own) or one that cannot be read."""
    if not checkpoint or not Path(checkpoint).is_file():
        return None
    return _recorded_accuracy(str(checkpoint), os.path.getmtime(checkpoint))


@functools.lru_cache(maxsize=8)
def _recorded_accuracy(path: str, mtime: float) -> float | None:
    import torch

    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any unreadable file simply has no recorded accuracy
        return None
    meta = blob.get("meta") if isinstance(blob, dict) else None
    accuracy = meta.get(R.ACCURACY) if isinstance(meta, dict) else None
    return float(accuracy) if isinstance(accuracy, (int, float)) else None


def experiment_reference(manifest, baseline: Sequence[TrialRecord] = ()) -> Reference:
    """The :class:`Reference` of the experiment ``manifest`` describes."""
    return reference_of(manifest.config, manifest.dense_costs, dense_accuracy(manifest.base_checkpoint), baseline)


def describe_dense(reference: Reference, costs: Sequence[str]) -> str:
    """One line naming the dense model's accuracy and costs, e.g. for the start of a search."""
    accuracy = "accuracy unknown" if reference.dense_accuracy is None else f"accuracy {reference.dense_accuracy:.4f}"
    shown = ", ".join(f"{_amount(reference.dense_costs[c])} {c}" for c in costs if c in reference.dense_costs)
    return f"dense model: {accuracy}" + (f", {shown}" if shown else "")


def _amount(value: float) -> str:
    """Counts as whole numbers (``2,653,002``), small measured amounts with their digits
    (a latency of ``1.311`` ms, not ``1``)."""
    return f"{value:,.0f}" if abs(value) >= 100 or float(value).is_integer() else f"{value:.4g}"
