"""Does a model work as well for everyone? Per subgroup of appointments (age band, gender,
SMS reminder, welfare scholarship, neighbourhood, lead time, first visit or returning
patient): ROC-AUC, the observed no-show rate against the mean predicted P, and the share
flagged at the model's threshold, each with a 95% interval clustered by patient; and the
groups whose figure differs from the whole set's beyond the group's interval, in words.

    from noshow.evaluation.subgroups import subgroup_report
    report = subgroup_report(test_frame, y, {"model": p}, {"model": 0.25}, groups=patients)
    report["findings"]      # ["For patients aged 0-17 the adapter predicts 18% ..."]
    report["groups"][0]     # {by, by_title, group, n, positives, models: {key: {...}}}

Intervals: ROC-AUC by clustered DeLong (as `noshow.evaluation.intervals.compare_auc`); rates
(observed, flagged) and the calibration gap (observed - predicted, the mean of y - P) by
the cluster-robust normal interval of a mean (`noshow.evaluation.decision.cluster_mean`).
Neighbourhoods with fewer than `min_rows` appointments are pooled into one group.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from noshow.evaluation.decision import _clusters, _f, _z, cluster_mean, the
from noshow.evaluation.intervals import LEVEL, _delong
from noshow.evaluation.metrics import check_scores

MIN_ROWS = 50  # a neighbourhood with fewer appointments joins "other neighbourhoods"
MAX_NEIGHBOURHOODS = 10  # the largest ones get their own row; the rest are pooled
MAX_FINDINGS = 12
OTHER_PLACES = "patients from other neighbourhoods"  # sentences per report; eval.json keeps every flag in the table


def _age_band(frame: pd.DataFrame) -> pd.Series:
    from noshow.data.clean import AGE_BANDS

    age = pd.to_numeric(frame["age"], errors="coerce")
    edges = [-1, 17, 34, 49, 64, np.inf]
    return (
        pd.cut(age, edges, labels=list(AGE_BANDS)).astype(str).map(lambda b: f"patients aged {b}")
    )


def _yes_no(column: str, yes: str, no: str) -> Callable[[pd.DataFrame], pd.Series]:
    return lambda f: (
        pd.to_numeric(f[column], errors="coerce").fillna(0).astype(int).map({1: yes, 0: no})
    )


LEAD_LABELS = (
    "appointments booked the same day",
    "appointments booked 1-7 days ahead",
    "appointments booked 8-30 days ahead",
    "appointments booked over 30 days ahead",
)


def _lead(frame: pd.DataFrame) -> pd.Series:
    days = pd.to_numeric(frame["lead_days"], errors="coerce")
    return pd.cut(days, [-1, 0, 7, 30, np.inf], labels=list(LEAD_LABELS)).astype(str)


def _history(frame: pd.DataFrame) -> pd.Series:
    prior = pd.to_numeric(frame["prior_appointments"], errors="coerce").fillna(0)
    return pd.Series(np.where(prior > 0, "returning patients", "first visits"), index=frame.index)


def _gender(frame: pd.DataFrame) -> pd.Series:
    return frame["gender"].astype(str).map({"F": "women", "M": "men"}).fillna("gender unknown")


def _neighbourhoods(frame: pd.DataFrame, min_rows: int) -> pd.Series:
    place = frame["neighbourhood"].fillna("").astype(str).str.strip()
    counts = place[place != ""].value_counts()
    own = set(counts[counts >= min_rows].index[:MAX_NEIGHBOURHOODS])
    return place.map(lambda v: f"patients from {v.title()}" if v in own else OTHER_PLACES)


# (key, title, the column it needs, labeller); in the order tables show them.
SUBGROUPS: tuple[tuple[str, str, str, Callable[..., pd.Series]], ...] = (
    ("age", "Age band", "age", _age_band),
    ("gender", "Gender", "gender", _gender),
    (
        "sms",
        "SMS reminder",
        "sms_received",
        _yes_no(
            "sms_received",
            "appointments with an SMS reminder",
            "appointments without an SMS reminder",
        ),
    ),
    (
        "scholarship",
        "Welfare scholarship",
        "scholarship",
        _yes_no(
            "scholarship",
            "patients with a welfare scholarship",
            "patients without a welfare scholarship",
        ),
    ),
    ("neighbourhood", "Neighbourhood", "neighbourhood", _neighbourhoods),
    ("lead", "Lead time", "lead_days", _lead),
    ("history", "First visit or returning", "prior_appointments", _history),
)


def subgroup_labels(frame: pd.DataFrame, min_rows: int = MIN_ROWS) -> dict[str, pd.Series]:
    """{subgroup key: a label per row} for every subgroup whose column the frame has."""
    out = {}
    for key, _, column, labeller in SUBGROUPS:
        if column not in frame.columns:
            continue
        out[key] = labeller(frame, min_rows) if key == "neighbourhood" else labeller(frame)
    return out


def _rates(
    y: np.ndarray,
    q: np.ndarray,
    flagged: np.ndarray,
    codes: np.ndarray,
    level: float,
) -> dict[str, Any]:
    """Observed rate, mean P, gap (observed - predicted) and share flagged, with intervals."""
    _, local = np.unique(codes, return_inverse=True)
    clusters = int(local.max()) + 1 if len(local) else 0
    est = cluster_mean(np.stack([y, y - q, flagged]), local, clusters, level)
    out = {"predicted": float(q.mean())}
    for i, name in enumerate(("observed", "gap", "flagged")):
        out[name] = _f(est["estimate"][i])
        out[f"{name}_low"] = _f(est["low"][i])
        out[f"{name}_high"] = _f(est["high"][i])
    return out


def _figures(
    y: np.ndarray,
    scores: Mapping[str, np.ndarray],
    thresholds: Mapping[str, float],
    codes: np.ndarray,
    level: float,
) -> dict[str, dict[str, Any]]:
    """Every model's figures on one set of rows (the whole set or one subgroup)."""
    auc: dict[str, Any] = {}
    if 0 < y.sum() < len(y) and len(np.unique(codes)) > 1:
        # compare_auc's clustered DeLong without sklearn's per-call checks (20 groups x 6
        # models of roc_auc_score took seconds); the midrank AUC is the same figure
        keys = list(scores)
        aucs, cov = _delong(y, np.stack([scores[k] for k in keys]), codes)
        se = np.sqrt(np.clip(np.diag(cov), 0, None))
        z = _z(level)
        for i, key in enumerate(keys):
            low, high = np.clip(aucs[i] - z * se[i], 0, 1), np.clip(aucs[i] + z * se[i], 0, 1)
            auc[key] = {"estimate": float(aucs[i]), "low": float(low), "high": float(high)}
    out = {}
    for key, q in scores.items():
        a = auc.get(key) or {}
        out[key] = {
            "auc": a.get("estimate"),
            "auc_low": a.get("low"),
            "auc_high": a.get("high"),
            **_rates(y, q, (q >= thresholds[key]).astype(float), codes, level),
        }
    return out


def _rank(by: str, value: str, values: np.ndarray) -> tuple:
    """Where a group comes in its table: bands in their order, neighbourhoods largest first
    with the pooled rest last, two-valued groups as listed in SUBGROUPS."""
    from noshow.data.clean import AGE_BANDS

    if by == "age":
        bands = [f"patients aged {b}" for b in AGE_BANDS]
        return (bands.index(value) if value in bands else len(bands),)
    if by == "lead":
        return (LEAD_LABELS.index(value) if value in LEAD_LABELS else len(LEAD_LABELS),)
    if by == "neighbourhood":
        return (value == OTHER_PLACES, -int((values == value).sum()))
    return ("without" in value or value in ("men", "returning patients"), value)


def subgroup_report(
    frame: pd.DataFrame,
    y_true: Sequence | np.ndarray,
    scores: Mapping[str, Sequence | np.ndarray],
    thresholds: Mapping[str, float],
    *,
    groups: Sequence | np.ndarray | None = None,
    names: Mapping[str, str] | None = None,
    min_rows: int = MIN_ROWS,
    level: float = LEVEL,
) -> dict[str, Any]:
    """Each model's figures on the whole set and per subgroup of `frame`'s rows (the rows of
    `y_true` and `scores`, in order), and the differences beyond a group's interval in
    words. `thresholds` gives each model's decision threshold; `groups` the patient ids.

    Returns {interval, min_rows, overall: {key: figures}, groups: [{by, by_title, group, n,
    positives, models: {key: figures}}], flags: [{model, by, group, metric, value, low,
    high, overall}], findings: [sentence]}; figures are {auc, auc_low, auc_high, observed,
    predicted, gap, flagged (each rate with _low/_high)}.
    """
    keys = list(scores)
    arrays = {k: check_scores(y_true, scores[k])[1] for k in keys}
    y = check_scores(y_true, arrays[keys[0]])[0] if keys else np.array([])
    if len(frame) != len(y):
        raise ValueError(f"frame and labels differ in length ({len(frame)} vs {len(y)}).")
    missing = [k for k in keys if k not in thresholds]
    if missing:
        raise ValueError(f"no threshold for model(s): {', '.join(missing)}.")
    codes, _ = _clusters(groups, len(y))
    frame = frame.reset_index(drop=True)
    overall = _figures(y, arrays, thresholds, codes, level)
    rows: list[dict[str, Any]] = []
    titles = {key: title for key, title, _, _ in SUBGROUPS}
    for by, labels in subgroup_labels(frame, min_rows).items():
        values = labels.to_numpy()
        if by == "neighbourhood" and (values == OTHER_PLACES).all():
            continue  # no neighbourhood large enough for a row of its own
        order = sorted(pd.unique(values), key=lambda v: _rank(by, v, values))
        for group in order:
            mask = values == group
            if not mask.any():
                continue
            yg = y[mask]
            rows.append(
                {
                    "by": by,
                    "by_title": titles[by],
                    "group": str(group),
                    "n": int(mask.sum()),
                    "positives": int(yg.sum()),
                    "models": _figures(
                        yg, {k: q[mask] for k, q in arrays.items()}, thresholds, codes[mask], level
                    ),
                }
            )
    flags = _flags(rows, overall)
    label = dict(names or {})
    return {
        "interval": f"{level:.0%} intervals clustered by {'patient' if groups is not None else 'row'}"
        " (ROC-AUC: DeLong; rates: cluster-robust normal)",
        "min_rows": min_rows,
        "overall": overall,
        "groups": rows,
        "flags": flags,
        "findings": describe_flags(flags, label)[:MAX_FINDINGS],
    }


def _flags(rows: Sequence[Mapping[str, Any]], overall: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Where the whole set's figure lies outside a group's interval, largest gaps first."""
    out = []
    for row in rows:
        for key, fig in row["models"].items():
            for metric in ("auc", "gap", "flagged"):
                value, low, high = (
                    fig.get(metric),
                    fig.get(f"{metric}_low"),
                    fig.get(f"{metric}_high"),
                )
                whole = overall[key].get(metric)
                if None in (value, low, high, whole) or low <= whole <= high:
                    continue
                out.append(
                    {
                        "model": key,
                        "by": row["by"],
                        "group": row["group"],
                        "n": row["n"],
                        "metric": metric,
                        "value": value,
                        "low": low,
                        "high": high,
                        "overall": whole,
                        "observed": fig["observed"],
                        "predicted": fig["predicted"],
                    }
                )
    # calibration first (what the issue is about), then ROC-AUC, then flagged; larger first
    rank = {"gap": 0, "auc": 1, "flagged": 2}
    out.sort(key=lambda f: (rank[f["metric"]], -abs(f["value"] - f["overall"])))
    return out


def _pts(value: float) -> str:
    return f"{value * 100:.0f}%"


def describe_flag(flag: Mapping[str, Any], names: Mapping[str, str]) -> str:
    """One flagged group in words."""
    model, group = the(names.get(flag["model"], flag["model"])), flag["group"]
    value, low, high, whole = flag["value"], flag["low"], flag["high"], flag["overall"]
    if flag["metric"] == "auc":
        how = "less well than" if value < whole else "better than"
        return (
            f"{model[:1].upper()}{model[1:]} ranks {group} {how} the whole set: ROC-AUC {value:.3f} (95% CI "
            f"{low:.3f}-{high:.3f}) against {whole:.3f}."
        )
    if flag["metric"] == "gap":
        way = "too low" if value > 0 else "too high"
        a, b = sorted((abs(low), abs(high))) if low * high > 0 else (0.0, max(abs(low), abs(high)))
        whole_way = "too low" if whole > 0 else "too high"
        return (
            f"For {group} {model} predicts {_pts(flag['predicted'])} no-shows where "
            f"{_pts(flag['observed'])} were observed: {abs(value) * 100:.0f} points {way} "
            f"(95% CI {a * 100:.0f}-{b * 100:.0f}); on the whole set "
            f"{abs(whole) * 100:.0f} {'point' if round(abs(whole) * 100) == 1 else 'points'} "
            f"{whole_way}."
        )
    return (
        f"{model[:1].upper()}{model[1:]} flags {_pts(value)} of {group} (95% CI {_pts(low)}-{_pts(high)}) at "
        f"its threshold, against {_pts(whole)} of all appointments."
    )


def describe_flags(flags: Sequence[Mapping[str, Any]], names: Mapping[str, str]) -> list[str]:
    """Every flag in words, in the order given (see `_flags`)."""
    return [describe_flag(f, names) for f in flags]
