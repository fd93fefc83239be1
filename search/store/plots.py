"""Interactive frontier plots (plotly, self-contained HTML that works offline) and the
overlay of several searches' frontiers that ``prunetune compare`` draws.

The static one-search plot lives in :mod:`prunetune.search.store.frontier`; these add hover text (trial id,
profile) and several costs or searches in one file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from prunetune.search.store.frontier import TrialRecord, pareto


def _hover(record: TrialRecord, cost: str) -> str:
    profile = ", ".join(f"{group}={ratio:.2f}" for group, ratio in record.profile.items())
    if len(profile) > 160:
        profile = profile[:157] + "..."
    relative = record.relative.get(cost)
    share = f" ({relative:.1%} of dense)" if relative is not None else ""
    return f"{record.trial_id}<br>accuracy {record.accuracy:.4f}<br>{cost} {record.costs[cost]:,.0f}{share}<br>{profile}"


def _cost_traces(records: Sequence[TrialRecord], cost: str, first: bool) -> list:
    import plotly.graph_objects as go

    front = pareto(records, cost)
    groups = (
        ("over budget", [r for r in records if not r.feasible and cost in r.costs], "lightgrey"),
        ("feasible", [r for r in records if r.feasible and cost in r.costs], "#1f77b4"),
    )
    traces = [
        go.Scatter(
            x=[r.costs[cost] for r in members],
            y=[r.accuracy for r in members],
            mode="markers",
            name=label,
            legendgroup=label,
            showlegend=first,
            marker={"color": color, "size": 8},
            hovertext=[_hover(r, cost) for r in members],
            hoverinfo="text",
        )
        for label, members, color in groups
    ]
    traces.append(
        go.Scatter(
            x=[r.costs[cost] for r in front],
            y=[r.accuracy for r in front],
            mode="lines+markers",
            line={"shape": "hv", "color": "#d62728"},
            name="frontier",
            legendgroup="frontier",
            showlegend=first,
            hovertext=[_hover(r, cost) for r in front],
            hoverinfo="text",
        )
    )
    return traces


def frontier_html(records: Sequence[TrialRecord], costs: Sequence[str], path: Path, title: str = "") -> Path:
    """One interactive page: accuracy against each cost, side by side, infeasible trials grey."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(costs), subplot_titles=[f"accuracy vs {c}" for c in costs])
    for column, cost in enumerate(costs, start=1):
        for trace in _cost_traces(records, cost, first=column == 1):
            fig.add_trace(trace, row=1, col=column)
        fig.update_xaxes(title_text=cost, row=1, col=column)
    fig.update_yaxes(title_text="validation accuracy", row=1, col=1)
    fig.update_layout(title=title or "frontier", height=480, width=max(640, 520 * len(costs)), template="plotly_white")
    fig.write_html(str(path), include_plotlyjs=True, full_html=True)  # inline plotly.js: works offline
    return path


def compare_html(curves: dict[str, list[tuple[float, float, str]]], cost: str, path: Path, title: str) -> Path:
    """Overlay of frontiers: ``curves`` maps a search label to (relative cost, accuracy, trial)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for label, points in curves.items():
        fig.add_trace(
            go.Scatter(
                x=[x for x, _, _ in points],
                y=[y for _, y, _ in points],
                mode="lines+markers",
                line={"shape": "hv"},
                name=label,
                hovertext=[f"{label}<br>{trial}<br>accuracy {y:.4f}<br>{x:.1%} of dense {cost}" for x, y, trial in points],
                hoverinfo="text",
            )
        )
    fig.update_layout(
        title=title,
        xaxis={"title": f"{cost} (fraction of dense)", "tickformat": ".0%"},
        yaxis={"title": "validation accuracy"},
        height=520,
        width=820,
        template="plotly_white",
    )
    fig.write_html(str(path), include_plotlyjs=True, full_html=True)
    return path


def compare_png(curves: dict[str, list[tuple[float, float, str]]], cost: str, path: Path, title: str) -> Path:
    """The same overlay as :func:`compare_html`, as a static PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.2, 4.6), dpi=110)
    for label, points in curves.items():
        ax.step([x for x, _, _ in points], [y for _, y, _ in points], where="post", marker="o", ms=4, label=label)
    ax.set_xlabel(f"{cost} (fraction of dense)")
    ax.set_ylabel("validation accuracy")
    ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
