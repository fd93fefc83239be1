"""``prunetune experiment criteria``: does the channel-selection criterion matter once the profile
is fixed? (the out-of-the-box profiles paper, arXiv:2004.14584, claims it does not: random
selection inside a layer is as good as a metric)

The same profiles (drawn from the config's space, or library files) are pruned from one base
model with each criterion (default ``l1``, ``l2``, ``random``, ``bn_scale``) under several seeds,
each fine-tuned with the config's recipe: one Tune trial per (profile, criterion, seed). The
seed changes the random criterion's choice and the fine-tune's batch order; the base model
stays the same (our choice: the claim is about selection inside a layer of one trained model).

Reported per criterion: accuracy right after pruning and after the fine-tune, as the mean over
profiles with its spread over seeds (the standard deviation of the per-seed means), and per
profile the mean ± std over seeds. The verdict compares ``random`` with the best other
criterion against that spread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prunetune.budgets import report as R
from prunetune.budgets.errors import ConfigError
from prunetune.search.config import SearchConfig
from prunetune.search.reproduce.common import (
    REPORT_JSON,
    REPORT_MD,
    draw_profiles,
    library_profiles,
    mean_std,
    pm,
    pyplot,
    write_json,
)
from prunetune.search.run.grid import check_new, finished, log_report, profile_key, run_grid
from prunetune.trainables import CRITERIA

METRICS = (R.ACCURACY_PRUNED, R.ACCURACY)


@dataclass(frozen=True)
class CriteriaSettings:
    criteria: tuple[str, ...] = ("l1", "l2", "random", "bn_scale")
    seeds: int = 3
    profiles: int = 3  # drawn from the space when no files are given
    files: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = [c for c in self.criteria if c not in CRITERIA]
        if unknown or not self.criteria:
            raise ConfigError(
                f"--criteria {','.join(self.criteria)}: unknown {', '.join(unknown) or 'empty list'}; "
                f"choose from {', '.join(CRITERIA)}"
            )
        if self.seeds < 1 or self.profiles < 1:
            raise ConfigError(f"--seeds {self.seeds} and --profiles {self.profiles} must be at least 1")


@dataclass(frozen=True)
class CriteriaOutcome:
    directory: Path
    summary: dict  # criterion -> metric -> (mean, spread over seeds)
    per_profile: dict  # criterion -> profile index -> metric -> (mean, std over seeds)
    trials: int
    errors: dict[str, str]
    files: dict[str, Path]


def run_criteria(config: SearchConfig, settings: CriteriaSettings) -> CriteriaOutcome:
    from prunetune.search.run.prepare import prepare

    check_new(config)
    files = library_profiles(settings.files, config) if settings.files else None
    prepared = prepare(config)
    profiles = files or draw_profiles(prepared.space, settings.profiles, config.searcher.seed)
    grid = {"profile": profiles, "criterion": list(settings.criteria), "seed": list(range(settings.seeds))}
    rows, errors = finished(run_grid(prepared, grid))
    index = {profile_key(p): i for i, p in enumerate(profiles)}
    table = {
        (index[profile_key(r["config"]["profile"])], r["config"]["criterion"], r["config"]["seed"]): r for r in rows
    }
    summary, per_profile = summarise(table, settings.criteria, len(profiles), settings.seeds)
    directory = prepared.experiment_dir
    files = {
        "md": directory / REPORT_MD,
        "json": write_json(
            directory / REPORT_JSON,
            {
                "experiment": "criteria",
                "config": config.model_dump(mode="json"),
                "profiles": profiles,
                "criteria": list(settings.criteria),
                "seeds": settings.seeds,
                "summary": summary,
                "per_profile": per_profile,
                "errors": errors,
            },
        ),
        "png": plot(summary, per_profile, settings.criteria, directory / "criteria.png", config),
    }
    files["md"].write_text(report(prepared.config, profiles, settings, summary, per_profile, errors, len(rows)))
    log_report(prepared, list(files.values()))
    return CriteriaOutcome(directory, summary, per_profile, len(rows), errors, files)


def summarise(table: dict, criteria: Sequence[str], n_profiles: int, seeds: int) -> tuple[dict, dict]:
    """Per criterion: the mean over profiles and seeds with the std of per-seed means; per
    criterion and profile: mean and std over seeds. Missing (errored) trials are skipped."""
    summary, per_profile = {}, {}
    for criterion in criteria:
        summary[criterion], per_profile[criterion] = {}, {}
        for metric in METRICS:
            seed_means = []
            for seed in range(seeds):
                values = [
                    table[(p, criterion, seed)][metric] for p in range(n_profiles) if (p, criterion, seed) in table
                ]
                if values:
                    seed_means.append(float(np.mean(values)))
            if seed_means:
                summary[criterion][metric] = mean_std(seed_means)
        for p in range(n_profiles):
            runs = [table[(p, criterion, s)] for s in range(seeds) if (p, criterion, s) in table]
            if runs:
                per_profile[criterion][p] = {m: mean_std([r[m] for r in runs]) for m in METRICS}
                per_profile[criterion][p]["rel_macs"] = runs[0].get(R.relative_key("macs"))
    return summary, per_profile


def verdict(summary: dict, metric: str = R.ACCURACY) -> str:
    """How ``random`` compares with the best other criterion, against the seed spread."""
    if "random" not in summary or metric not in summary["random"]:
        return "random was not among the criteria (or all its trials errored): no verdict."
    others = {c: s[metric] for c, s in summary.items() if c != "random" and metric in s}
    if not others:
        return "no metric criterion to compare random with."
    best = max(others, key=lambda c: others[c][0])
    (r_mean, r_std), (b_mean, b_std) = summary["random"][metric], others[best]
    gap, spread = b_mean - r_mean, max(r_std, b_std)
    within = abs(gap) <= 2 * spread if spread > 0 else abs(gap) < 1e-9
    word = "within" if within else "outside"
    return (
        f"{metric}: random {r_mean:.4f} vs best metric criterion {best} {b_mean:.4f} (gap {gap:+.4f}); "
        f"the gap is {word} twice the seed spread ({2 * spread:.4f})."
    )


def report(config, profiles, settings, summary, per_profile, errors, trials: int) -> str:
    lines = [
        "# Does the channel-selection criterion matter once the profile is fixed?",
        "",
        f"{config.model.name} (width {config.model.width:g}, {config.model.input_size} px) on {config.data.name}.",
        f"{len(profiles)} profiles x {len(settings.criteria)} criteria x {settings.seeds} seeds = "
        f"{len(profiles) * len(settings.criteria) * settings.seeds} trials ({trials} finished, {len(errors)} errored); "
        f"fine-tune {config.finetune.steps} steps at lr {config.finetune.lr:g}, base {config.base.steps} steps.",
        "",
        "## Accuracy per criterion (mean over profiles; ± std of the per-seed means)",
        "",
        "| criterion | right after pruning | after fine-tune |",
        "|---|---:|---:|",
    ]
    for criterion, stats in summary.items():
        cells = [pm(*stats[m]) if m in stats else "-" for m in METRICS]
        lines.append(f"| {criterion} | {cells[0]} | {cells[1]} |")
    lines += [
        "",
        "## Verdict (the out-of-the-box profiles paper, arXiv:2004.14584, "
        "claims random selection is as good as a metric)",
        "",
        f"- {verdict(summary, R.ACCURACY)}",
        f"- {verdict(summary, R.ACCURACY_PRUNED)}",
        "",
        "## Per profile (after fine-tune; mean ± std over seeds)",
        "",
        "| profile | MACs of dense | " + " | ".join(settings.criteria) + " |",
        "|---|---:|" + "---:|" * len(settings.criteria),
    ]
    for p in range(len(profiles)):
        rel = next((per_profile[c][p].get("rel_macs") for c in settings.criteria if p in per_profile[c]), None)
        cells = [pm(*per_profile[c][p][R.ACCURACY]) if p in per_profile[c] else "-" for c in settings.criteria]
        lines.append(
            f"| {p} | {rel:.1%} | " + " | ".join(cells) + " |"
            if rel is not None
            else f"| {p} | - | " + " | ".join(cells) + " |"
        )
    lines += ["", "Profiles (keep ratio per group, in group order):", ""]
    lines += [f"- {p}: {' '.join(f'{v:.2f}' for v in profile.values())}" for p, profile in enumerate(profiles)]
    lines += [f"- errored {trial}: {reason}" for trial, reason in errors.items()]
    return "\n".join(lines) + "\n"


def plot(summary, per_profile, criteria, path: Path, config) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    x = np.arange(len(criteria))
    for offset, metric, colour in ((-0.2, R.ACCURACY_PRUNED, "tab:grey"), (0.2, R.ACCURACY, "tab:blue")):
        stats = [summary.get(c, {}).get(metric, (np.nan, 0.0)) for c in criteria]
        axes[0].bar(
            x + offset,
            [s[0] for s in stats],
            0.4,
            yerr=[s[1] for s in stats],
            color=colour,
            capsize=3,
            label="after pruning" if metric == R.ACCURACY_PRUNED else "after fine-tune",
        )
    axes[0].set_xticks(x, criteria)
    axes[0].set_ylabel("validation accuracy")
    axes[0].set_title("mean over profiles (± seed spread)")
    axes[0].legend(loc="lower right")
    n_profiles = max((len(v) for v in per_profile.values()), default=0)
    width = 0.8 / max(len(criteria), 1)
    for i, criterion in enumerate(criteria):
        stats = [per_profile[criterion].get(p, {}).get(R.ACCURACY, (np.nan, 0.0)) for p in range(n_profiles)]
        axes[1].bar(
            np.arange(n_profiles) + (i - (len(criteria) - 1) / 2) * width,
            [s[0] for s in stats],
            width,
            yerr=[s[1] for s in stats],
            capsize=2,
            label=criterion,
        )
    axes[1].set_xticks(np.arange(n_profiles), [f"profile {p}" for p in range(n_profiles)])
    axes[1].set_title("after fine-tune, per profile (± std over seeds)")
    axes[1].legend(loc="lower right", fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(f"channel-selection criterion at fixed profiles: {config.model.name} on {config.data.name}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
