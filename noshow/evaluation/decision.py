"""What acting on a model is worth to a clinic: net benefit across threshold probabilities
(decision-curve analysis, Vickers & Elkin 2006) next to calling everyone and calling no one,
and capacity (the share of no-shows reached, and calls per no-show reached, when only the
top K% of appointments by P can be called), each with a 95% interval clustered by patient.

    from noshow.evaluation.decision import capacity_table, decision_curves
    curves = decision_curves(y, {"model": p, "baseline": q}, groups=patients)
    curves["text"]        # "Between 12% and 35% this adapter is the better policy; ..."
    cap = capacity_table(y, {"model": p}, groups=patients)
    cap["models"]["model"][1]   # {share: 0.1, called, reached, recall, recall_low, ...}

Net benefit at a threshold probability pt (call a patient when P >= pt) is
TP/N - FP/N x pt/(1 - pt): the no-shows reached per appointment, less the wasted calls
weighted by the odds at which a clinic is indifferent between a call and none. Calling
everyone gives prevalence - (1 - prevalence) x pt/(1 - pt); calling no one gives 0.

Intervals are cluster-robust normal intervals (the sandwich variance, with a patient's
appointments summed before squaring, and the G/(G-1) small-sample factor): for net benefit,
a mean of per-row contributions; for the share of no-shows reached, a ratio (delta method),
with the called set held fixed at the top K% of these rows. They use the same patient
clusters as the ROC-AUC's clustered DeLong interval (`noshow.evaluation.intervals`). Without
`groups` every row is its own cluster.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from noshow.evaluation.intervals import LEVEL
from noshow.evaluation.intervals import _z as _z_uncached
from noshow.evaluation.metrics import check_scores

# Threshold probabilities a clinic would consider: 5% to 50% in steps of one point.
THRESHOLDS = tuple(round(0.05 + 0.01 * k, 2) for k in range(46))
CAPACITY_SHARES = (0.05, 0.10, 0.20, 0.30)
TREAT_ALL = "call_everyone"
TREAT_NONE = "call_no_one"
POLICY_NAMES = {TREAT_ALL: "calling everyone", TREAT_NONE: "calling no one"}


# ----------------------------------------------------------------------------- intervals


@functools.lru_cache(maxsize=8)
def _z(level: float) -> float:
    """The normal quantile of a two-sided `level` interval (scipy's ppf, once per level:
    a report asks for it hundreds of times)."""
    return _z_uncached(level)


def _clusters(groups: Sequence | np.ndarray | None, n: int) -> tuple[np.ndarray, int]:
    """(cluster code per row, number of clusters): every row its own without `groups`."""
    if groups is None:
        return np.arange(n), n
    g = np.asarray(groups).ravel()
    if len(g) != n:
        raise ValueError(f"groups and labels differ in length ({len(g)} vs {n}).")
    _, codes = np.unique(g, return_inverse=True)
    return codes, int(codes.max()) + 1 if n else 0


def _cluster_sums(values: np.ndarray, codes: np.ndarray, clusters: int) -> np.ndarray:
    """(k, clusters) sums of each row of `values` (k, n) over the rows of each cluster."""
    return np.stack([np.bincount(codes, row, minlength=clusters) for row in values])


def cluster_mean(
    values: np.ndarray,
    codes: np.ndarray,
    clusters: int,
    level: float = LEVEL,
) -> dict[str, np.ndarray]:
    """Means of the rows of `values` (k, n) with cluster-robust normal intervals:
    var = G/(G-1) x sum over clusters of (sum of v - mean)^2 / n^2. {estimate, low, high, se},
    each (k,); se is NaN with fewer than two clusters."""
    values = np.atleast_2d(np.asarray(values, dtype=float))
    n = values.shape[1]
    mean = values.mean(axis=1)
    if clusters < 2:
        se = np.full(len(mean), np.nan)
    else:
        resid = _cluster_sums(values - mean[:, None], codes, clusters)
        se = np.sqrt(clusters / (clusters - 1) * (resid**2).sum(axis=1)) / n
    z = _z(level)
    return {"estimate": mean, "low": mean - z * se, "high": mean + z * se, "se": se}


def cluster_ratio(
    num: np.ndarray,
    den: np.ndarray,
    codes: np.ndarray,
    clusters: int,
    level: float = LEVEL,
) -> dict[str, np.ndarray]:
    """sum(num) / sum(den) per row of `num` (k, n) over one `den` (n,), with cluster-robust
    normal intervals by the delta method: z_i = num_i - R x den_i, var = G/(G-1) x sum over
    clusters of (sum z)^2 / (sum den)^2. NaN where sum(den) is 0."""
    num = np.atleast_2d(np.asarray(num, dtype=float))
    den = np.asarray(den, dtype=float)
    total = den.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = num.sum(axis=1) / total
    if clusters < 2 or total == 0:
        se = np.full(len(ratio), np.nan)
    else:
        z_rows = num - ratio[:, None] * den[None, :]
        sums = _cluster_sums(z_rows, codes, clusters)
        se = np.sqrt(clusters / (clusters - 1) * (sums**2).sum(axis=1)) / total
    z = _z(level)
    return {"estimate": ratio, "low": ratio - z * se, "high": ratio + z * se, "se": se}


def _f(value: Any) -> float | None:
    """A JSON-safe float: None for NaN."""
    value = float(value)
    return None if math.isnan(value) else value


# ----------------------------------------------------------------------------- net benefit


def net_benefit(
    y_true: Sequence | np.ndarray, p: Sequence | np.ndarray, thresholds: Sequence[float]
) -> np.ndarray:
    """Net benefit of calling the patients with P >= pt, for each pt in `thresholds`:
    TP/N - FP/N x pt/(1 - pt)."""
    y, q = check_scores(y_true, p)
    t = np.asarray(thresholds, dtype=float)
    _check_thresholds(t)
    called = q[None, :] >= t[:, None]  # (T, n)
    tp = (called & (y == 1)).sum(axis=1)
    fp = (called & (y == 0)).sum(axis=1)
    return tp / len(y) - fp / len(y) * t / (1 - t)


def net_benefit_all(y_true: Sequence | np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """Net benefit of calling everyone: prevalence - (1 - prevalence) x pt/(1 - pt)."""
    y = np.asarray(y_true, dtype=float).ravel()
    t = np.asarray(thresholds, dtype=float)
    _check_thresholds(t)
    prevalence = y.mean()
    return prevalence - (1 - prevalence) * t / (1 - t)


def _check_thresholds(t: np.ndarray) -> None:
    if t.size == 0 or (t <= 0).any() or (t >= 1).any():
        raise ValueError("threshold probabilities must lie strictly between 0 and 1.")


def _contributions(y: np.ndarray, q: np.ndarray | None, t: np.ndarray) -> np.ndarray:
    """(T, n) per-row net benefit contributions; their mean over rows is the net benefit.
    q None: everyone called."""
    odds = (t / (1 - t))[:, None]
    called = np.ones((len(t), len(y)), bool) if q is None else q[None, :] >= t[:, None]
    return called * (y[None, :] - (1 - y[None, :]) * odds)


def decision_curves(
    y_true: Sequence | np.ndarray,
    scores: Mapping[str, Sequence | np.ndarray],
    *,
    thresholds: Sequence[float] = THRESHOLDS,
    groups: Sequence | np.ndarray | None = None,
    names: Mapping[str, str] | None = None,
    level: float = LEVEL,
) -> dict[str, Any]:
    """Net benefit with 95% intervals for each model in `scores` (all on the same rows) and
    for calling everyone, over `thresholds`; which policy is best at each threshold and
    the ranges where each one is, in words (`names` gives the names the sentence uses).

    Returns {thresholds, interval, models: {key: {net_benefit, low, high}}, call_everyone:
    {net_benefit, low, high}, call_no_one: {net_benefit}, best: [key per threshold],
    ranges: [{policy, from, to}], text}.
    """
    keys = list(scores)
    if not keys:
        raise ValueError("no models to draw decision curves for.")
    arrays = [check_scores(y_true, scores[k]) for k in keys]
    y = arrays[0][0]
    if len(y) == 0:
        raise ValueError("no rows to compute net benefit on.")
    t = np.asarray(thresholds, dtype=float)
    _check_thresholds(t)
    codes, clusters = _clusters(groups, len(y))
    models: dict[str, Any] = {}
    for key, (_, q) in zip(keys, arrays, strict=True):
        est = cluster_mean(_contributions(y, q, t), codes, clusters, level)
        models[key] = _curve(est)
    everyone = _curve(cluster_mean(_contributions(y, None, t), codes, clusters, level))
    policies = {**{k: models[k]["net_benefit"] for k in keys}, TREAT_ALL: everyone["net_benefit"]}
    policies[TREAT_NONE] = [0.0] * len(t)
    order = list(policies)
    table = np.array([policies[k] for k in order], dtype=float)  # (policies, T)
    # ties go to the simpler policy (calling no one, then everyone) and then the list order
    preference = [TREAT_NONE, TREAT_ALL, *keys]
    best = []
    for j in range(len(t)):
        top = table[:, j].max()
        best.append(next(k for k in preference if policies[k][j] >= top - 1e-12))
    ranges = _ranges(best, t)
    label = {**POLICY_NAMES, **dict(names or {})}
    return {
        "thresholds": [round(float(v), 4) for v in t],
        "interval": _interval_note(groups, level),
        "models": models,
        TREAT_ALL: everyone,
        TREAT_NONE: {"net_benefit": [0.0] * len(t)},
        "best": best,
        "ranges": ranges,
        "text": describe_decision_curves(best, t, label),
    }


def _curve(est: Mapping[str, np.ndarray]) -> dict[str, list[float | None]]:
    return {
        "net_benefit": [_f(v) for v in est["estimate"]],
        "low": [_f(v) for v in est["low"]],
        "high": [_f(v) for v in est["high"]],
    }


def _interval_note(groups: Any, level: float) -> str:
    unit = "patient" if groups is not None else "row"
    return f"{level:.0%} cluster-robust normal interval, clustered by {unit}"


def _ranges(best: Sequence[str], t: np.ndarray) -> list[dict[str, Any]]:
    """Runs of the same best policy: [{policy, from, to}] (thresholds as fractions)."""
    out: list[dict[str, Any]] = []
    for key, value in zip(best, t, strict=True):
        if out and out[-1]["policy"] == key:
            out[-1]["to"] = round(float(value), 4)
        else:
            out.append(
                {"policy": key, "from": round(float(value), 4), "to": round(float(value), 4)}
            )
    return out


def the(name: str) -> str:
    """A model's name ready for a sentence: "the tuned tabular baseline", "this adapter"."""
    return (
        name
        if name.split(" ", 1)[0].lower() in ("the", "this", "its", "calling")
        else f"the {name}"
    )


def _pct(value: float) -> str:
    return f"{value * 100:.0f}%"


def describe_decision_curves(
    best: Sequence[str], thresholds: Sequence[float], names: Mapping[str, str]
) -> str:
    """The decision curves in a sentence, from the best policy at each threshold: where
    acting on a model beats both calling everyone and calling no one, which model leads
    there ("Between 12% and 35% the classifier adapter is the better policy"; when the lead
    changes hands, at how many of those thresholds each leads), and what is best outside."""
    t = [float(v) for v in thresholds]
    if not best:
        return ""
    zone = [j for j, key in enumerate(best) if key not in POLICY_NAMES]
    if not zone:
        return (
            f"No model does better than calling everyone or no one at any threshold from "
            f"{_pct(t[0])} to {_pct(t[-1])}."
        )
    lo, hi = zone[0], zone[-1]
    counts: dict[str, int] = {}
    for j in zone:
        counts[best[j]] = counts.get(best[j], 0) + 1
    leaders = sorted(counts, key=lambda k: -counts[k])
    span = (
        f"at every threshold from {_pct(t[0])} to {_pct(t[-1])}"
        if lo == 0 and hi == len(t) - 1
        else f"between {_pct(t[lo])} and {_pct(t[hi])}"
    )
    mostly = " mostly" if len(zone) < hi - lo + 1 else ""
    if len(leaders) == 1:
        text = f"{span}{mostly} {the(names.get(leaders[0], leaders[0]))} is the better policy"
        text += " (the highest net benefit)"
    else:
        shares = ", ".join(f"{the(names.get(k, k))} at {counts[k]}" for k in leaders)
        text = (
            f"{span}{mostly} acting on a model is the better policy; the highest net benefit "
            f"goes to {shares} of those {len(zone)} thresholds, within each other's intervals "
            "where the bands overlap"
        )
    outside = []
    if lo > 0:
        below = max(set(best[:lo]), key=best[:lo].count)
        outside.append(f"below {_pct(t[lo])} {the(names.get(below, below))} is")
    if hi < len(t) - 1:
        above = max(set(best[hi + 1 :]), key=best[hi + 1 :].count)
        outside.append(f"above {_pct(t[hi])} {the(names.get(above, above))} is")
    if outside:
        text += "; " + "; ".join(outside)
    return text[:1].upper() + text[1:] + "."


# ----------------------------------------------------------------------------- capacity


def top_share(p: np.ndarray, share: float) -> np.ndarray:
    """A boolean mask of the round(share x n) rows with the highest P (at least one); ties
    at the cut go to the earlier rows (a stable order)."""
    if not 0 < share <= 1:
        raise ValueError(f"the share called must be in (0, 1], got {share}.")
    k = max(1, int(round(share * len(p))))
    mask = np.zeros(len(p), bool)
    mask[np.argsort(-p, kind="stable")[:k]] = True
    return mask


def capacity_table(
    y_true: Sequence | np.ndarray,
    scores: Mapping[str, Sequence | np.ndarray],
    *,
    shares: Sequence[float] = CAPACITY_SHARES,
    groups: Sequence | np.ndarray | None = None,
    level: float = LEVEL,
) -> dict[str, Any]:
    """For each model and each share K of appointments called (the top K% by P): calls
    made, no-shows reached, the share of all no-shows reached (recall at K) and calls per
    no-show reached, with 95% intervals; and calling at random for reference.

    Recall's interval is the cluster-robust ratio interval (see the module docstring);
    calls per no-show reached = calls / no-shows reached, its interval the recall's
    inverted (calls / (recall bound x no-shows)). Returns {rows, positives, interval,
    shares, models: {key: [{share, called, reached, recall, recall_low, recall_high,
    precision, calls_per_no_show, calls_per_no_show_low, calls_per_no_show_high}]},
    random: [{share, recall, calls_per_no_show}]}.
    """
    keys = list(scores)
    arrays = [check_scores(y_true, scores[k]) for k in keys]
    if not arrays:
        raise ValueError("no models to compute capacity for.")
    y = arrays[0][0]
    n, positives = len(y), int(y.sum())
    codes, clusters = _clusters(groups, n)
    models: dict[str, list[dict[str, Any]]] = {}
    for key, (_, q) in zip(keys, arrays, strict=True):
        masks = np.stack([top_share(q, s) for s in shares])  # (S, n)
        est = cluster_ratio(masks * y[None, :], y, codes, clusters, level)
        rows = []
        for j, share in enumerate(shares):
            called, reached = int(masks[j].sum()), int((masks[j] & (y == 1)).sum())
            low, high = (max(0.0, v) for v in (est["low"][j], est["high"][j]))
            high = min(1.0, high)
            rows.append(
                {
                    "share": float(share),
                    "called": called,
                    "reached": reached,
                    "recall": _f(est["estimate"][j]),
                    "recall_low": _f(low),
                    "recall_high": _f(high),
                    "precision": reached / called,
                    "calls_per_no_show": called / reached if reached else None,
                    # more recall, fewer calls per no-show: the bounds swap
                    "calls_per_no_show_low": called / (high * positives)
                    if high > 0 and positives
                    else None,
                    "calls_per_no_show_high": called / (low * positives)
                    if low > 0 and positives
                    else None,
                }
            )
        models[key] = rows
    prevalence = positives / n if n else 0.0
    return {
        "rows": n,
        "positives": positives,
        "interval": _interval_note(groups, level),
        "shares": [float(s) for s in shares],
        "models": models,
        "random": [
            {
                "share": float(s),
                "recall": float(s),
                "calls_per_no_show": 1 / prevalence if prevalence else None,
            }
            for s in shares
        ],
    }


def describe_capacity(
    capacity: Mapping[str, Any], share: float, names: Mapping[str, str] | None = None
) -> str:
    """One sentence per model for calling the top `share` (one of the table's shares):
    "Calling the top 10% (200 of 2,000 appointments) by the classifier reaches 24% of the
    no-shows (95% CI 19-29%): one no-show per 2.7 calls (at random: 10%, one per 5.4)." """
    label = dict(names or {})
    shares = [round(s, 6) for s in capacity["shares"]]
    if round(share, 6) not in shares:
        raise ValueError(f"share {share} is not in the capacity table ({shares}).")
    j = shares.index(round(share, 6))
    rand = capacity["random"][j]
    lines = []
    for key, rows in capacity["models"].items():
        r = rows[j]
        if r["recall"] is None:
            continue
        per = r["calls_per_no_show"]
        per_text = f"one no-show per {per:.1f} calls" if per else "no no-show reached"
        ci = ""
        if r["recall_low"] is not None and r["recall_high"] is not None:
            ci = f" (95% CI {_pct(r['recall_low'])}-{_pct(r['recall_high'])})"
        lines.append(
            f"Calling the top {_pct(share)} ({r['called']:,} of {capacity['rows']:,} "
            f"appointments) by {the(label.get(key, key))} reaches {_pct(r['recall'])} of the "
            f"no-shows{ci}: {per_text}."
        )
    if rand["calls_per_no_show"]:
        lines.append(
            f"Calling {_pct(share)} at random reaches {_pct(share)} of the no-shows: one per "
            f"{rand['calls_per_no_show']:.1f} calls."
        )
    return " ".join(lines)
