"""The one definition of a search's best profile, and the words every view uses for its figure.

A search's best profile is its feasible profile with the highest *confirmed test accuracy*
(the mean over the confirmation trial's seeds) when the search confirmed profiles
(``confirm`` in docs/searchers.md), otherwise its feasible search trial with the highest
*validation accuracy*. Ties go to the cheaper profile by MACs, then to the lower trial id, so
every reader picks the same one. Reference profiles (``confirm.uniform``), fine-tuned copies
and trials a scheduler stopped early (when any trial ran its whole fine-tune) never compete.

``status``, the frontier table, ``export --best``, ``export-profiles``, ``compare`` and the
MLflow parent run all call :func:`best_of` (or :func:`ranked`) and print the figure with
:attr:`Best.label`, so they name the same trial with the same number and say which accuracy
it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from prunetune.search.store.frontier import TrialRecord, confirmed

VALIDATION = "validation accuracy"
CONFIRMED = "confirmed test accuracy"


@dataclass(frozen=True)
class Best:
    """The best profile of a search: its record (a merged confirmed one when the search
    confirmed) and which accuracy its figure is."""

    record: TrialRecord
    kind: str  # VALIDATION or CONFIRMED

    @property
    def trial_id(self) -> str:
        """The trial whose checkpoint holds the model (a confirmation trial when confirmed)."""
        return self.record.trial_id

    @property
    def accuracy(self) -> float:
        return self.record.accuracy

    @property
    def source(self) -> str:
        """The search trial whose profile this is (itself when not confirmed)."""
        return self.record.confirms or self.record.trial_id

    @property
    def label(self) -> str:
        """``confirmed test accuracy 0.8123 (2 seeds)`` or ``validation accuracy 0.8123``."""
        seeds = f" ({self.record.seeds} seeds)" if self.record.seeds > 1 else ""
        return f"{self.kind} {self.accuracy:.4f}{seeds}"

    def summary(self) -> dict:
        """What ``frontier.json`` records as ``best``."""
        return {"trial_id": self.trial_id, "accuracy": self.accuracy, "kind": self.kind, "source": self.source}

    def describe(self) -> str:
        """One line naming the trial, its figure and, when confirmed, the profile's search trial."""
        where = f"trial_{self.trial_id}"
        if self.record.confirmed:
            where += f", confirming search trial_{self.source}"
        return f"{self.label} in {where}"


def _sort_key(record: TrialRecord) -> tuple:
    return (-record.accuracy, record.costs.get("macs", 0.0), record.trial_id)


def ranked(records: Iterable[TrialRecord]) -> tuple[list[TrialRecord], str]:
    """The search's feasible profiles best first, and which accuracy ranks them (see the module
    doc). ``records`` may hold raw confirmation records or merged ones (:func:`confirmed`)."""
    records = list(records)
    merged = records if any(r.confirmed for r in records) else confirmed(records)
    own = [r for r in merged if r.reference is None]
    pool = [r for r in own if r.confirmed and r.feasible]
    if pool:
        return sorted(pool, key=_sort_key), CONFIRMED
    search = [r for r in own if r.confirms is None and not r.confirmed and r.feasible]
    whole = [r for r in search if not r.stopped] or search
    return sorted(whole, key=_sort_key), VALIDATION


def best_of(records: Iterable[TrialRecord]) -> Best | None:
    """The search's best profile (None when no profile is feasible)."""
    pool, kind = ranked(records)
    return Best(pool[0], kind) if pool else None


def search_records(trials: Sequence) -> list[TrialRecord]:
    """The records of finished search trials (:class:`~prunetune.search.store.trials.TrialInfo`),
    fine-tuned copies left out."""
    return [
        TrialRecord.from_report(
            t.trial_id, t.report, dict(t.profile), None if t.checkpoint is None else str(t.checkpoint)
        )
        for t in trials
        if t.finished and t.source_trial is None
    ]
