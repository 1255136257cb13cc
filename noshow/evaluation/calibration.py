"""Calibrate an adapter's P(no-show) on the validation split, store the scaler in the adapter
folder as a few numbers of JSON, and apply it wherever a probability is shown or exported.

The scaler works on the logit of P: p' = sigmoid(slope * logit(p) + intercept).
- "temperature": intercept 0, slope 1/T (one number: stretches or shrinks confidence).
- "platt": slope and intercept both fitted (also moves the average P, which temperature
  cannot: a model whose mean P is off the validation no-show rate needs it).
- "identity": slope 1, intercept 0 (no change; what an adapter without a file gets).
`fit_calibrator(p_val, y_val)` fits both by maximum likelihood on the validation rows and keeps
the one with the lower 5-fold cross-validated log-loss on those rows, so Platt's second number
has to earn its place on rows it was not fitted on; identity is kept when neither beats it.
The slope is kept positive, so calibrated scores rank the rows exactly as the raw ones do:
ROC-AUC does not change, and the threshold is re-chosen on calibrated validation scores.

    from noshow.evaluation.calibration import fit_calibrator, Calibrator
    cal = fit_calibrator(p_val, y_val)          # validation rows only
    cal.save(adapter_dir)                       # adapter_dir / "calibration.json"
    cal = Calibrator.load(adapter_dir)          # identity for an adapter without the file
    p = cal.apply(raw_p)                        # numpy only: predict.py needs no sklearn/scipy

`reliability_table` and `plot_reliability` draw the before/after reliability diagram for model
cards and Compare's batch view. Only numpy is imported at load (scipy and matplotlib when a
fit or a figure is asked for).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

CALIBRATION_FILE = "calibration.json"
METHODS = ("identity", "temperature", "platt")
FORMAT_VERSION = 1
EPS = 1e-7  # P is clipped to [EPS, 1 - EPS] before the logit, so 0 and 1 stay finite
SLOPE_BOUNDS = (1e-3, 1e3)  # positive: calibration must never reverse the ranking
CV_FOLDS = 5
RELIABILITY_BINS = 10


class CalibrationError(ValueError):
    """A calibrator cannot be fitted, read or applied; says why."""


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, EPS, 1 - EPS)
    return np.log(q) - np.log1p(-q)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    # tanh form: no overflow warning for large |z|, and the result stays inside [0, 1]
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _check_probabilities(p: Sequence | np.ndarray) -> np.ndarray:
    q = np.asarray(p, dtype=float)
    if q.size and (not np.isfinite(q).all() or (q < 0).any() or (q > 1).any()):
        raise CalibrationError("probabilities must be finite numbers between 0 and 1.")
    return q


@dataclass(frozen=True)
class Calibrator:
    """p' = sigmoid(slope * logit(p) + intercept), fitted on validation rows."""

    method: str = "identity"
    slope: float = 1.0
    intercept: float = 0.0
    rows: int = 0  # validation rows it was fitted on
    threshold: float | None = None  # max-F1 threshold on calibrated validation scores
    log_loss_before: float | None = None  # on validation (in-sample for "after")
    log_loss_after: float | None = None
    cv_log_loss: Mapping[str, float] | None = None  # per candidate method, 5-fold on validation
    cv_ece: float | None = None  # ECE of the chosen method on held-out validation folds
    # The no-show rate of the rows it was fitted on: the rate its P averages to, which a
    # clinic's own rate replaces (noshow.evaluation.recalibration.shift_prior).
    base_rate: float | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise CalibrationError(
                f"unknown calibration method {self.method!r}; use one of {', '.join(METHODS)}."
            )
        if not (np.isfinite(self.slope) and self.slope > 0 and np.isfinite(self.intercept)):
            raise CalibrationError(
                f"calibration slope must be a positive number and intercept finite, got "
                f"slope={self.slope!r}, intercept={self.intercept!r}."
            )

    @property
    def temperature(self) -> float:
        return 1.0 / self.slope

    def apply(self, p: Sequence | np.ndarray | float) -> np.ndarray:
        """Calibrated P for each P in `p` (same shape, float64, in [0, 1], same order)."""
        q = _check_probabilities(p)
        if self.method == "identity":
            return q.astype(float, copy=True)
        return _sigmoid(self.slope * _logit(q) + self.intercept)

    def invert(self, p: Sequence | np.ndarray | float) -> np.ndarray:
        """The raw P that `apply` maps to each calibrated P in `p` (exact: the map is monotone);
        lets a view that received calibrated scores draw the before/after diagram."""
        q = _check_probabilities(p)
        if self.method == "identity":
            return q.astype(float, copy=True)
        return _sigmoid((_logit(q) - self.intercept) / self.slope)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["cv_log_loss"] = dict(self.cv_log_loss) if self.cv_log_loss else None
        return {"format_version": FORMAT_VERSION, "fitted_on": "validation", **out}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibrator:
        version = data.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise CalibrationError(
                f"calibration format {version} is not known to this noshow (knows "
                f"{FORMAT_VERSION}); update noshow or re-run the evaluation."
            )
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        try:
            return cls(**fields)
        except TypeError as e:
            raise CalibrationError(f"calibration data is malformed: {e}") from e

    def save(self, folder: str | Path) -> Path:
        """Write `folder`/calibration.json atomically; return its path."""
        from noshow.system.files import write_json_atomic

        return write_json_atomic(Path(folder) / CALIBRATION_FILE, self.to_dict())

    @classmethod
    def load(cls, folder: str | Path) -> Calibrator:
        """The calibrator stored in `folder`, or identity when there is none (adapters made
        before calibration existed)."""
        from noshow.system.files import read_json_object

        data = read_json_object(
            Path(folder) / CALIBRATION_FILE, CalibrationError, "a calibration object"
        )
        return cls() if data is None else cls.from_dict(data)


# ---------------------------------------------------------------------------------------------
# fitting


def _log_loss(y: np.ndarray, z: np.ndarray) -> float:
    # mean of log(1 + e^z) - y z: the log-loss of sigmoid(z), stable for any z
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def _fit_params(x: np.ndarray, y: np.ndarray, method: str) -> tuple[float, float]:
    """Maximum-likelihood (slope, intercept) on logits `x` for labels `y`."""
    if method == "identity":
        return 1.0, 0.0
    from scipy.optimize import minimize

    def loss_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        slope, intercept = theta[0], theta[1] if method == "platt" else 0.0
        z = slope * x + intercept
        r = _sigmoid(z) - y  # d loss / d z, per row
        grad = np.array([np.mean(r * x), np.mean(r)])
        return _log_loss(y, z), grad[: len(theta)]

    start = np.array([1.0, 0.0] if method == "platt" else [1.0])
    bounds = [SLOPE_BOUNDS] + ([(None, None)] if method == "platt" else [])
    fit = minimize(loss_and_grad, start, jac=True, method="L-BFGS-B", bounds=bounds)
    slope = float(fit.x[0])
    intercept = float(fit.x[1]) if method == "platt" else 0.0
    return slope, intercept


def _cross_fitted(x: np.ndarray, y: np.ndarray, method: str, folds: int, seed: int) -> np.ndarray:
    """Calibrated logits of the validation rows, each from a scaler fitted on the other folds
    (stratified, seeded): what the scaler does on rows it has not seen."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=int)
    for label in (0, 1):  # stratified: every fold holds both classes in the usual ratio
        idx = np.flatnonzero(y == label)
        fold[rng.permutation(idx)] = np.arange(len(idx)) % folds
    out = np.empty(len(y))
    for k in range(folds):
        held = fold == k
        slope, intercept = _fit_params(x[~held], y[~held], method)
        out[held] = slope * x[held] + intercept
    return out


def fit_calibrator(
    p_val: Sequence | np.ndarray,
    y_val: Sequence | np.ndarray,
    method: str = "auto",
    folds: int = CV_FOLDS,
    seed: int = 0,
) -> Calibrator:
    """Fit the scaler on validation scores `p_val` and labels `y_val` (never test rows).

    method "auto" (default) keeps whichever of identity, temperature and Platt has the lowest
    `folds`-fold cross-validated log-loss on these rows; "temperature" or "platt" force one.
    `threshold` is left None: `noshow.evaluation.report.evaluate_run` sets it to the max-F1
    threshold on the calibrated validation scores (`dataclasses.replace(cal, threshold=...)`).
    """
    if method != "auto" and method not in METHODS:
        raise CalibrationError(
            f"method must be auto or one of {', '.join(METHODS)}, got {method!r}."
        )
    p = _check_probabilities(p_val).ravel()
    y = np.asarray(y_val, dtype=float).ravel()
    if p.shape != y.shape:
        raise CalibrationError(f"labels and probabilities differ in length ({len(y)} vs {len(p)}).")
    if not np.isin(y, (0.0, 1.0)).all():
        raise CalibrationError("labels must be 0 (attended) or 1 (no-show).")
    if y.size == 0 or y.min() == y.max():
        raise CalibrationError(
            "calibration needs validation rows of both classes (no-shows and attended); "
            f"got {int(y.sum())} no-shows in {len(y)} rows."
        )
    x = _logit(p)
    cv = None
    folds = max(2, min(folds, int(y.sum()), int(len(y) - y.sum())))
    held_out = {m: _cross_fitted(x, y, m, folds, seed) for m in METHODS}
    cv = {m: _log_loss(y, z) for m, z in held_out.items()}
    if method == "auto":
        method = min(METHODS, key=lambda m: (cv[m], METHODS.index(m)))  # ties: fewer numbers
    slope, intercept = _fit_params(x, y, method)
    return Calibrator(
        method=method,
        slope=slope,
        intercept=intercept,
        rows=len(y),
        log_loss_before=_log_loss(y, x),
        log_loss_after=_log_loss(y, slope * x + intercept),
        cv_log_loss=cv,
        cv_ece=calibration_error(reliability_table(y, _sigmoid(held_out[method]))),
        base_rate=float(y.mean()),
    )


# ---------------------------------------------------------------------------------------------
# reliability diagram


def reliability_table(
    y_true: Sequence | np.ndarray, p: Sequence | np.ndarray, bins: int = RELIABILITY_BINS
) -> dict[str, list]:
    """Per equal-width bin of P that holds rows: {"low", "high", "rows", "mean_p",
    "observed"} lists (bin edges, row count, mean predicted P, observed no-show rate), the
    numbers a reliability diagram plots and the ECE (noshow.evaluation.metrics) averages."""
    y = np.asarray(y_true, dtype=float).ravel()
    q = _check_probabilities(p).ravel()
    if y.shape != q.shape:
        raise CalibrationError(f"labels and probabilities differ in length ({len(y)} vs {len(q)}).")
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(q, edges[1:-1]), 0, bins - 1)
    rows = np.bincount(index, minlength=bins)
    sum_p = np.bincount(index, q, minlength=bins)
    sum_y = np.bincount(index, y, minlength=bins)
    used = rows > 0
    return {
        "low": edges[:-1][used].tolist(),
        "high": edges[1:][used].tolist(),
        "rows": rows[used].tolist(),
        "mean_p": (sum_p[used] / rows[used]).tolist(),
        "observed": (sum_y[used] / rows[used]).tolist(),
    }


def calibration_error(table: Mapping[str, Sequence]) -> float:
    """Expected calibration error from a `reliability_table`: |observed - mean P| per bin,
    weighted by the bin's rows."""
    rows = np.asarray(table["rows"], dtype=float)
    if rows.sum() == 0:
        raise CalibrationError("no rows to compute a calibration error on.")
    gap = np.abs(np.asarray(table["observed"]) - np.asarray(table["mean_p"]))
    return float((rows * gap).sum() / rows.sum())


def plot_reliability(
    curves: Mapping[str, tuple[Any, Any, Any]],
    bins: int = RELIABILITY_BINS,
    split: str = "test",
    stacked: bool = False,
):
    """Reliability diagrams before (left, or top when `stacked`: for a narrow slot) and after
    calibration: name -> (labels, raw P, calibrated P). Each legend gives the ECE; marker area
    follows the bin's rows."""
    from matplotlib.figure import Figure

    if stacked:
        fig = Figure(figsize=(5.6, 9.0), layout="constrained")
        axes = fig.subplots(2, 1, sharex=True)
    else:
        fig = Figure(figsize=(10, 4.4), layout="constrained")
        axes = fig.subplots(1, 2, sharey=True)
    for ax, which, title in ((axes[0], 1, "before"), (axes[1], 2, "after")):
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect")
        for i, (name, parts) in enumerate(curves.items()):
            y, q = parts[0], parts[which]
            table = reliability_table(y, q, bins)
            if not table["rows"]:
                continue
            ece = calibration_error(table)
            color = f"C{i}"
            ax.plot(
                table["mean_p"], table["observed"], color=color, label=f"{name} (ECE {ece:.3f})"
            )
            sizes = 12 + 140 * np.asarray(table["rows"]) / max(table["rows"])
            ax.scatter(table["mean_p"], table["observed"], s=sizes, color=color, alpha=0.6)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="Mean predicted P(no-show)")
        ax.set_title(f"{title.capitalize()} calibration ({split})")
        ax.legend(loc="upper left", fontsize="small")
    for ax in axes if stacked else axes[:1]:  # side by side, the axes share one
        ax.set_ylabel("Observed no-show rate")
    return fig
