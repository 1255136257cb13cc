"""Figures of a report: ROC and precision-recall curves, the reliability diagram and the
confusion matrices. Each returns a matplotlib Figure built without pyplot (Agg rendering, no
global state), so Gradio and scripts can draw them from any thread.

    from noshow.evaluation.plots import plot_roc
    fig = plot_roc({"classifier": (y, p)}, intervals=compare_auc(y, {"classifier": p})["auc"])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from noshow.evaluation.calibration import calibration_error, reliability_table
from noshow.evaluation.metrics import ECE_BINS, check_scores


def _new_axes(ncols: int = 1, width: float = 5.0, height: float = 4.2) -> tuple[Figure, list]:
    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _label(name: str, value: float | None, what: str) -> str:
    return f"{name} ({what} {value:.3f})" if value is not None else f"{name} ({what} n/a)"


def plot_roc(
    curves: Mapping[str, tuple[Any, Any]], intervals: Mapping[str, Mapping[str, Any]] | None = None
) -> Figure:
    """ROC curves, one per name -> (labels, probabilities); the legend gives each ROC-AUC, with
    its 95% interval when `intervals` (compare_auc(...)["auc"], same names) has it."""
    fig, (ax,) = _new_axes()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance (AUC 0.500)")
    for name, (y_true, p) in curves.items():
        y, q = check_scores(y_true, p)
        if 0 < y.sum() < len(y):
            fpr, tpr, _ = roc_curve(y, q)
            auc = float(roc_auc_score(y, q))
            ci = (intervals or {}).get(name) or {}
            if ci.get("low") is not None and ci.get("high") is not None:
                label = f"{name} (AUC {auc:.3f}, 95% CI {ci['low']:.3f}-{ci['high']:.3f})"
            else:
                label = _label(name, auc, "AUC")
            ax.plot(fpr, tpr, label=label)
        else:
            ax.plot([], [], label=_label(name, None, "AUC"))
    ax.set(
        xlabel="False positive rate (1 - specificity)", ylabel="True positive rate (sensitivity)"
    )
    ax.set(xlim=(0, 1), ylim=(0, 1.01), title="ROC curve (test)")
    ax.legend(loc="lower right", fontsize="small")
    return fig


def plot_pr(curves: Mapping[str, tuple[Any, Any]]) -> Figure:
    """Precision-recall curves; the legend gives each average precision (PR-AUC)."""
    fig, (ax,) = _new_axes()
    prevalence = None
    for name, (y_true, p) in curves.items():
        y, q = check_scores(y_true, p)
        if 0 < y.sum() < len(y):
            precision, recall, _ = precision_recall_curve(y, q)
            ax.plot(
                recall, precision, label=_label(name, float(average_precision_score(y, q)), "AP")
            )
            prevalence = y.mean()
        else:
            ax.plot([], [], label=_label(name, None, "AP"))
    if prevalence is not None:
        ax.axhline(
            prevalence,
            linestyle="--",
            color="grey",
            linewidth=1,
            label=f"chance ({prevalence:.3f})",
        )
    ax.set(xlabel="Recall (sensitivity)", ylabel="Precision", xlim=(0, 1), ylim=(0, 1.01))
    ax.set_title("Precision-recall curve (test)")
    ax.legend(loc="upper right", fontsize="small")
    return fig


def plot_calibration(curves: Mapping[str, tuple[Any, Any]], bins: int = ECE_BINS) -> Figure:
    """Reliability diagram: observed no-show rate vs mean predicted P per equal-width bin."""
    fig, (ax,) = _new_axes()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect calibration")
    for name, (y_true, p) in curves.items():
        y, q = check_scores(y_true, p)
        if len(y) == 0:
            continue
        table = reliability_table(y, q, bins)
        ece = calibration_error(table)
        ax.plot(table["mean_p"], table["observed"], marker="o", label=_label(name, ece, "ECE"))
    ax.set(
        xlabel="Mean predicted P(no-show)", ylabel="Observed no-show rate", xlim=(0, 1), ylim=(0, 1)
    )
    ax.set_title("Calibration (test)")
    ax.legend(loc="upper left", fontsize="small")
    return fig


def plot_confusion(metrics_by_name: Mapping[str, Mapping[str, Any]]) -> Figure:
    """One 2x2 confusion matrix per name, from compute_metrics() dicts (tn, fp, fn, tp)."""
    names = list(metrics_by_name) or ["(none)"]
    fig, axes = _new_axes(len(names), width=3.8, height=3.6)
    for ax, name in zip(axes, names, strict=True):
        m = metrics_by_name.get(name, {})
        cells = np.array([[m.get("tn", 0), m.get("fp", 0)], [m.get("fn", 0), m.get("tp", 0)]])
        ax.imshow(cells, cmap="Blues")
        top = cells.max() or 1
        for (i, j), count in np.ndenumerate(cells):
            color = "white" if count > top / 2 else "black"
            ax.text(j, i, f"{count:,}", ha="center", va="center", color=color)
        ax.set_xticks([0, 1], ["attended", "no-show"])
        ax.set_yticks([0, 1], ["attended", "no-show"])
        ax.set(xlabel="Predicted", ylabel="Actual")
        threshold = m.get("threshold")
        ax.set_title(f"{name}\n(threshold {threshold:.3f})" if threshold is not None else name)
    return fig
