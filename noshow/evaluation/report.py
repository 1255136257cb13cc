"""Metrics with 95% intervals, the report every run writes, and plots, so every model is
reported next to what a user would pick instead, and a difference is called a win only when
its interval says so.

- `choose_threshold` picks the decision threshold on the validation split (max F1).
- `compute_metrics` gives ROC-AUC, PR-AUC (average precision), Brier score, calibration error
  (ECE), mean P and, at a threshold, F1, sensitivity, specificity, precision, accuracy and the
  confusion matrix.
- `compare_auc` gives each model's ROC-AUC with a 95% interval and the paired differences
  between models scored on the same rows, each with an interval and a sentence
  (`describe_difference`: "no clear difference" when the interval covers 0). DeLong's method
  by default (exact, ~0.1 s for 35k rows); `method="bootstrap"` resamples (seeded). With
  `groups` (patient ids) both treat a patient's appointments as one unit: clustered DeLong
  (Obuchowski 1997) or a patient bootstrap.
- `build_report` puts the model (raw and calibrated), the tuned and untuned tabular
  baselines and the hybrid side by side: thresholds from validation, metrics and intervals on
  test; `noshow.training.runs.write_eval` saves it as eval.json.
- `evaluate_run` is the end of every training run, written once: it fits the calibrator
  (noshow.evaluation.calibration), tunes the baseline (noshow.evaluation.baseline), fits the hybrid (noshow.evaluation.hybrid),
  all on train/validation rows, then calls `build_report` on test.
- `plot_*` return matplotlib Figures (Agg rendering, no pyplot state) for Gradio or files.
- The tabular baseline lives in `noshow.evaluation.baseline`; `fit_tabular_baseline`, `baseline_predict`
  and `BaselineError` are still importable from here for older callers.

    from noshow.evaluation.report import evaluate_run
    run = evaluate_run(train, validation, test, p_val, p_test, seed=0)   # adapter's raw P
    run.report                      # eval.json
    run.calibrator.save(adapter_dir); run.hybrid.save(adapter_dir)
    run.scores                      # every model's P per validation/test row
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

# fit_tabular_baseline, baseline_predict and BaselineError are imported from here by older
# callers (training.py, compare_views.py); new code imports noshow.evaluation.baseline.
from noshow.evaluation.baseline import (
    BaselineError,
    TunedBaseline,
    baseline_predict,
    fit_tabular_baseline,
    tune_tabular_baseline,
)
from noshow.evaluation.calibration import (
    CalibrationError,
    Calibrator,
    calibration_error,
    fit_calibrator,
    reliability_table,
)
from noshow.evaluation.hybrid import Hybrid, HybridError, fit_hybrid

ECE_BINS = 10
THRESHOLD_OBJECTIVES = ("f1", "youden")
INTERVAL_METHODS = ("delong", "bootstrap")
LEVEL = 0.95
RESAMPLES = 1000
# The rows of a report, in the order tables show them, with the names people read.
REPORT_NAMES = {
    "model": "this adapter",
    "model_uncalibrated": "this adapter, before calibration",
    "hybrid": "hybrid (adapter + tabular)",
    "baseline": "tuned tabular baseline",
    "baseline_untuned": "untuned tabular baseline",
}
# Paired ROC-AUC differences a report states (first minus second), when both rows exist.
REPORT_PAIRS = (
    ("model", "baseline"),
    ("hybrid", "baseline"),
    ("hybrid", "model"),
    ("model", "baseline_untuned"),
    ("baseline", "baseline_untuned"),
)


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
    return calibration_error(reliability_table(y, q, bins))


def compute_metrics(
    y_true: Sequence | np.ndarray, p: Sequence | np.ndarray, threshold: float
) -> dict[str, Any]:
    """Return threshold-free and thresholded metrics of P(no-show) `p` against labels.

    Keys: n, positives, prevalence, mean_p (next to prevalence it shows calibration in the
    large), roc_auc, pr_auc (average precision), brier, ece (10 equal-width bins), threshold, f1, sensitivity, specificity, precision, accuracy, tn, fp,
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


# ---------------------------------------------------------------------------------------------
# intervals


def _z(level: float) -> float:
    from scipy.stats import norm

    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1 (e.g. 0.95), got {level}.")
    return float(norm.ppf(0.5 + level / 2))


def _midranks(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x, axis=-1)  # ties share their mean rank, as the AUC counts them half


def _delong(
    y: np.ndarray, scores: np.ndarray, groups: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """AUCs (k,) and their covariance (k, k) by DeLong et al. (1988) with the fast midrank
    form of Sun & Xu (2014); with `groups`, the clustered form of Obuchowski (1997), where
    the placement values of one cluster (a patient's appointments) are summed before the
    variance is taken, so correlated rows are not counted as independent evidence."""
    pos, neg = scores[:, y == 1], scores[:, y == 0]  # (k, m), (k, n)
    m, n = pos.shape[1], neg.shape[1]
    all_ranks = _midranks(np.concatenate([pos, neg], axis=1))  # (k, m + n)
    v10 = (all_ranks[:, :m] - _midranks(pos)) / n  # per positive: share of negatives below it
    v01 = 1.0 - (all_ranks[:, m:] - _midranks(neg)) / m  # per negative: share of positives above
    aucs = v10.mean(axis=1)
    if groups is None:
        cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
        return aucs, cov
    _, cluster = np.unique(groups, return_inverse=True)
    n_clusters = int(cluster.max()) + 1
    c_pos, c_neg = cluster[y == 1], cluster[y == 0]
    m_c = np.bincount(c_pos, minlength=n_clusters)  # positives per cluster
    n_c = np.bincount(c_neg, minlength=n_clusters)
    # (k, clusters): summed placements minus what they would be at the AUC itself
    d10 = np.stack([np.bincount(c_pos, w, minlength=n_clusters) for w in v10]) - np.outer(aucs, m_c)
    d01 = np.stack([np.bincount(c_neg, w, minlength=n_clusters) for w in v01]) - np.outer(aucs, n_c)
    f = n_clusters / (n_clusters - 1)
    s10 = f * (d10 @ d10.T) / m
    s01 = f * (d01 @ d01.T) / n
    s11 = f * (d10 @ d01.T)
    return aucs, s10 / m + s01 / n + (s11 + s11.T) / (m * n)


def _bootstrap_aucs(
    y: np.ndarray,
    scores: np.ndarray,
    resamples: int,
    seed: int,
    groups: np.ndarray | None,
) -> np.ndarray:
    """(resamples, k) ROC-AUCs of the k score rows on the same resamples (rows, or whole
    clusters when `groups` is given), drawn from one seeded generator in a fixed order.

    Sorted once per model, a resample is a vector of counts w: AUC = sum over score levels
    of w_pos x (w_neg below + half of w_neg tied) / (W_pos x W_neg), a cumulative sum instead of
    a sort. Resamples without both classes give NaN."""
    rng = np.random.default_rng(seed)
    n = len(y)
    prepared = []
    for s in scores:
        order = np.argsort(s, kind="stable")
        ordered = s[order]
        starts = np.r_[0, np.flatnonzero(np.diff(ordered)) + 1]  # first row of each score level
        prepared.append((order, y[order].astype(float), starts if len(starts) < n else None))
    if groups is not None:
        _, cluster = np.unique(groups, return_inverse=True)
        units = int(cluster.max()) + 1
    else:
        cluster, units = None, n
    out = np.empty((resamples, len(scores)))
    chunk = max(1, 4_000_000 // max(n, units))  # ~32 MB per (chunk, n) array
    for first in range(0, resamples, chunk):
        b = min(chunk, resamples - first)
        draws = rng.integers(0, units, size=(b, units)) + (np.arange(b) * units)[:, None]
        counts = np.bincount(draws.ravel(), minlength=b * units).reshape(b, units).astype(float)
        weights = counts if cluster is None else counts[:, cluster]  # (b, n)
        for k, (order, y_sorted, starts) in enumerate(prepared):
            w = np.take(weights, order, axis=1)
            pos = w * y_sorted
            neg = w - pos
            if starts is not None:  # tied scores form one level
                pos = np.add.reduceat(pos, starts, axis=1)
                neg = np.add.reduceat(neg, starts, axis=1)
            below = np.cumsum(neg, axis=1)
            below -= 0.5 * neg  # strictly below, plus half of the ties
            with np.errstate(invalid="ignore", divide="ignore"):
                out[first : first + b, k] = np.einsum("ij,ij->i", pos, below) / (
                    pos.sum(axis=1) * neg.sum(axis=1)
                )
    return out


def describe_difference(estimate: float, low: float, high: float, a: str, b: str) -> str:
    """One sentence on a paired ROC-AUC difference a - b with its interval: "no clear
    difference" when the interval covers 0, else who is ahead and by how much."""
    ci = f"95% CI {low:+.3f} to {high:+.3f}"
    if low <= 0 <= high:
        return f"No clear difference between {a} and {b}: {estimate:+.3f} ROC-AUC ({ci})."
    word, gap = ("ahead of", estimate) if low > 0 else ("behind", -estimate)
    text = f"{a} is {word} {b} by {gap:.3f} ROC-AUC ({ci})."
    return text[:1].upper() + text[1:]  # names may start in lower case ("this adapter")


def _verdict(low: float, high: float) -> str:
    return "no clear difference" if low <= 0 <= high else ("ahead" if low > 0 else "behind")


def compare_auc(
    y_true: Sequence | np.ndarray,
    scores: Mapping[str, Sequence | np.ndarray],
    pairs: Sequence[tuple[str, str]] = (),
    *,
    method: str = "delong",
    level: float = LEVEL,
    groups: Sequence | np.ndarray | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
    names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """ROC-AUC with a `level` interval for each model in `scores` (all scored on the same rows
    `y_true`), and for each (a, b) in `pairs` the paired difference AUC_a - AUC_b.

    method "delong": normal intervals from DeLong's covariance (clustered by `groups` when
    given); "bootstrap": percentile intervals over `resamples` resamples of rows (or of whole
    groups), reproducible for a `seed`. Returns {"method", "level", "unit", "resamples",
    "seed", "auc": {name: {estimate, low, high, se}}, "differences": [{a, b, estimate, low,
    high, se, verdict, text}]}; `names` gives the display names the sentences use. With one
    class only, estimates and bounds are None.
    """
    if method not in INTERVAL_METHODS:
        raise ValueError(f"method must be one of {', '.join(INTERVAL_METHODS)}, got {method!r}.")
    keys = list(scores)
    if not keys:
        raise ValueError("no models to compare; pass at least one name -> probabilities.")
    unknown = sorted({k for pair in pairs for k in pair} - set(keys))
    if unknown:
        raise ValueError(f"pairs name model(s) not in scores: {', '.join(unknown)}.")
    arrays = [_as_arrays(y_true, scores[k]) for k in keys]
    y = arrays[0][0]
    matrix = np.stack([q for _, q in arrays])  # (k, n)
    g = None
    if groups is not None:
        g = np.asarray(groups).ravel()
        if len(g) != len(y):
            raise ValueError(f"groups and labels differ in length ({len(g)} vs {len(y)}).")
    z = _z(level)
    result: dict[str, Any] = {
        "method": method,
        "level": level,
        "unit": "row" if g is None else "group",
        "resamples": resamples if method == "bootstrap" else None,
        "seed": seed if method == "bootstrap" else None,
        "auc": {},
        "differences": [],
    }
    label = dict(names or {})
    positives = int(y.sum())
    if not 0 < positives < len(y):
        empty = {"estimate": None, "low": None, "high": None, "se": None}
        result["auc"] = {k: dict(empty) for k in keys}
        result["differences"] = [
            {"a": a, "b": b, **empty, "verdict": None, "text": "ROC-AUC is undefined here."}
            for a, b in pairs
        ]
        return result
    estimates = np.array([roc_auc_score(y, q) for q in matrix])
    index = {k: i for i, k in enumerate(keys)}
    tail = (1 - level) / 2 * 100
    if method == "delong":
        if g is not None and len(np.unique(g)) < 2:
            raise ValueError("clustered intervals need at least two groups.")
        _, cov = _delong(y, matrix, g)
        se = np.sqrt(np.clip(np.diag(cov), 0, None))
        lows, highs = np.clip(estimates - z * se, 0, 1), np.clip(estimates + z * se, 0, 1)
    else:
        if resamples < 2:
            raise ValueError(f"resamples must be at least 2, got {resamples}.")
        boot = _bootstrap_aucs(y, matrix, resamples, seed, g)
        se = np.nanstd(boot, axis=0, ddof=1)
        lows, highs = np.nanpercentile(boot, [tail, 100 - tail], axis=0)
    for k, i in index.items():
        result["auc"][k] = {
            "estimate": float(estimates[i]),
            "low": float(lows[i]),
            "high": float(highs[i]),
            "se": float(se[i]),
        }
    for a, b in pairs:
        i, j = index[a], index[b]
        estimate = float(estimates[i] - estimates[j])
        if method == "delong":
            d_se = float(np.sqrt(max(cov[i, i] + cov[j, j] - 2 * cov[i, j], 0.0)))
            low, high = estimate - z * d_se, estimate + z * d_se
        else:
            diff = boot[:, i] - boot[:, j]
            d_se = float(np.nanstd(diff, ddof=1))
            low, high = (float(v) for v in np.nanpercentile(diff, [tail, 100 - tail]))
        result["differences"].append(
            {
                "a": a,
                "b": b,
                "estimate": estimate,
                "low": float(low),
                "high": float(high),
                "se": d_se,
                "verdict": _verdict(low, high),
                "text": describe_difference(estimate, low, high, label.get(a, a), label.get(b, b)),
            }
        )
    return result


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


# ---------------------------------------------------------------------------------------------
# the report


def build_report(
    y_val: Sequence | np.ndarray,
    p_val: Sequence | np.ndarray,
    y_test: Sequence | np.ndarray,
    p_test: Sequence | np.ndarray,
    baseline: tuple[Sequence | np.ndarray, Sequence | np.ndarray] | None = None,
    *,
    untuned_baseline: tuple[Sequence | np.ndarray, Sequence | np.ndarray] | None = None,
    hybrid: tuple[Sequence | np.ndarray, Sequence | np.ndarray] | None = None,
    calibrator: Calibrator | None = None,
    groups: Sequence | np.ndarray | None = None,
    interval_method: str = "delong",
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """The evaluation report (eval.json): test metrics of every model at its own max-F1
    threshold chosen on validation, each ROC-AUC with its 95% interval, and the paired
    differences on the same test rows in numbers and words.

    `p_val`/`p_test` are the adapter's raw P(no-show). With `calibrator` (fitted on validation,
    noshow.evaluation.calibration) "model" holds the calibrated scores the adapter will show, its
    threshold chosen on calibrated validation scores, and "model_uncalibrated" the raw ones.
    `baseline` is the tuned tabular baseline's (p_val, p_test); `untuned_baseline` and `hybrid`
    likewise. `groups` (the test rows' patient ids) makes the intervals count a patient's
    appointments as one unit. Keys: model, model_uncalibrated, baseline, baseline_untuned,
    hybrid (metrics dicts with roc_auc_low/roc_auc_high, or None), threshold (the model's),
    calibration, validation {same keys}, intervals {method, level, unit, ...}, differences
    [{a, b, estimate, low, high, verdict, text}], names {key: display name}.
    """
    rows: dict[str, tuple[Any, Any]] = {}
    if calibrator is not None:
        rows["model"] = (calibrator.apply(p_val), calibrator.apply(p_test))
        rows["model_uncalibrated"] = (p_val, p_test)
    else:
        rows["model"] = (p_val, p_test)
    for key, pair in (
        ("hybrid", hybrid),
        ("baseline", baseline),
        ("baseline_untuned", untuned_baseline),
    ):
        if pair is not None:
            rows[key] = pair
    report: dict[str, Any] = {key: None for key in REPORT_NAMES}
    report["validation"] = {key: None for key in REPORT_NAMES}
    for key, (pv, pt) in rows.items():
        threshold = choose_threshold(y_val, pv)
        report[key] = compute_metrics(y_test, pt, threshold)
        report["validation"][key] = compute_metrics(y_val, pv, threshold)
    report["threshold"] = report["model"]["threshold"]
    report["calibration"] = calibrator.to_dict() if calibrator is not None else None
    pairs = [(a, b) for a, b in REPORT_PAIRS if a in rows and b in rows]
    auc = compare_auc(
        y_test,
        {key: pt for key, (_, pt) in rows.items()},
        pairs,
        method=interval_method,
        groups=groups,
        resamples=resamples,
        seed=seed,
        names=REPORT_NAMES,
    )
    for key in rows:
        report[key]["roc_auc_low"] = auc["auc"][key]["low"]
        report[key]["roc_auc_high"] = auc["auc"][key]["high"]
    report["intervals"] = {k: auc[k] for k in ("method", "level", "unit", "resamples", "seed")}
    report["differences"] = auc["differences"]
    report["names"] = dict(REPORT_NAMES)
    return report


# ---------------------------------------------------------------------------------------------
# everything a finished run reports


@dataclass
class RunEvaluation:
    """What `evaluate_run` fitted and measured; the lead's recipe saves the parts."""

    report: dict[str, Any]  # eval.json
    calibrator: Calibrator  # save with the adapter: calibrator.save(adapter_dir)
    hybrid: Hybrid | None  # likewise hybrid.save(adapter_dir); None without tabular columns
    baseline: TunedBaseline | None
    scores: pd.DataFrame  # one row per validation/test row scored: every model's P
    notes: list[str] = field(default_factory=list)


def _scored_rows(frame: pd.DataFrame, p: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    if "no_show" not in frame.columns:
        raise ValueError(f"the {what} rows have no no_show column to evaluate against.")
    y, q = _as_arrays(frame["no_show"].to_numpy(), p)
    return y, q


def _in_order(frame: pd.DataFrame, ids: Sequence, what: str) -> pd.DataFrame:
    """`frame`'s rows in the order of the record ids the adapter scored."""
    wanted = pd.Index(np.asarray(ids))
    position = pd.Index(frame["record_id"]).get_indexer(wanted)
    if (position < 0).any():
        missing = wanted[position < 0][:5].tolist()
        raise ValueError(f"{what} rows lack scored record_id(s) {missing}.")
    return frame.iloc[position]


def _patients(frame: pd.DataFrame) -> np.ndarray | None:
    return frame["patient_id"].to_numpy() if "patient_id" in frame.columns else None


def evaluate_run(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    test: pd.DataFrame,
    p_val: Sequence | np.ndarray,
    p_test: Sequence | np.ndarray,
    *,
    record_ids: tuple[Sequence, Sequence] | None = None,
    tuning_rows: pd.DataFrame | None = None,
    seed: int = 0,
    interval_method: str = "delong",
) -> RunEvaluation:
    """The end-of-run evaluation, written once: fit the calibrator on the adapter's
    validation scores, tune the tabular baseline on train + validation, fit the untuned one,
    fit the hybrid on validation, then build the report on test.

    `p_val` and `p_test` are the adapter's raw P for the rows of `validation` and `test`, in
    the frames' order, or in the order of `record_ids` = (validation ids, test ids) when
    given (the frames are then put in that order; an id missing from a frame is an error).
    `tuning_rows` are the validation rows the baseline is tuned on (default `validation`;
    pass the whole validation split when the adapter scored only part of it). Test labels are
    read only by `build_report`, after every model is fitted. Without the tabular columns
    (Statement/NoShow files) the baselines and the hybrid are left out and a note says so.
    Intervals count a patient's appointments as one unit when the rows carry patient_id.
    """
    started = time.perf_counter()
    if record_ids is not None:
        validation = _in_order(validation, record_ids[0], "validation")
        test = _in_order(test, record_ids[1], "test")
    y_val, p_val = _scored_rows(validation, p_val, "validation")
    y_test, p_test = _scored_rows(test, p_test, "test")
    notes: list[str] = []
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    try:
        calibrator = fit_calibrator(p_val, y_val, seed=seed)
    except CalibrationError as e:  # e.g. validation rows of one class: P is shown unchanged
        calibrator = Calibrator()
        notes.append(f"calibration skipped: {e}")
    calibrator = replace(calibrator, threshold=choose_threshold(y_val, calibrator.apply(p_val)))
    timings["calibration_s"] = time.perf_counter() - t0
    # The hybrid and the table take the adapter's P as predict_proba shows it: calibrated.
    c_val, c_test = calibrator.apply(p_val), calibrator.apply(p_test)

    tuned = hybrid = None
    baseline = untuned = blend = None
    try:
        t0 = time.perf_counter()
        tuning = validation if tuning_rows is None else tuning_rows
        tuned = tune_tabular_baseline(train, tuning, seed=seed)
        timings["baseline_tuning_s"] = time.perf_counter() - t0
        baseline = (tuned.predict(validation), tuned.predict(test))
    except BaselineError as e:  # Statement/NoShow data has no tabular columns
        notes.append(f"tabular baseline unavailable: {e}")
    try:  # the untuned one needs train rows only
        t0 = time.perf_counter()
        untuned_model = fit_tabular_baseline(train, seed=seed)
        timings["baseline_untuned_s"] = time.perf_counter() - t0
        untuned = (
            baseline_predict(untuned_model, validation),
            baseline_predict(untuned_model, test),
        )
    except BaselineError as e:
        if baseline is not None:  # else the note above already says why
            notes.append(f"untuned tabular baseline unavailable: {e}")
    if baseline is not None:
        try:
            t0 = time.perf_counter()
            hybrid = fit_hybrid(c_val, baseline[0], y_val, groups=_patients(validation), seed=seed)
            h_val = hybrid.predict(c_val, baseline[0])
            params = tuned.params if tuned is not None else None
            hybrid = replace(
                hybrid, threshold=choose_threshold(y_val, h_val), baseline_params=params
            )
            blend = (h_val, hybrid.predict(c_test, baseline[1]))
            timings["hybrid_s"] = time.perf_counter() - t0
        except HybridError as e:
            notes.append(f"hybrid unavailable: {e}")
            hybrid = None

    t0 = time.perf_counter()
    report = build_report(
        y_val,
        p_val,
        y_test,
        p_test,
        baseline=baseline,
        untuned_baseline=untuned,
        hybrid=blend,
        calibrator=calibrator,
        groups=_patients(test),
        interval_method=interval_method,
        seed=seed,
    )
    timings["report_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - started
    report["baseline_tuning"] = tuned.to_dict() if tuned is not None else None
    report["hybrid_model"] = hybrid.to_dict() if hybrid is not None else None
    report["notes"] = notes
    report["quality_timings"] = {k: round(v, 2) for k, v in timings.items()}

    ids = {
        name: frame["record_id"].to_numpy()
        if "record_id" in frame.columns
        else np.arange(len(frame))
        for name, frame in (("validation", validation), ("test", test))
    }
    scores = pd.DataFrame(
        {
            "record_id": np.concatenate([ids["validation"], ids["test"]]),
            "split": ["validation"] * len(y_val) + ["test"] * len(y_test),
            "label": np.concatenate([y_val, y_test]),
            "p_no_show": np.concatenate([c_val, c_test]),
            "p_no_show_raw": np.concatenate([p_val, p_test]),
        }
    )
    for column, pair in (
        ("p_baseline", baseline),
        ("p_baseline_untuned", untuned),
        ("p_hybrid", blend),
    ):
        if pair is not None:
            scores[column] = np.concatenate(pair)
    return RunEvaluation(
        report=report,
        calibrator=calibrator,
        hybrid=hybrid,
        baseline=tuned,
        scores=scores,
        notes=notes,
    )


# ---------------------------------------------------------------------------------------------
# plots


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
        y, q = _as_arrays(y_true, p)
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
    for name, (y_true, p) in curves.items():
        y, q = _as_arrays(y_true, p)
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
