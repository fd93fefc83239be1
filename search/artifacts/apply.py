"""Applying library profiles to a base model of the config's architecture on its data set.

``prunetune apply --profile FILE ... --config CONFIG`` trains (or loads) the config's base model
exactly as ``prunetune search`` would, checks every profile fits its groups, then runs one Tune
trial per profile (:func:`prunetune.search.run.grid.run_grid`): prune with the config's criterion, fine-tune
with its recipe, measure accuracy and costs. The outcome is printed as a table and written to
``<experiment>/applied.json`` and ``applied.md``; trials are tracked in MLflow like a search's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from prunetune.budgets.errors import ConfigError
from prunetune.budgets.report import TrialReport
from prunetune.search.artifacts.library import LibraryProfile, model_groups
from prunetune.search.config import SearchConfig
from prunetune.search.run.grid import check_new, finished, log_report, profile_key, run_grid

APPLIED_JSON = "applied.json"
APPLIED_MD = "applied.md"


@dataclass(frozen=True)
class AppliedProfile:
    """One profile's outcome on the config's model and data set."""

    name: str
    source: str  # "resnet20 on digits"
    source_accuracy: float | None
    trial_id: str
    accuracy: float
    accuracy_pruned: float
    feasible: bool
    costs: dict[str, float] = field(default_factory=dict)
    relative: dict[str, float] = field(default_factory=dict)
    checkpoint: str | None = None


@dataclass
class ApplyOutcome:
    experiment_dir: Path
    rows: list[AppliedProfile]
    errors: dict[str, str]  # profile name -> reason
    files: dict[str, Path] = field(default_factory=dict)


def load_profiles(paths: Sequence[str | Path]) -> list[LibraryProfile]:
    """The profile files ``apply`` was given; a field of the wrong type (``ratios`` that is not
    a mapping of group names to numbers, an ``architecture`` that is not a mapping) is a
    one-line ConfigError naming the file and the entry, before any model is built."""
    from prunetune.search.artifacts.library import load_profile

    for path in paths:
        try:
            blob = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, ValueError):
            continue  # missing or not JSON: load_profile says so
        if isinstance(blob, dict):
            _check_types(blob, f"profile file {path}")
    return [load_profile(path) for path in paths]


_SPEC_TYPES = {"name": (str,), "width": (int, float), "input_size": (int,)}


def _check_types(blob: dict, origin: str) -> None:
    ratios = blob.get("ratios")
    if ratios is not None and not isinstance(ratios, dict):
        raise ConfigError(
            f"{origin}: 'ratios' is a {type(ratios).__name__}; it must map each group name to a keep "
            f'ratio in (0, 1], e.g. {{"layer1.0.conv1": 0.5}}; re-export it with `prunetune export-profiles`'
        )
    for group, ratio in (ratios or {}).items():
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
            raise ConfigError(
                f"{origin}: ratios[{group!r}] is {ratio!r} (a {type(ratio).__name__}); "
                f"a keep ratio is a number in (0, 1]"
            )
    for field_name in ("architecture", "dataset", "groups"):
        value = blob.get(field_name)
        if value is not None and not isinstance(value, dict):
            raise ConfigError(
                f"{origin}: {field_name!r} is a {type(value).__name__}, not a mapping; "
                f"re-export it with `prunetune export-profiles`"
            )
    for key, types in _SPEC_TYPES.items():
        value = (blob.get("architecture") or {}).get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
            raise ConfigError(
                f"{origin}: architecture[{key!r}] is {value!r} (a {type(value).__name__}); "
                f"expected a {' or '.join(t.__name__ for t in types)}"
            )


def _names_unique(profiles: Sequence[LibraryProfile]) -> None:
    keys = [profile_key(p.ratios) for p in profiles]
    if len(set(keys)) != len(keys):
        raise ConfigError("two --profile files hold the same ratios; pass each profile once")


def apply_profiles(config: SearchConfig, profiles: Sequence[LibraryProfile]) -> ApplyOutcome:
    """Prune, fine-tune and measure each profile on ``config``'s base model (trained if needed)."""
    from prunetune.search.run.prepare import prepare

    if not profiles:
        raise ConfigError("no profile given; pass --profile FILE (repeatable)")
    _names_unique(profiles)
    check_new(config)
    target = f"{config.model.name} (width {config.model.width:g}) on {config.data.name}"
    groups = model_groups(config)
    for profile in profiles:
        profile.check_fits(groups, target)
    prepared = prepare(config)
    by_key = {profile_key(p.ratios): p for p in profiles}
    results = run_grid(prepared, {"profile": [dict(p.ratios) for p in profiles]})
    rows, errors = finished(results)
    applied = [_applied(by_key[profile_key(r["config"]["profile"])], r) for r in rows]
    applied.sort(key=lambda a: [p.name for p in profiles].index(a.name))
    failed = {_name_of(by_key, results, trial): reason for trial, reason in errors.items()}
    outcome = ApplyOutcome(prepared.experiment_dir, applied, failed)
    outcome.files = write_outcome(outcome, config)
    log_report(prepared, list(outcome.files.values()))
    return outcome


def _name_of(by_key, results, trial_id: str) -> str:
    for result in results:
        if Path(result.path).name == f"trial_{trial_id}" or (result.metrics or {}).get("trial_id") == trial_id:
            return by_key[profile_key(result.config["profile"])].name
    return trial_id


def _applied(profile: LibraryProfile, row: dict) -> AppliedProfile:
    report = TrialReport.read(row)
    return AppliedProfile(
        name=profile.name,
        source=profile.source,
        source_accuracy=profile.accuracy,
        trial_id=str(row.get("trial_id")),
        accuracy=report.accuracy,
        accuracy_pruned=report.accuracy_pruned,
        feasible=report.feasible,
        costs=dict(report.costs),
        relative=dict(report.relative),
        checkpoint=row.get("checkpoint"),
    )


def format_applied(rows: Sequence[AppliedProfile], target: str) -> str:
    """A Markdown table (also readable in a terminal) of the applied profiles."""
    lines = [
        f"| profile | found on | acc there | acc on {target} | acc pruned | MACs | of dense | params | feasible |",
        "|---|---|---:|---:|---:|---:|---:|---:|:-:|",
    ]
    for r in rows:
        there = f"{r.source_accuracy:.4f}" if r.source_accuracy is not None else "-"
        lines.append(
            f"| {r.name} | {r.source} | {there} | {r.accuracy:.4f} | {r.accuracy_pruned:.4f} | "
            f"{r.costs.get('macs', math.nan):,.0f} | {r.relative.get('macs', math.nan):.1%} | "
            f"{r.costs.get('params', math.nan):,.0f} | {'yes' if r.feasible else 'no'} |"
        )
    return "\n".join(lines)


def write_outcome(outcome: ApplyOutcome, config: SearchConfig) -> dict[str, Path]:
    directory = outcome.experiment_dir
    directory.mkdir(parents=True, exist_ok=True)
    target = f"{config.data.name}"
    blob = {
        "model": config.model.model_dump(),
        "data": config.data.model_dump(),
        "criterion": config.prune.criterion,
        "finetune": config.finetune.model_dump(),
        "applied": [asdict(r) for r in outcome.rows],
        "errors": outcome.errors,
    }
    files = {"json": directory / APPLIED_JSON, "md": directory / APPLIED_MD}
    files["json"].write_text(json.dumps(blob, indent=2))
    title = f"# Profiles applied to {config.model.name} (width {config.model.width:g}) on {config.data.name}\n\n"
    errors = "".join(f"\n- {name} errored: {reason}" for name, reason in outcome.errors.items())
    files["md"].write_text(title + format_applied(outcome.rows, target) + "\n" + errors + "\n")
    return files
