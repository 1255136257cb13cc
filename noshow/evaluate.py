"""Metrics, a tabular baseline and plots, so every model is reported next to what a user
would pick instead.

- `choose_threshold` picks the decision threshold on the validation split (max F1).
- `compute_metrics` gives ROC-AUC, PR-AUC (average precision), Brier score, calibration error
  and, at a threshold, F1, sensitivity, specificity, precision, accuracy and the confusion
  matrix.
- `fit_tabular_baseline` / `baseline_predict`: scikit-learn HistGradientBoosting on the
  tabular columns, trained on the same rows and split as the LLM.
- `build_report` puts the model and the baseline side by side (thresholds from validation,
  metrics on test); `noshow.runs.write_eval` saves it.
- `plot_*` return matplotlib Figures (Agg rendering, no pyplot state) for Gradio or files.

    from noshow.evaluate import build_report, fit_tabular_baseline, baseline_predict
    base = fit_tabular_baseline(frame[frame.split == "train"])
    report = build_report(y_val, p_val, y_test, p_test,
                          baseline=(baseline_predict(base, val), baseline_predict(base, test)))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder
from threadpoolctl import threadpool_limits

CATEGORICAL_COLUMNS = ["gender", "neighbourhood", "weekday"]
NUMERIC_COLUMNS = [
    "age",
    "scholarship",
    "hypertension",
    "diabetes",
    "alcoholism",
    "handicap",
    "sms_received",
    "lead_days",
    "booking_hour",
    "prior_appointments",
    "prior_no_shows",
]
FEATURE_COLUMNS = [
    "age",
    "gender",
    "neighbourhood",
    "scholarship",
    "hypertension",
    "diabetes",
    "alcoholism",
    "handicap",
    "sms_received",
    "lead_days",
    "weekday",
    "booking_hour",
    "prior_appointments",
    "prior_no_shows",
]
LABEL_COLUMN = "no_show"
ECE_BINS = 10
THRESHOLD_OBJECTIVES = ("f1", "youden")


class BaselineError(ValueError):
    """The tabular baseline cannot be fitted or applied to this data (e.g. text-only files)."""


# ---------------------------------------------------------------------------------------------
# metrics


def _as_arrays(
    y_true: Sequence | np.ndarray, p: Sequence | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=float).ravel()
    q = np.asarray(p, dtype=float).ravel()
    if y.shape != q.shape:
        raise ValueError(f"labels and probabilities differ in length ({len(y)} vs {len(q)}).")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 (attended) or 1 (no-show).")
    if not np.isfinite(q).all() or (q < 0).any() or (q > 1).any():
        raise ValueError("probabilities must be finite numbers between 0 and 1.")
    return y.astype(int), q


def choose_threshold(
    y_true: Sequence | np.ndarray, p: Sequence | np.ndarray, objective: str = "f1"
) -> float:
    """Return the threshold t (predict no-show when p >= t) that maximizes `objective`.

    `objective` is "f1" (default) or "youden" (sensitivity + specificity - 1). Candidates are
    the observed probabilities; ties go to the larger threshold (fewer alarms for the same
    score). Without both classes (or rows) there is nothing to optimize: 0.5.
    """
    if objective not in THRESHOLD_OBJECTIVES:
        raise ValueError(
            f"objective must be one of {', '.join(THRESHOLD_OBJECTIVES)}, got {objective!r}."
        )
    y, q = _as_arrays(y_true, p)
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return 0.5
    order = np.argsort(-q, kind="stable")
    q_sorted, y_sorted = q[order], y[order]
    tp_cum = np.cumsum(y_sorted)
    fp_cum = np.cumsum(1 - y_sorted)
    # Evaluate each distinct value once, at the last index holding it (p >= t takes them all).
    last = np.r_[np.nonzero(np.diff(q_sorted))[0], len(q_sorted) - 1]
    thresholds, tp, fp = q_sorted[last], tp_cum[last], fp_cum[last]
    fn = positives - tp
    f1 = 2 * tp / (2 * tp + fp + fn)
    score = f1 if objective == "f1" else tp / positives - fp / negatives
    best = score.max()
    return float(thresholds[score >= best - 1e-12].max())


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den else None


def expected_calibration_error(
    y_true: Sequence | np.ndarray, p: Sequence | np.ndarray, bins: int = ECE_BINS
) -> float:
    """Mean |observed rate - mean p| over equal-width bins of p, weighted by bin size."""
    y, q = _as_arrays(y_true, p)
    if len(y) == 0:
        raise ValueError("no rows to compute a calibration error on.")
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(q, edges[1:-1], right=False), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            ece += mask.sum() / len(y) * abs(y[mask].mean() - q[mask].mean())
    return float(ece)


def compute_metrics(
    y_true: Sequence | np.ndarray, p: Sequence | np.ndarray, threshold: float
) -> dict[str, Any]:
    """Return threshold-free and thresholded metrics of P(no-show) `p` against labels.

    Keys: n, positives, prevalence, roc_auc, pr_auc (average precision), brier, ece (10
    equal-width bins), threshold, f1, sensitivity, specificity, precision, accuracy, tn, fp,
    fn, tp, note. Ratios with a zero denominator are None; with one class only the AUCs are
    None and `note` says why.
    """
    y, q = _as_arrays(y_true, p)
    n = len(y)
    if n == 0:
        raise ValueError("no rows to evaluate; check that the split is not empty.")
    positives = int(y.sum())
    note = None
    if 0 < positives < n:
        roc_auc: float | None = float(roc_auc_score(y, q))
        pr_auc: float | None = float(average_precision_score(y, q))
    else:
        roc_auc = pr_auc = None
        only = "no-shows" if positives else "attended appointments"
        note = f"only {only} in these {n} rows: ROC-AUC and PR-AUC are undefined."
    pred = q >= threshold
    tp = int((pred & (y == 1)).sum())
    fp = int((pred & (y == 0)).sum())
    fn = int((~pred & (y == 1)).sum())
    tn = int((~pred & (y == 0)).sum())
    return {
        "n": n,
        "positives": positives,
        "prevalence": positives / n,
        "roc_auc": roc_auc,
        "pr_auc": pr_auc,
        "brier": float(np.mean((q - y) ** 2)),
        "ece": expected_calibration_error(y, q),
        "threshold": float(threshold),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "precision": _ratio(tp, tp + fp),
        "accuracy": (tp + tn) / n,
        "tn": tn,
        "fp": fp,
        "fn": fn,
        "tp": tp,
        "note": note,
    }


def build_report(
    y_val: Sequence | np.ndarray,
    p_val: Sequence | np.ndarray,
    y_test: Sequence | np.ndarray,
    p_test: Sequence | np.ndarray,
    baseline: tuple[Sequence | np.ndarray, Sequence | np.ndarray] | None = None,
) -> dict[str, Any]:
    """Return {"model", "baseline", "threshold", "validation"}: test metrics for the model and
    (when given as (p_val, p_test)) the baseline, each at its own max-F1 threshold chosen on
    validation. "validation" holds the same metrics on the validation split, for tuning."""
    threshold = choose_threshold(y_val, p_val)
    report: dict[str, Any] = {
        "model": compute_metrics(y_test, p_test, threshold),
        "baseline": None,
        "threshold": threshold,
        "validation": {"model": compute_metrics(y_val, p_val, threshold), "baseline": None},
    }
    if baseline is not None:
        pb_val, pb_test = baseline
        tb = choose_threshold(y_val, pb_val)
        report["baseline"] = compute_metrics(y_test, pb_test, tb)
        report["validation"]["baseline"] = compute_metrics(y_val, pb_val, tb)
    return report


# ---------------------------------------------------------------------------------------------
# tabular baseline


def _check_features(df: pd.DataFrame, need_label: bool) -> None:
    need = FEATURE_COLUMNS + ([LABEL_COLUMN] if need_label else [])
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise BaselineError(
            f"the tabular baseline needs column(s) {', '.join(missing)}; Statement/NoShow "
            "files have text only, so report the baseline as unavailable for them."
        )


def _feature_frame(df: pd.DataFrame) -> pd.DataFrame:
    out = df[FEATURE_COLUMNS].copy()
    for c in CATEGORICAL_COLUMNS:
        # One dtype for fit and predict: pandas 3 strings, categories and objects alike.
        out[c] = out[c].astype(object).where(out[c].notna(), np.nan)
    for c in NUMERIC_COLUMNS:
        out[c] = pd.to_numeric(out[c], errors="coerce").astype(float)
    return out


def _one_thread() -> threadpool_limits:
    # OpenMP threads spin-wait on each other: on a busy 2-core machine (CI, or the app while
    # it serves) a 60k-row fit took 36-78 s with 2 threads and 3 s with one.
    return threadpool_limits(limits=1, user_api="openmp")


def fit_tabular_baseline(train_df: pd.DataFrame, seed: int = 0) -> Pipeline:
    """Fit HistGradientBoosting on FEATURE_COLUMNS -> `no_show`; return the pipeline.

    gender, neighbourhood and weekday are ordinal-encoded and treated as native categories;
    a category unseen in training becomes "missing" at prediction time.
    """
    _check_features(train_df, need_label=True)
    y = pd.to_numeric(train_df[LABEL_COLUMN], errors="coerce")
    if y.isna().any() or not y.isin([0, 1]).all():
        raise BaselineError(f"'{LABEL_COLUMN}' must be 0/1 for every training row.")
    if y.nunique() < 2:
        raise BaselineError("the training rows hold one class only; the baseline needs both.")
    encoder = OrdinalEncoder(
        handle_unknown="use_encoded_value",
        unknown_value=np.nan,
        encoded_missing_value=np.nan,
    )
    columns = ColumnTransformer(
        [("categories", encoder, CATEGORICAL_COLUMNS), ("numbers", "passthrough", NUMERIC_COLUMNS)]
    )
    is_categorical = [True] * len(CATEGORICAL_COLUMNS) + [False] * len(NUMERIC_COLUMNS)
    model = HistGradientBoostingClassifier(
        learning_rate=0.1,
        max_iter=200,
        max_leaf_nodes=31,
        min_samples_leaf=50,
        l2_regularization=1.0,
        categorical_features=is_categorical,
        early_stopping=True,  # on a random 10% of the training rows, never on test
        random_state=seed,
    )
    pipeline = Pipeline([("columns", columns), ("model", model)])
    with _one_thread():
        pipeline.fit(_feature_frame(train_df), y.astype(int).to_numpy())
    return pipeline


def baseline_predict(model: Pipeline, df: pd.DataFrame) -> np.ndarray:
    """Return P(no-show) of the fitted baseline for each row of `df`."""
    _check_features(df, need_label=False)
    if len(df) == 0:
        return np.zeros(0)
    with _one_thread():
        proba = model.predict_proba(_feature_frame(df))
    classes = list(model.classes_)
    return proba[:, classes.index(1)].astype(float)


# ---------------------------------------------------------------------------------------------
# plots


def _new_axes(ncols: int = 1, width: float = 5.0, height: float = 4.2) -> tuple[Figure, list]:
    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _label(name: str, value: float | None, what: str) -> str:
    return f"{name} ({what} {value:.3f})" if value is not None else f"{name} ({what} n/a)"


def plot_roc(curves: Mapping[str, tuple[Any, Any]]) -> Figure:
    """ROC curves, one per name -> (labels, probabilities); the legend gives each ROC-AUC."""
    fig, (ax,) = _new_axes()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance (AUC 0.500)")
    for name, (y_true, p) in curves.items():
        y, q = _as_arrays(y_true, p)
        if 0 < y.sum() < len(y):
            fpr, tpr, _ = roc_curve(y, q)
            ax.plot(fpr, tpr, label=_label(name, float(roc_auc_score(y, q)), "AUC"))
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
        y, q = _as_arrays(y_true, p)
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
    edges = np.linspace(0.0, 1.0, bins + 1)
    for name, (y_true, p) in curves.items():
        y, q = _as_arrays(y_true, p)
        if len(y) == 0:
            continue
        index = np.clip(np.digitize(q, edges[1:-1]), 0, bins - 1)
        used = [b for b in range(bins) if (index == b).any()]
        mean_p = [q[index == b].mean() for b in used]
        rate = [y[index == b].mean() for b in used]
        ece = expected_calibration_error(y, q, bins)
        ax.plot(mean_p, rate, marker="o", label=_label(name, ece, "ECE"))
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


def _first_column(df: pd.DataFrame, names: Sequence[str]) -> str | None:
    return next((n for n in names if n in df.columns and df[n].notna().any()), None)


def plot_training_curves(metrics_df: pd.DataFrame) -> Figure:
    """Training loss (and eval loss) and validation ROC-AUC against the step.

    Reads metrics.jsonl records: `step`, `loss`, `val_auc` (or `eval_roc_auc`) and
    `val_loss` (or `eval_loss`), as the training loop writes them.
    """
    fig, (loss_ax, auc_ax) = _new_axes(2)
    if metrics_df is None or metrics_df.empty or "step" not in metrics_df.columns:
        for ax in (loss_ax, auc_ax):
            ax.text(0.5, 0.5, "no metrics yet", ha="center", va="center", transform=ax.transAxes)
        return fig
    df = metrics_df.sort_values("step")
    val_loss = _first_column(df, ["val_loss", "eval_loss"])
    for column, label in (("loss", "training loss"), (val_loss, "validation loss")):
        if column is not None and column in df.columns and df[column].notna().any():
            part = df[["step", column]].dropna()
            loss_ax.plot(
                part["step"], part[column], label=label, marker="." if len(part) < 30 else None
            )
    loss_ax.set(xlabel="Step", ylabel="Loss", title="Loss")
    if loss_ax.lines:
        loss_ax.legend(fontsize="small")
    auc_col = _first_column(df, ["val_auc", "eval_roc_auc", "val_roc_auc", "eval_auc"])
    if auc_col:
        part = df[["step", auc_col]].dropna()
        best = part[auc_col].max()
        auc_ax.plot(part["step"], part[auc_col], marker="o", label=f"validation (best {best:.3f})")
        auc_ax.legend(fontsize="small")
    else:
        auc_ax.text(
            0.5, 0.5, "no validation yet", ha="center", va="center", transform=auc_ax.transAxes
        )
    auc_ax.set(xlabel="Step", ylabel="ROC-AUC", title="Validation ROC-AUC")
    return fig
