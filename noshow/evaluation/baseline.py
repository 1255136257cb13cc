"""The tabular baseline every LLM is reported against: scikit-learn HistGradientBoosting on the
same columns the statements hold (`BASELINE_FEATURES`, the leak-free patient history
included), fitted on the train split.

- `tune_tabular_baseline(train, validation)`: the tuned baseline the reports show. A 4-point
  grid (how the neighbourhood is encoded x tree size), each point early-stopped on the
  validation rows' log-loss and scored by validation ROC-AUC; the best point is kept. Test
  rows are never seen. ~30-36 s for the real splits on a busy 2-core machine, one point after
  the other; with >= 8 CPUs the points fit in parallel processes (about the longest fit).
- `fit_tabular_baseline(train)`: the untuned model (fixed settings, early stopping on a random
  10% of the train rows), kept as a second row and for the app's quick baseline.
- `baseline_predict(model, rows)`: P(no-show) for each row, for either model.
- `refit_tuned_baseline(train, params)`: the tuned model again from its stored
  settings (one fit, no grid), for an app that needs the same baseline a run reported.

    from noshow.evaluation.baseline import tune_tabular_baseline, baseline_predict
    tuned = tune_tabular_baseline(frame[frame.split == "train"], frame[frame.split == "validation"])
    p_test = tuned.predict(frame[frame.split == "test"])
    tuned.to_dict()   # settings, iterations, validation ROC-AUC of every grid point, seconds

Run `python scripts/bench_quality.py` for the tuned and untuned figures with 95% intervals.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder
from threadpoolctl import threadpool_limits

from noshow.data.clean import FLAG_COLUMNS

CATEGORICAL_COLUMNS = ["gender", "neighbourhood", "weekday"]
NUMERIC_COLUMNS = [
    "age",
    *FLAG_COLUMNS,
    "lead_days",
    "booking_hour",
    "prior_appointments",
    "prior_no_shows",
]
# The columns a statement is written from (noshow.data.statements.STATEMENT_FIELDS, checked by
# tests/test_baseline.py): the baseline sees what the LLM reads, no more.
# (noshow.data.clean.FEATURE_COLUMNS is the whole prepared frame.)
BASELINE_FEATURES = [*CATEGORICAL_COLUMNS, *NUMERIC_COLUMNS]
LABEL_COLUMN = "no_show"

# The grid, measured on the real data (figures in BENCHMARKS.md, "Why the tuned baseline's
# grid is what it is"): how the 81 neighbourhoods are encoded matters most and the time and
# patient splits prefer different encodings, so both are tried; tree size barely moves it
# (7 leaves never won and needs the most trees). Learning rate 0.05 with early stopping keeps
# each fit short; a lower one gained nothing measurable at twice the time.
TUNING_GRID: tuple[dict[str, Any], ...] = tuple(
    {"neighbourhood": encoding, "max_leaf_nodes": leaves}
    for encoding in ("code", "category")
    for leaves in (15, 31)
)
TUNED_FIXED = {
    "learning_rate": 0.05,
    "min_samples_leaf": 20,
    "l2_regularization": 1.0,
    "max_iter": 2000,
    "n_iter_no_change": 30,
}
NEIGHBOURHOOD_ENCODINGS = ("code", "category")


class BaselineError(ValueError):
    """The tabular baseline cannot be fitted or applied to this data (e.g. text-only files)."""


def _check_features(df: pd.DataFrame, need_label: bool) -> None:
    need = BASELINE_FEATURES + ([LABEL_COLUMN] if need_label else [])
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise BaselineError(
            f"the tabular baseline needs column(s) {', '.join(missing)}; Statement/NoShow "
            "files have text only, so report the baseline as unavailable for them."
        )


def _labels(df: pd.DataFrame, what: str) -> np.ndarray:
    y = pd.to_numeric(df[LABEL_COLUMN], errors="coerce")
    if y.isna().any() or not y.isin([0, 1]).all():
        raise BaselineError(f"'{LABEL_COLUMN}' must be 0/1 for every {what} row.")
    if y.nunique() < 2:
        raise BaselineError(f"the {what} rows hold one class only; the baseline needs both.")
    return y.astype(int).to_numpy()


def _feature_frame(df: pd.DataFrame) -> pd.DataFrame:
    out = df[BASELINE_FEATURES].copy()
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


def _column_transformer() -> ColumnTransformer:
    encoder = OrdinalEncoder(
        handle_unknown="use_encoded_value",
        unknown_value=np.nan,
        encoded_missing_value=np.nan,
    )
    return ColumnTransformer(
        [("categories", encoder, CATEGORICAL_COLUMNS), ("numbers", "passthrough", NUMERIC_COLUMNS)]
    )


def _categorical_mask(neighbourhood: str) -> list[bool]:
    """Which encoded columns are native categories. As "code" the neighbourhood stays an
    ordered integer (alphabetical), which the trees split in ranges."""
    if neighbourhood not in NEIGHBOURHOOD_ENCODINGS:
        raise ValueError(
            f"neighbourhood encoding must be one of {', '.join(NEIGHBOURHOOD_ENCODINGS)}, "
            f"got {neighbourhood!r}."
        )
    return [c != "neighbourhood" or neighbourhood == "category" for c in CATEGORICAL_COLUMNS] + [
        False
    ] * len(NUMERIC_COLUMNS)


def fit_tabular_baseline(train_df: pd.DataFrame, seed: int = 0) -> Pipeline:
    """Fit the untuned HistGradientBoosting on BASELINE_FEATURES -> `no_show`; return the
    pipeline.

    gender, neighbourhood and weekday are ordinal-encoded and treated as native categories;
    a category unseen in training becomes "missing" at prediction time.
    """
    _check_features(train_df, need_label=True)
    y = _labels(train_df, "training")
    model = HistGradientBoostingClassifier(
        learning_rate=0.1,
        max_iter=200,
        max_leaf_nodes=31,
        min_samples_leaf=50,
        l2_regularization=1.0,
        categorical_features=_categorical_mask("category"),
        early_stopping=True,  # on a random 10% of the training rows, never on test
        random_state=seed,
    )
    pipeline = Pipeline([("columns", _column_transformer()), ("model", model)])
    with _one_thread():
        pipeline.fit(_feature_frame(train_df), y)
    return pipeline


def baseline_predict(model: Pipeline, df: pd.DataFrame) -> np.ndarray:
    """Return P(no-show) of a fitted baseline (tuned or not) for each row of `df`."""
    _check_features(df, need_label=False)
    if len(df) == 0:
        return np.zeros(0)
    with _one_thread():
        proba = model.predict_proba(_feature_frame(df))
    classes = list(model.classes_)
    return proba[:, classes.index(1)].astype(float)


# ---------------------------------------------------------------------------------------------
# tuned on the validation split


@dataclass
class TunedBaseline:
    """The tuned baseline: the fitted pipeline, the winning settings and how it was chosen."""

    model: Pipeline
    params: dict[str, Any]  # the grid point plus TUNED_FIXED and the early-stopped n_iter
    validation_auc: float  # of the chosen point (optimistic: validation also chose it)
    trials: list[dict[str, Any]] = field(default_factory=list)  # every grid point
    seconds: float = 0.0
    workers: int = 1

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        return baseline_predict(self.model, df)

    def to_dict(self) -> dict[str, Any]:
        """The settings and the search, JSON-ready (the fitted trees are not included)."""
        return {
            "kind": "HistGradientBoosting, tuned on validation",
            "params": dict(self.params),
            "validation_auc": self.validation_auc,
            "trials": [dict(t) for t in self.trials],
            "seconds": round(self.seconds, 2),
            "workers": self.workers,
        }


def _fit_point(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray | None,
    y_val: np.ndarray | None,
    point: dict[str, Any],
    seed: int,
) -> HistGradientBoostingClassifier:
    """One model on encoded columns: early-stopped on the validation rows when given, else
    exactly `point["n_iter"]` trees."""
    settings = {**TUNED_FIXED, **point}
    neighbourhood = settings.pop("neighbourhood")
    n_iter = settings.pop("n_iter", None)
    if n_iter is not None:  # a refit from stored settings: exactly that many trees
        settings.update(max_iter=int(n_iter))
    settings.pop("n_iter_no_change")
    model = HistGradientBoostingClassifier(
        **settings,
        categorical_features=_categorical_mask(neighbourhood),
        early_stopping=x_val is not None and n_iter is None,
        n_iter_no_change=TUNED_FIXED["n_iter_no_change"],
        random_state=seed,
    )
    if model.early_stopping:
        # Early stopping on the validation days themselves (not a random slice of train):
        # with the time split they are the rows closest to test.
        model.fit(x_train, y_train, X_val=x_val, y_val=y_val)
    else:
        model.fit(x_train, y_train)
    return model


def _trial(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    point: dict[str, Any],
    seed: int,
) -> tuple[HistGradientBoostingClassifier, float, float]:
    """One grid point: the early-stopped model, its validation ROC-AUC and its seconds."""
    t0 = time.perf_counter()
    with _one_thread():  # also inside a worker process
        model = _fit_point(x_train, y_train, x_val, y_val, point, seed)
        auc = float(roc_auc_score(y_val, model.predict_proba(x_val)[:, 1]))
    return model, auc, time.perf_counter() - t0


def default_workers(points: int) -> int:
    """Grid points fitted at once: one per two CPUs (each fit is single-threaded), so a
    2-core machine that also serves the app fits them one by one."""
    return max(1, min(points, (os.cpu_count() or 1) // 2))


def tune_tabular_baseline(
    train_df: pd.DataFrame,
    val_df: pd.DataFrame,
    seed: int = 0,
    grid: Sequence[dict[str, Any]] = TUNING_GRID,
    workers: int | None = None,
) -> TunedBaseline:
    """Fit one HistGradientBoosting per grid point on `train_df`, early-stopped on `val_df`'s
    log-loss, and keep the one with the best validation ROC-AUC (ties: the earlier point).

    Only train and validation rows enter; pass test rows to `baseline_predict` afterwards.
    `workers` processes fit grid points at once (default `default_workers`); the result does
    not depend on it. Raises BaselineError when the columns are missing or a split holds one
    class only.
    """
    if not grid:
        raise ValueError("the tuning grid is empty; pass at least one setting.")
    _check_features(train_df, need_label=True)
    _check_features(val_df, need_label=True)
    y_train, y_val = _labels(train_df, "training"), _labels(val_df, "validation")
    started = time.perf_counter()
    columns = _column_transformer()
    x_train = columns.fit_transform(_feature_frame(train_df))
    x_val = columns.transform(_feature_frame(val_df))
    workers = default_workers(len(grid)) if workers is None else max(1, min(workers, len(grid)))
    if workers == 1:
        results = [_trial(x_train, y_train, x_val, y_val, point, seed) for point in grid]
    else:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=workers, backend="loky")(
            delayed(_trial)(x_train, y_train, x_val, y_val, point, seed) for point in grid
        )
    trials: list[dict[str, Any]] = []
    best = 0
    for i, (point, (model, auc, seconds)) in enumerate(zip(grid, results, strict=True)):
        params = {**TUNED_FIXED, **point, "n_iter": int(model.n_iter_)}
        trials.append({**params, "validation_auc": auc, "seconds": round(seconds, 2)})
        if auc > trials[best]["validation_auc"]:
            best = i
    chosen = results[best][0]
    params = {k: v for k, v in trials[best].items() if k not in ("validation_auc", "seconds")}
    return TunedBaseline(
        model=Pipeline([("columns", columns), ("model", chosen)]),
        params=params,
        validation_auc=trials[best]["validation_auc"],
        trials=trials,
        seconds=time.perf_counter() - started,
        workers=workers,
    )


def refit_tuned_baseline(train_df: pd.DataFrame, params: dict[str, Any], seed: int = 0) -> Pipeline:
    """Fit the baseline once with stored settings (`TunedBaseline.params`, n_iter included):
    the same model a run reported, without repeating the grid (same rows and seed give the
    same trees)."""
    _check_features(train_df, need_label=True)
    y_train = _labels(train_df, "training")
    point = {k: params[k] for k in ("neighbourhood", "max_leaf_nodes", "n_iter") if k in params}
    for k in ("learning_rate", "min_samples_leaf", "l2_regularization"):
        if k in params:
            point[k] = params[k]
    columns = _column_transformer()
    with _one_thread():
        x_train = columns.fit_transform(_feature_frame(train_df))
        model = _fit_point(x_train, y_train, None, None, point, seed)
    return Pipeline([("columns", columns), ("model", model)])
