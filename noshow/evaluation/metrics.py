"""Metrics of P(no-show) against labels: the threshold-free ones, the decision threshold
chosen on validation, the ones at that threshold, and how an AUC with its interval is written.

    from noshow.evaluation.metrics import choose_threshold, compute_metrics, format_auc
    threshold = choose_threshold(y_val, p_val)           # max F1 on validation
    m = compute_metrics(y_test, p_test, threshold)       # roc_auc, pr_auc, brier, ece, f1, ...
    format_auc(m)                                        # "0.728 (95% CI 0.722-0.734)"

Every function takes labels 0 (attended) / 1 (no-show) and probabilities in [0, 1], and says
clearly what is wrong with anything else (`check_scores`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from noshow.evaluation.calibration import calibration_error, reliability_table

ECE_BINS = 10
THRESHOLD_OBJECTIVES = ("f1", "youden")


def check_scores(
    y_true: Sequence | np.ndarray, p: Sequence | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(labels as 0/1 ints, P as floats), both flat; ValueError saying what is wrong when the
    lengths differ, a label is not 0/1 or a P is not a finite number in [0, 1]."""
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
    y, q = check_scores(y_true, p)
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
    y, q = check_scores(y_true, p)
    if len(y) == 0:
        raise ValueError("no rows to compute a calibration error on.")
    return calibration_error(reliability_table(y, q, bins))


def compute_metrics(
    y_true: Sequence | np.ndarray, p: Sequence | np.ndarray, threshold: float
) -> dict[str, Any]:
    """Return threshold-free and thresholded metrics of P(no-show) `p` against labels.

    Keys: n, positives, prevalence, mean_p (next to prevalence it shows calibration in the
    large), roc_auc, pr_auc (average precision), brier, ece (10 equal-width bins), threshold,
    f1, sensitivity, specificity, precision, accuracy, tn, fp, fn, tp, note. Ratios with a
    zero denominator are None; with one class only the AUCs are None and `note` says why.
    """
    y, q = check_scores(y_true, p)
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
        "mean_p": float(q.mean()),
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


def format_auc(metrics: Mapping[str, Any]) -> str:
    """ "0.728 (95% CI 0.722-0.734)" from a metrics dict with roc_auc(_low/_high); "n/a"
    without an AUC; the bare figure when no interval was computed."""
    auc = metrics.get("roc_auc")
    if auc is None:
        return "n/a"
    low, high = metrics.get("roc_auc_low"), metrics.get("roc_auc_high")
    if low is None or high is None:
        return f"{auc:.3f}"
    return f"{auc:.3f} (95% CI {low:.3f}-{high:.3f})"
