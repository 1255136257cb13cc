"""Figures for a clinic: decision curves (net benefit against the risk at which a patient
would be called, beside calling everyone and no one), the share of no-shows reached by
calling the top K%, the calibration of each subgroup, and the facts that moved a score.
Labels in words and percentages; matplotlib Figures built without pyplot, like
`noshow.evaluation.plots`.

    from noshow.evaluation.decision_plots import plot_net_benefit
    fig = plot_net_benefit(decision_curves(y, {"model": p}), names={"model": "this adapter"})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, PercentFormatter

from noshow.evaluation.decision import TREAT_ALL

_PCT = PercentFormatter(xmax=1, decimals=0)


def plot_net_benefit(
    curves: Mapping[str, Any], names: Mapping[str, str] | None = None, bands: bool = True
) -> Figure:
    """Net benefit (net no-shows reached per 100 appointments) of each model, calling
    everyone and calling no one, over the threshold probabilities of `curves`
    (`noshow.evaluation.decision.decision_curves`); each model's 95% interval as a band."""
    label = dict(names or {})
    t = np.asarray(curves["thresholds"], dtype=float)
    fig = Figure(figsize=(7.2, 4.4), layout="constrained")
    ax = fig.subplots()
    top = 0.0
    for key, curve in curves["models"].items():
        nb = np.array(curve["net_benefit"], dtype=float) * 100
        (line,) = ax.plot(t, nb, linewidth=2, label=label.get(key, key))
        if bands and None not in curve["low"] and None not in curve["high"]:
            low = np.array(curve["low"], dtype=float) * 100
            high = np.array(curve["high"], dtype=float) * 100
            ax.fill_between(t, low, high, color=line.get_color(), alpha=0.08, linewidth=0)
        top = max(top, float(np.nanmax(nb)))
    everyone = np.array(curves[TREAT_ALL]["net_benefit"], dtype=float) * 100
    ax.plot(t, everyone, color="grey", linestyle="--", linewidth=1.5, label="call everyone")
    ax.axhline(0, color="black", linewidth=1, label="call no one")
    top = max(top, float(everyone.max()), 1.0)
    ax.set_ylim(-0.25 * top, top * 1.15)
    ax.set_xlim(t.min(), t.max())
    ax.xaxis.set_major_formatter(_PCT)
    _words(
        ax,
        "Risk at which a patient would be called (threshold probability)",
        "Net no-shows reached per 100 appointments",
        "Net benefit: is acting on the model better than calling everyone or no one?",
        "upper right",
    )
    return fig


def _words(ax: Any, xlabel: str, ylabel: str, title: str, legend: str, grid: str = "both") -> None:
    """Axis labels, a medium title, a light grid and a small legend."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize="medium")
    ax.grid(alpha=0.3, axis=grid)
    ax.legend(loc=legend, fontsize="small")


def plot_capacity(
    y_true: Sequence | np.ndarray,
    scores: Mapping[str, Sequence | np.ndarray],
    names: Mapping[str, str] | None = None,
    mark: float | None = None,
) -> Figure:
    """Share of all no-shows reached (y) when the top x% of appointments by each model's P
    are called, with calling at random as the diagonal; `mark` draws the clinic's capacity."""
    label = dict(names or {})
    y = np.asarray(y_true, dtype=float)
    shares = np.linspace(0.01, 1.0, 100)
    fig = Figure(figsize=(5.6, 4.4), layout="constrained")
    ax = fig.subplots()
    positives = max(y.sum(), 1.0)
    for key, p in scores.items():
        q = np.asarray(p, dtype=float)
        order = np.argsort(-q, kind="stable")
        reached = np.cumsum(y[order]) / positives
        k = np.maximum(1, np.round(shares * len(y)).astype(int)) - 1
        ax.plot(shares, reached[k], linewidth=2, label=label.get(key, key))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="calling at random")
    if mark is not None:
        ax.axvline(mark, color="black", linewidth=1, linestyle=":")
        ax.text(mark, 0.02, f" you can call {mark:.0%}", fontsize="small", va="bottom")
    ax.xaxis.set_major_formatter(_PCT)
    ax.yaxis.set_major_formatter(_PCT)
    ax.set(xlim=(0, 1), ylim=(0, 1.01))
    _words(
        ax,
        "Appointments called (the highest P first)",
        "No-shows reached",
        "Capacity: no-shows reached by calling the top K%",
        "lower right",
    )
    return fig


def plot_subgroup_calibration(
    report: Mapping[str, Any], model: str, name: str | None = None
) -> Figure:
    """Observed no-show rate (with its 95% interval) against the mean predicted P of one
    model, one row per subgroup (`noshow.evaluation.subgroups.subgroup_report`)."""
    rows = [g for g in report["groups"] if model in g["models"]]
    fig = Figure(figsize=(7.2, 0.28 * len(rows) + 1.4), layout="constrained")
    ax = fig.subplots()
    pos = np.arange(len(rows))[::-1]
    observed = np.array([g["models"][model]["observed"] for g in rows], dtype=float)
    low = np.array([g["models"][model]["observed_low"] for g in rows], dtype=float)
    high = np.array([g["models"][model]["observed_high"] for g in rows], dtype=float)
    predicted = np.array([g["models"][model]["predicted"] for g in rows], dtype=float)
    ax.errorbar(
        observed,
        pos,
        xerr=[observed - low, high - observed],
        fmt="o",
        color="#2e86c1",
        capsize=2,
        label="observed no-show rate (95% CI)",
    )
    ax.scatter(predicted, pos, marker="D", color="#c0392b", zorder=3, label="mean predicted P")
    ax.set_yticks(pos, [f"{g['group']} ({g['n']:,})" for g in rows], fontsize="small")
    ax.xaxis.set_major_formatter(_PCT)
    ax.set_xlabel("No-show rate")
    ax.set_title(f"Observed and predicted no-shows by subgroup: {name or model}")
    ax.title.set_fontsize("medium")
    ax.grid(alpha=0.3, axis="x")
    ax.legend(loc="lower right", fontsize="small")
    return fig


def plot_fact_effects(
    effects: Mapping[str, Mapping[str, float | None]],
    names: Mapping[str, str] | None = None,
    title: str = "Which facts moved P(no-show)",
    xlabel: str = "Change in P(no-show), points (the fact vs its typical value)",
) -> Figure:
    """Horizontal bars side by side: for each fact (rows, in the order given), each model's
    change in P in percentage points. `effects` is {fact label: {model: change or None}}."""
    label = dict(names or {})
    facts = list(effects)
    models = list(dict.fromkeys(m for per in effects.values() for m in per))
    fig = Figure(figsize=(7.2, 0.42 * max(len(facts), 1) + 1.5), layout="constrained")
    ax = fig.subplots()
    if not facts or not models:
        ax.text(0.5, 0.5, "no facts to show", ha="center", va="center")
        ax.set_axis_off()
        return fig
    height = 0.8 / len(models)
    pos = np.arange(len(facts))[::-1].astype(float)
    for j, model in enumerate(models):
        values = np.array(
            [effects[f].get(model) if effects[f].get(model) is not None else np.nan for f in facts],
            dtype=float,
        )
        offset = (len(models) - 1) / 2 * height - j * height
        ax.barh(pos + offset, values * 100, height=height, label=label.get(model, model))
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(pos, facts, fontsize="small")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:+.0f}"))
    ax.set_xlabel(xlabel, fontsize="small")
    ax.set_title(title)
    ax.title.set_fontsize("medium")
    ax.grid(alpha=0.3, axis="x")
    ax.legend(loc="best", fontsize="small")
    return fig
