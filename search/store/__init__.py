"""An experiment folder, read and written without Ray: the manifest (``prunetune.json``), Tune's
trial folders (one reader, :func:`read_trial_folder`), where a search stands
(:func:`read_progress`), and the frontier with its table, CSV/JSON/PNG and HTML plots.
Names load on first use."""

from __future__ import annotations

from prunetune.budgets.lazy import lazy_exports

_WHERE = {
    "MANIFEST": "manifest",
    "Manifest": "manifest",
    "read_manifest": "manifest",
    "write_manifest": "manifest",
    "ExperimentLock": "lock",
    "ExperimentLocked": "lock",
    "holder_of": "lock",
    "TrialFolder": "trials",
    "TrialInfo": "trials",
    "BudgetFilter": "trials",
    "best_trial": "trials",
    "choose_best": "trials",
    "damaged_trials": "trials",
    "Damaged": "trials",
    "Best": "best",
    "best_of": "best",
    "ranked": "best",
    "find_trial": "trials",
    "last_line": "trials",
    "parse_budget_filter": "trials",
    "read_trial_folder": "trials",
    "read_trials": "trials",
    "Progress": "progress",
    "TrialState": "progress",
    "read_progress": "progress",
    "TrialRecord": "frontier",
    "format_table": "frontier",
    "pareto": "frontier",
    "pareto_front": "frontier",
    "write_frontier": "frontier",
    "frontier_html": "plots",
    "plot_frontier": "plots",
}

__all__ = sorted(_WHERE)

__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
