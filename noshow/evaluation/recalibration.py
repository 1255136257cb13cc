"""Calibration that follows the clinic: a calibrator refitted as outcomes arrive, and a clinic's
own no-show rate put in place of the one the model was calibrated on.

(a) Recalibration as outcomes arrive (`rolling_recalibration`, `recalibration_report`). A
calibrator fitted once on the validation days keeps their no-show rate (21.0% on the time
split) when the test days run at 18.5%. A clinic that learns each day's outcomes by the
evening can refit: each test day is scored through a calibrator (`fit_calibrator`) fitted on
the outcomes of the `window` latest days before it (validation days and earlier test days),
never on its own. `window` is chosen on the validation days alone (`choose_window`: each
validation day after the first scored from the days before it; lowest log-loss). The report
gives the ECE a clinic would see on the test days, beside the uncalibrated and the
once-calibrated ECE, each with a 95% interval from a patient-cluster bootstrap
(`ece_with_intervals`), per test day, and per window for reference (not used to choose).

(b) A clinic's own no-show rate (`shift_prior`): P calibrated on rows whose no-show rate was
pi, for a clinic whose rate is pi', has its odds multiplied by [pi'/(1-pi')] / [pi/(1-pi)]
(Saerens, Latinne & Decaestecker 2002, prior-probability shift): the ranking stays, the mean
P follows the clinic. `PRIOR_SHIFT_TEXT` says so in one sentence for the app and the CLI.

    from noshow.evaluation.recalibration import shift_prior, recalibration_report
    p_clinic = shift_prior(p, from_rate=0.21, to_rate=0.15)
    section, p_rolling = recalibration_report(
        p_val, y_val, days_val, p_test, y_test, days_test, once=calibrator, groups=patients
    )

Only numpy at import; the calibrator fits import scipy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from noshow.evaluation.calibration import RELIABILITY_BINS, SLOPE_BOUNDS, Calibrator, _logit

# Windows tried on validation, in days with appointments; 0 = every earlier day. Ties go to
# the earlier entry (the shorter window follows a drift sooner).
WINDOWS = (1, 2, 3, 5, 10, 0)
MIN_ROWS = 100  # a window with fewer rows (or one class) keeps the calibrator fitted once
RESAMPLES = 1000
LEVEL = 0.95
PRIOR_SHIFT_TEXT = (
    "Your clinic's no-show rate rescales every P(no-show) so that on average it matches your "
    "clinic instead of the appointments the model was calibrated on; who ranks above whom "
    "does not change."
)


class RecalibrationError(ValueError):
    """A rate, the scores or the days cannot be used; says why."""


# ---------------------------------------------------------------------------------------------
# (b) a clinic's own no-show rate


def check_rate(value: Any, what: str = "no-show rate") -> float:
    """`value` as a float strictly between 0 and 1 (a share, not a percentage)."""
    try:
        rate = float(value)
    except (TypeError, ValueError) as e:
        raise RecalibrationError(f"the {what} must be a number, got {value!r}.") from e
    if not (np.isfinite(rate) and 0.0 < rate < 1.0):
        hint = f" (for {rate:g}% write {rate / 100:g})" if 1.0 < rate < 100.0 else ""
        raise RecalibrationError(
            f"the {what} must be a share strictly between 0 and 1, got {value!r}{hint}."
        )
    return rate


def shift_prior(p: Sequence | np.ndarray | float, from_rate: float, to_rate: float) -> np.ndarray:
    """P(no-show) for a clinic whose no-show rate is `to_rate`, from P calibrated on rows whose
    rate was `from_rate`: odds(P') = odds(P) * [to/(1-to)] / [from/(1-from)] (Saerens et al.
    2002). Monotone, so every ranking and ROC-AUC is unchanged; 0 and 1 stay 0 and 1."""
    q = np.asarray(p, dtype=float)
    if q.size and (not np.isfinite(q).all() or (q < 0).any() or (q > 1).any()):
        raise RecalibrationError("probabilities must be finite numbers between 0 and 1.")
    source = check_rate(from_rate, "rate the model was calibrated on")
    target = check_rate(to_rate, "clinic's no-show rate")
    ratio = (target / (1 - target)) / (source / (1 - source))
    # ratio * p / (ratio * p + 1 - p): the odds form, exact at 0 and 1 (no logit needed)
    return ratio * q / (ratio * q + (1.0 - q))


def describe_prior_shift(from_rate: float, to_rate: float) -> str:
    """What the adjustment did, for a card: both rates and the odds factor."""
    ratio = (to_rate / (1 - to_rate)) / (from_rate / (1 - from_rate))
    return (
        f"Adjusted to your clinic's no-show rate of {to_rate:.1%} (the model was calibrated "
        f"on appointments missed at {from_rate:.1%}): odds x {ratio:.2f}."
    )


# ---------------------------------------------------------------------------------------------
# (a) recalibration as outcomes arrive


def _day_keys(days: Sequence | np.ndarray) -> np.ndarray:
    """Sortable day values (dates at midnight when the values read as dates)."""
    values = np.asarray(days)
    if np.issubdtype(values.dtype, np.datetime64):
        return values.astype("datetime64[D]")
    try:
        import pandas as pd

        return pd.to_datetime(values).normalize().to_numpy().astype("datetime64[D]")
    except (ValueError, TypeError):
        return values  # any other sortable day labels


def day_text(day: Any) -> str:
    """A day as eval.json writes it: 2016-05-30."""
    return str(np.datetime64(day, "D")) if isinstance(day, np.datetime64) else str(day)


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    q = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log1p(-q)))


def _bins(p: np.ndarray, bins: int) -> np.ndarray:
    """Each P's bin, as `noshow.evaluation.calibration.reliability_table` puts it."""
    return np.clip(np.digitize(p, np.linspace(0.0, 1.0, bins + 1)[1:-1]), 0, bins - 1)


def _ece(y: np.ndarray, p: np.ndarray, bins: int = RELIABILITY_BINS) -> float:
    gap = np.bincount(_bins(p, bins), y - p, minlength=bins)
    return float(np.abs(gap).sum() / len(y))


def _platt(p: np.ndarray, y: np.ndarray) -> Calibrator:
    """Slope and intercept on logit(P) by maximum likelihood: the intercept is what follows a
    changing no-show rate. scikit-learn's unpenalised logistic regression with its Newton
    solver (a few ms a window, where the general fit of `noshow.evaluation.calibration`
    also chooses a method by cross-validation: ~0.1 s a call, and this runs dozens of times
    a report; tests/test_recalibration.py checks they agree). No choice of method: a day's
    rows are thousands on the real data, and a window too small keeps the fallback."""
    from sklearn.linear_model import LogisticRegression

    labels = y.astype(float)
    fit = LogisticRegression(C=np.inf, solver="newton-cholesky", tol=1e-10)
    fit.fit(_logit(p)[:, None], labels)
    slope = float(np.clip(fit.coef_[0, 0], *SLOPE_BOUNDS))  # positive: the ranking stays
    return Calibrator(
        method="platt",
        slope=slope,
        intercept=float(fit.intercept_[0]),
        rows=len(labels),
        base_rate=float(labels.mean()),
    )


def rolling_recalibration(
    p: Sequence | np.ndarray,
    y: Sequence | np.ndarray,
    days: Sequence | np.ndarray,
    score: Sequence | np.ndarray,
    *,
    window: int,
    fallback: Calibrator | None = None,
    min_rows: int = MIN_ROWS,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Recalibrated P for the rows `score` marks, day by day.

    `p`, `y` and `days` cover every row whose outcome becomes known (validation and test rows
    together); `score` (booleans) marks the rows to recalibrate. Each day that holds rows to
    score gets a calibrator fitted on the rows of the `window` latest days before it (0: all
    earlier days), scored or not, so a row's own outcome never enters its calibrator: Platt
    scaling of logit(P) (`_platt`). A window with fewer than `min_rows` rows or one class keeps
    `fallback` (identity when None).
    Returns (P, NaN for rows not scored; one dict per scored day: day, rows, window_days,
    window_rows, method).
    """
    q = np.asarray(p, dtype=float).ravel()
    labels = np.asarray(y, dtype=float).ravel()
    keys = _day_keys(days).ravel()
    mask = np.asarray(score, dtype=bool).ravel()
    if not (len(q) == len(labels) == len(keys) == len(mask)):
        raise RecalibrationError(
            f"scores, labels, days and the rows to score differ in length "
            f"({len(q)}, {len(labels)}, {len(keys)}, {len(mask)})."
        )
    if window < 0:
        raise RecalibrationError(f"window must be 0 (every day) or a number of days, got {window}.")
    fallback = fallback or Calibrator()
    known = np.unique(keys)  # sorted
    out = np.full(len(q), np.nan)
    fits: list[dict[str, Any]] = []
    for day in np.unique(keys[mask]):
        earlier = known[known < day]
        used = earlier if window == 0 else earlier[-window:]
        rows = np.isin(keys, used)
        calibrator, method = fallback, "fallback: " + fallback.method
        if rows.sum() >= min_rows and 0 < labels[rows].sum() < rows.sum():
            calibrator, method = _platt(q[rows], labels[rows]), "platt"
        today = mask & (keys == day)
        out[today] = calibrator.apply(q[today])
        fits.append(
            {
                "day": day_text(day),
                "rows": int(today.sum()),
                "window_days": len(used),
                "window_rows": int(rows.sum()),
                "method": method,
            }
        )
    return out, fits


def choose_window(
    p_val: Sequence | np.ndarray,
    y_val: Sequence | np.ndarray,
    days_val: Sequence | np.ndarray,
    windows: Sequence[int] = WINDOWS,
    *,
    min_rows: int = MIN_ROWS,
) -> tuple[int, list[dict[str, Any]]]:
    """The window (in days) with the lowest log-loss when each validation day after the first
    is recalibrated from the validation days before it (no test row is read); ties go to the
    earlier entry of `windows`. Returns (window, [{window, log_loss, ece, rows}])."""
    q = np.asarray(p_val, dtype=float).ravel()
    labels = np.asarray(y_val, dtype=float).ravel()
    keys = _day_keys(days_val).ravel()
    known = np.unique(keys)
    if len(known) < 2:  # nothing to simulate with: every day known
        return 0, []
    score = keys != known[0]
    table = []
    for window in windows:
        # identity when a window is too small: the calibrator fitted once saw these days
        p, _ = rolling_recalibration(q, labels, keys, score, window=window, min_rows=min_rows)
        table.append(
            {
                "window": int(window),
                "log_loss": _log_loss(labels[score], p[score]),
                "ece": _ece(labels[score], p[score]),
                "rows": int(score.sum()),
            }
        )
    best = min(table, key=lambda r: (round(r["log_loss"], 12), windows.index(r["window"])))
    return best["window"], table


# ---------------------------------------------------------------------------------------------
# ECE with intervals


def ece_with_intervals(
    y: Sequence | np.ndarray,
    variants: Mapping[str, Sequence | np.ndarray],
    pairs: Sequence[tuple[str, str]] = (),
    *,
    groups: Sequence | np.ndarray | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
    bins: int = RELIABILITY_BINS,
) -> dict[str, Any]:
    """ECE (equal-width bins, as `noshow.evaluation.metrics`) of each P in `variants` on the
    same rows, with percentile intervals over `resamples` bootstrap resamples of patients
    (`groups`) or rows, and the paired differences a - b for `pairs` on the same resamples.
    Returns {"ece": {name: {estimate, low, high}}, "differences": [{a, b, estimate, low,
    high}], unit, resamples, seed, level}."""
    labels = np.asarray(y, dtype=float).ravel()
    names = list(variants)
    n = len(labels)
    if n == 0:
        raise RecalibrationError("no rows to compute a calibration error on.")
    if groups is None:
        cluster = np.arange(n)
    else:
        cluster = np.unique(np.asarray(groups).ravel(), return_inverse=True)[1]
        if len(cluster) != n:
            raise RecalibrationError(f"groups and labels differ in length ({len(cluster)} vs {n}).")
    units = int(cluster.max()) + 1
    size = np.bincount(cluster, minlength=units).astype(float)  # rows per unit
    residual = {}  # (units, bins): sum of y - p per unit and bin of P, what an ECE adds up
    for name in names:
        q = np.asarray(variants[name], dtype=float).ravel()
        if q.shape != labels.shape or not np.isfinite(q).all():
            raise RecalibrationError(f"{name}: P must be finite and one per row ({len(q)} vs {n}).")
        cell = cluster * bins + _bins(q, bins)
        residual[name] = np.bincount(cell, labels - q, minlength=units * bins).reshape(units, bins)
    rng = np.random.default_rng(seed)
    boot = {name: np.empty(resamples) for name in names}
    chunk = max(1, 4_000_000 // units)
    for first in range(0, resamples, chunk):
        b = min(chunk, resamples - first)
        draws = rng.integers(0, units, size=(b, units)) + (np.arange(b) * units)[:, None]
        counts = np.bincount(draws.ravel(), minlength=b * units).reshape(b, units).astype(float)
        total = counts @ size  # rows in each resample
        for name in names:
            boot[name][first : first + b] = np.abs(counts @ residual[name]).sum(axis=1) / total
    tail = (1 - level) / 2 * 100

    def interval(estimate: float, values: np.ndarray) -> dict[str, float]:
        low, high = np.percentile(values, [tail, 100 - tail])
        return {"estimate": estimate, "low": float(low), "high": float(high)}

    estimates = {name: float(np.abs(residual[name].sum(axis=0)).sum() / n) for name in names}
    return {
        "ece": {name: interval(estimates[name], boot[name]) for name in names},
        "differences": [
            {"a": a, "b": b, **interval(estimates[a] - estimates[b], boot[a] - boot[b])}
            for a, b in pairs
        ],
        "unit": "row" if groups is None else "group",
        "resamples": resamples,
        "seed": seed,
        "level": level,
    }


# ---------------------------------------------------------------------------------------------
# the report section

VARIANT_NAMES = {
    "uncalibrated": "uncalibrated",
    "once": "calibrated once on validation",
    "rolling": "recalibrated as outcomes arrive",
}


def describe_ece_difference(d: Mapping[str, Any]) -> str:
    """One sentence on an ECE difference a - b with its interval."""
    a, b = VARIANT_NAMES.get(d["a"], d["a"]), VARIANT_NAMES.get(d["b"], d["b"])
    ci = f"95% CI {d['low']:+.3f} to {d['high']:+.3f}"
    if d["low"] <= 0 <= d["high"]:
        return f"No clear difference in test ECE between {a} and {b}: {d['estimate']:+.3f} ({ci})."
    word = "lower" if d["high"] < 0 else "higher"
    return f"{a.capitalize()}, the test ECE is {word} than {b} by {abs(d['estimate']):.3f} ({ci})."


def recalibration_report(
    p_val: Sequence | np.ndarray,
    y_val: Sequence | np.ndarray,
    days_val: Sequence | np.ndarray,
    p_test: Sequence | np.ndarray,
    y_test: Sequence | np.ndarray,
    days_test: Sequence | np.ndarray,
    *,
    once: Calibrator | None = None,
    groups: Sequence | np.ndarray | None = None,
    windows: Sequence[int] = WINDOWS,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> tuple[dict[str, Any], np.ndarray]:
    """The ECE a clinic would see on the test days when each day is recalibrated from the
    outcomes known before it, beside the once-calibrated (and uncalibrated) ECE.

    `p_val`/`p_test` are a model's P before the calibrator refitted here: with `once` (the
    calibrator fitted on validation) they are the raw P, and the section has "uncalibrated",
    "once" and "rolling"; without it they are already the once-calibrated P (a hybrid, a
    stacked model), and the section has "once" and "rolling". The window is chosen on
    validation (`choose_window`); `groups` (test patient ids) makes the bootstrap resample
    patients. Returns (the eval.json section, the rolling P of the test rows).
    """
    pv, pt = np.asarray(p_val, float).ravel(), np.asarray(p_test, float).ravel()
    yv, yt = np.asarray(y_val, float).ravel(), np.asarray(y_test, float).ravel()
    window, choice = choose_window(pv, yv, days_val, windows)
    p_all, y_all = np.r_[pv, pt], np.r_[yv, yt]
    days_all = np.r_[_day_keys(days_val).ravel(), _day_keys(days_test).ravel()]
    score = np.r_[np.zeros(len(pv), bool), np.ones(len(pt), bool)]
    rolled, fits = rolling_recalibration(
        p_all, y_all, days_all, score, window=window, fallback=once
    )
    rolling = rolled[score]
    variants = {"uncalibrated": pt, "once": once.apply(pt)} if once else {"once": pt}
    variants["rolling"] = rolling
    pairs = [("rolling", "once")] + ([("rolling", "uncalibrated")] if once else [])
    figures = ece_with_intervals(yt, variants, pairs, groups=groups, resamples=resamples, seed=seed)
    for d in figures["differences"]:
        d["text"] = describe_ece_difference(d)
    texts = np.asarray([day_text(k) for k in _day_keys(days_test).ravel()])
    by_day = []
    for fit in fits:
        today = texts == fit["day"]
        by_day.append(
            {
                **fit,
                "observed": float(yt[today].mean()),
                "mean_p": {name: float(v[today].mean()) for name, v in variants.items()},
            }
        )
    by_window = {}
    for w in windows:  # for reference only: the window was chosen above, on validation
        p_w, _ = rolling_recalibration(p_all, y_all, days_all, score, window=w, fallback=once)
        by_window[str(w)] = _ece(yt, p_w[score])
    section = {
        "kind": "a calibrator refitted before each test day on the outcomes of the days before it",
        "window_days": window,
        "window_choice": choice,
        "ece": figures["ece"],
        "differences": figures["differences"],
        "observed_rate": {"validation": float(yv.mean()), "test": float(yt.mean())},
        "mean_p": {name: float(v.mean()) for name, v in variants.items()},
        "by_day": by_day,
        "test_ece_by_window": by_window,
        "intervals": {k: figures[k] for k in ("unit", "resamples", "seed", "level")},
    }
    return section, rolling


def recalibrate_run(
    validation: Any,
    test: Any,
    models: Mapping[str, tuple[Any, Any, Calibrator | None]],
    *,
    groups: Sequence | np.ndarray | None = None,
    seed: int = 0,
) -> tuple[dict[str, Any] | None, dict[str, np.ndarray], str | None]:
    """eval.json's "recalibration": `recalibration_report` for each model in `models` ({key:
    (validation P, test P, the calibrator fitted once or None)}) on the rows of the
    `validation` and `test` frames (appointment_day and no_show). Returns (section or None,
    {key: rolling test P}, a note saying why there is no section)."""
    day = "appointment_day"
    if day not in validation.columns or day not in test.columns:
        return (
            None,
            {},
            "recalibration by day needs appointment days (Statement/NoShow files lack them)",
        )
    section: dict[str, Any] = {"models": {}}
    rolling: dict[str, np.ndarray] = {}
    y_val, y_test = validation["no_show"].to_numpy(), test["no_show"].to_numpy()
    for key, (p_val, p_test, once) in models.items():
        section["models"][key], rolling[key] = recalibration_report(
            p_val,
            y_val,
            validation[day].to_numpy(),
            p_test,
            y_test,
            test[day].to_numpy(),
            once=once,
            groups=groups,
            seed=seed,
        )
    return section, rolling, None
