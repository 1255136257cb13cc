"""ROC-AUC with 95% intervals, and paired differences between models scored on the same rows,
so a difference is called a win only when its interval says so.

    from noshow.evaluation.intervals import compare_auc
    r = compare_auc(y, {"adapter": p, "baseline": q}, [("adapter", "baseline")], groups=patients)
    r["auc"]["adapter"]              # {estimate, low, high, se}
    r["differences"][0]["text"]      # "No clear difference between adapter and baseline: ..."

DeLong's method by default: a closed form, with no resampling, so it stays cheap on a whole
test split. `method="bootstrap"` resamples (seeded). With `groups` (patient ids) both treat a
patient's appointments as one unit: clustered DeLong (Obuchowski 1997) or a patient
bootstrap, because a patient's appointments are not independent evidence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from noshow.evaluation.metrics import check_scores

INTERVAL_METHODS = ("delong", "bootstrap")
LEVEL = 0.95
RESAMPLES = 1000


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
    arrays = [check_scores(y_true, scores[k]) for k in keys]
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
