"""The stacked model: the tuned tabular model's score, the appointment's columns and one or two
adapters' scores in one gradient-boosted model, fitted on the validation split by
cross-fitting, so no validation row is scored by a model that saw its label.

    P_stacked = sigmoid(blend(logits) + trees(columns, logits))

- Inputs: logit(P) of the tuned baseline (`noshow.evaluation.baseline`, fitted on train) and
  of each adapter (calibrated), plus the columns the baseline reads. The boosting starts from
  the logistic blend of the logits (what `noshow.evaluation.hybrid` ships) and its trees
  (depth 3) add what a blend cannot: an adapter that helps for some appointments more than
  for others. The number of trees is chosen on validation; 0 keeps the blend.
- Validation rows only: the adapters were trained on the train rows, so their scores there
  are optimistic and a model fitted on them would lean on the adapter. Boosting from scratch
  on validation was measured against this (time split, real data, a stand-in adapter that
  adds nothing): best cross-validated AUC on validation, worst on test (0.724 vs 0.731), as
  it learnt the validation days themselves; starting from the blend it cannot stray far.
- Cross-fitting (`cross_fit`): folds of whole appointment days when every test day comes
  after the validation days (the time split; a stacked model must carry over to days it has
  not seen), else of whole patients (`fold_groups`). Each validation row's score comes from
  the model fitted on the other folds; the number of trees is the one with the lowest pooled
  held-out log-loss (one number chosen on those folds, as the hybrid's three are), and the
  final model is refitted on every validation row with it, for test.
- `Stacked.save` writes stacked.json: the settings, the number of trees, the tuned baseline's
  settings and each adapter's logit per validation record id, so a server refits the same
  model from the loaded data (`Stacked.refit`): no pickle, and no rescoring of validation.

    from noshow.evaluation.stacking import fit_stacked, Stacked, BASELINE
    stacked = fit_stacked(val_rows, {BASELINE: p_base_val, "adapter": p_val}, y_val,
                          groups=days, fold_unit="day", record_ids=val_rows["record_id"])
    stacked.validation_p                               # cross-fitted P per validation row
    p = stacked.predict(test_rows, {BASELINE: p_base_test, "adapter": p_test})
    stacked.save(adapter_dir); Stacked.load(adapter_dir).refit(val_rows, baseline.predict)

Two adapters together: the same with {BASELINE: ..., "generative": ..., "classifier": ...}
(scripts/stack_adapters.py for two runs; the Compare tab from two adapters' stacked.json).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin

from noshow.evaluation.baseline import CATEGORICAL_COLUMNS, NUMERIC_COLUMNS
from noshow.evaluation.hybrid import _folds, _logit

STACKED_FILE = "stacked.json"
FORMAT_VERSION = 1
BASELINE = "baseline"  # the tuned tabular model's P: the first input of every stacked model
ADAPTER = "adapter"  # a run's own adapter, as its stacked.json names it
# Trees of depth 3 on at least 50 rows each, 80% of the rows per tree: a few seconds per fit
# on the 11,746 validation rows; cross-fitting chose 15-40 of them on the real time split.
SETTINGS: dict[str, Any] = {
    "learning_rate": 0.1,
    "max_depth": 3,
    "min_samples_leaf": 50,
    "subsample": 0.8,
}
MAX_TREES = 100
GROW, PATIENCE = 10, 30  # cross-fitting adds trees 10 at a time, stops 30 past the best
FOLDS = 5
LOGIT_DECIMALS = 4  # inputs rounded so a refit from stored logits is the same model
FOLD_UNITS = ("day", "patient", "row")


class StackingError(ValueError):
    """The stacked model cannot be fitted, read or applied; says why."""


class _Blend(ClassifierMixin, BaseEstimator):
    """The boosting's start: a logistic regression on the last `k` columns (the logits)."""

    def __init__(self, k: int = 2) -> None:
        self.k = k

    def fit(self, x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None):
        from sklearn.linear_model import LogisticRegression

        # Unpenalized, as the hybrid: a few weights on thousands of rows
        self.model_ = LogisticRegression(C=np.inf, max_iter=1000)
        self.model_.fit(x[:, -self.k :], y, sample_weight=sample_weight)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.model_.predict_proba(x[:, -self.k :])

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        return self.model_.decision_function(x[:, -self.k :])


def _boosting(k: int, trees: int, settings: Mapping[str, Any], seed: int):
    from sklearn.ensemble import GradientBoostingClassifier

    return GradientBoostingClassifier(
        init=_Blend(k), n_estimators=trees, random_state=seed, **dict(settings)
    )


# ---------------------------------------------------------------------------------------------
# inputs


def _check_columns(rows: pd.DataFrame) -> None:
    missing = [c for c in CATEGORICAL_COLUMNS + NUMERIC_COLUMNS if c not in rows.columns]
    if missing:
        raise StackingError(
            f"the stacked model needs column(s) {', '.join(missing)}, as the tabular baseline "
            "does (Statement/NoShow files hold text only)."
        )


def _categories(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[CATEGORICAL_COLUMNS].astype(str)


def fit_encoder(rows: pd.DataFrame):
    """Category codes from `rows` (no labels read); an unseen category becomes -1."""
    from sklearn.preprocessing import OrdinalEncoder

    _check_columns(rows)
    encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, dtype=float)
    return encoder.fit(_categories(rows))


def logits(p: Sequence | np.ndarray, what: str) -> np.ndarray:
    """logit(P) rounded to LOGIT_DECIMALS (what is stored is what is fitted on)."""
    q = np.asarray(p, dtype=float).ravel()
    if q.size and (not np.isfinite(q).all() or (q < 0).any() or (q > 1).any()):
        raise StackingError(f"{what} must be probabilities: finite numbers between 0 and 1.")
    return np.round(_logit(q), LOGIT_DECIMALS)


def design(rows: pd.DataFrame, columns: Sequence[np.ndarray], encoder: Any) -> np.ndarray:
    """(rows, features): category codes, numbers (missing as -1), then the logit columns."""
    _check_columns(rows)
    numbers = rows[NUMERIC_COLUMNS].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    parts = [encoder.transform(_categories(rows)), np.nan_to_num(numbers, nan=-1.0)]
    for column in columns:
        if len(column) != len(rows):
            raise StackingError(f"scores and rows differ in length ({len(column)} vs {len(rows)}).")
        parts.append(np.asarray(column, dtype=float)[:, None])
    return np.column_stack(parts)


def fold_groups(validation: pd.DataFrame, test: pd.DataFrame) -> tuple[np.ndarray | None, str]:
    """(group per validation row, unit) for cross-fitting: whole appointment days when the
    validation rows span 3+ days and every test day comes after them (a time split), else
    whole patients, else rows (None)."""
    day = "appointment_day"
    if day in validation.columns and day in test.columns and len(test):
        v, t = pd.to_datetime(validation[day]), pd.to_datetime(test[day])
        if v.nunique() >= 3 and t.min() > v.max():
            return v.to_numpy(), "day"
    if "patient_id" in validation.columns:
        return validation["patient_id"].to_numpy(), "patient"
    return None, "row"


# ---------------------------------------------------------------------------------------------
# fitting


def cross_fit(
    x: np.ndarray,
    y: np.ndarray,
    fold: np.ndarray,
    k: int,
    trees: int,
    settings: Mapping[str, Any] = SETTINGS,
    seed: int = 0,
    patience: int | None = None,
) -> np.ndarray:
    """(stages, rows) held-out logits: row i's column comes from the model fitted on the
    rows of the other folds, after 0 (the blend of the last `k` columns), 1, ... `trees`
    trees. Fold numbers come from `fold`, never from the labels. With `patience`, the
    folds' models grow together, GROW trees at a time, and stop once the pooled held-out
    log-loss has not improved for `patience` trees (fewer stages come back)."""
    folds = [(fold != f, fold == f) for f in np.unique(fold)]
    if trees == 0:
        out = np.empty((1, len(y)))
        for fit, held in folds:
            out[0, held] = _Blend(k).fit(x[fit], y[fit]).decision_function(x[held])
        return out
    step = trees if patience is None else min(GROW, trees)
    models = [_boosting(k, step, settings, seed).set_params(warm_start=True) for _ in folds]
    while True:
        out = np.empty((step + 1, len(y)))
        for model, (fit, held) in zip(models, folds, strict=True):
            model.fit(x[fit], y[fit])  # warm: adds the trees it lacks, same as one fit
            out[0, held] = model.init_.decision_function(x[held])
            for i, z in enumerate(model.staged_decision_function(x[held]), start=1):
                out[i, held] = z.ravel()
        best = int(np.argmin(_pooled_log_loss(y, out)))
        if step >= trees or (patience is not None and step - best >= patience):
            return out
        step = min(step + GROW, trees)
        for model in models:
            model.set_params(n_estimators=step)


def _pooled_log_loss(y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Log-loss of sigmoid(z) per row of z (stages x rows)."""
    return np.mean(np.logaddexp(0.0, z) - y * z, axis=-1)


def _mean_fold_auc(y: np.ndarray, score: np.ndarray, fold: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    per_fold = [
        roc_auc_score(y[fold == f], score[fold == f])
        for f in np.unique(fold)
        if 0 < y[fold == f].sum() < (fold == f).sum()
    ]
    return float(np.mean(per_fold)) if per_fold else None


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


@dataclass(eq=False)
class Stacked:
    """A stacked model fitted on validation rows; `model` is None after `load` until `refit`."""

    adapters: tuple[str, ...]  # the adapter inputs, after BASELINE
    n_trees: int  # chosen by cross-fitting; 0 = the blend of the logits alone
    settings: Mapping[str, Any]
    rows: int  # validation rows fitted on
    fold_unit: str  # day / patient / row
    folds: int
    seed: int = 0
    threshold: float | None = None  # max-F1 on the cross-fitted validation P
    cv_auc: Mapping[str, float | None] | None = None  # stacked, blend, each input; same folds
    cv_log_loss: Mapping[str, float] | None = None  # stacked (chosen trees) and blend
    baseline_params: Mapping[str, Any] | None = None  # the tuned baseline it stacks
    record_ids: list[int] | None = None  # the validation rows, in fitting order
    validation_logits: Mapping[str, list[float]] | None = None  # per adapter, per row
    model: Any = field(default=None, repr=False)
    encoder: Any = field(default=None, repr=False)
    validation_p: np.ndarray | None = field(default=None, repr=False)  # cross-fitted

    @property
    def inputs(self) -> tuple[str, ...]:
        return (BASELINE, *self.adapters)

    def predict(self, rows: pd.DataFrame, p: Mapping[str, Sequence | np.ndarray]) -> np.ndarray:
        """P(no-show) for `rows` (their columns) given each input's P (`inputs`)."""
        if self.model is None:
            raise StackingError("this stacked model is not fitted here yet: call refit(...).")
        missing = [name for name in self.inputs if name not in p]
        if missing:
            raise StackingError(f"the stacked model needs the P of {', '.join(missing)}.")
        if len(rows) == 0:
            return np.zeros(0)
        columns = [logits(p[name], f"{name} scores") for name in self.inputs]
        x = design(rows, columns, self.encoder)
        return _sigmoid(self.model.decision_function(x).ravel())

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "kind": "gradient boosting from the blend of logit(P) of the tuned baseline and "
            "the adapter(s), on the tabular columns and those logits",
            "fitted_on": "validation",
            "inputs": list(self.inputs),
            "n_trees": self.n_trees,
            "settings": dict(self.settings),
            "rows": self.rows,
            "fold_unit": self.fold_unit,
            "folds": self.folds,
            "seed": self.seed,
            "threshold": self.threshold,
            "cv_auc": dict(self.cv_auc) if self.cv_auc else None,
            "cv_log_loss": dict(self.cv_log_loss) if self.cv_log_loss else None,
            "baseline_params": dict(self.baseline_params) if self.baseline_params else None,
            "record_ids": list(self.record_ids) if self.record_ids is not None else None,
            "validation_logits": {k: list(v) for k, v in (self.validation_logits or {}).items()},
        }

    def summary(self) -> dict[str, Any]:
        """to_dict without the per-row logits (what eval.json keeps)."""
        out = self.to_dict()
        for key in ("record_ids", "validation_logits"):
            out.pop(key)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Stacked:
        version = data.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise StackingError(
                f"stacked format {version} is not known to this noshow (knows {FORMAT_VERSION})."
            )
        try:
            inputs = list(data["inputs"])
            if not inputs or inputs[0] != BASELINE:
                raise ValueError(f"inputs must start with {BASELINE!r}, got {inputs}")
            stacked = cls(
                adapters=tuple(inputs[1:]),
                n_trees=int(data["n_trees"]),
                settings=dict(data["settings"]),
                rows=int(data.get("rows", 0)),
                fold_unit=str(data.get("fold_unit", "row")),
                folds=int(data.get("folds", FOLDS)),
                seed=int(data.get("seed", 0)),
                threshold=data.get("threshold"),
                cv_auc=data.get("cv_auc"),
                cv_log_loss=data.get("cv_log_loss"),
                baseline_params=data.get("baseline_params"),
                record_ids=data.get("record_ids"),
                validation_logits=data.get("validation_logits"),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise StackingError(f"stacked data is malformed: {e!r}") from e
        ids, stored = stacked.record_ids, stacked.validation_logits or {}
        if ids is not None and any(len(stored.get(a, ())) != len(ids) for a in stacked.adapters):
            raise StackingError("stacked data is malformed: one logit per record id per adapter.")
        return stacked

    def save(self, folder: str | Path) -> Path:
        """Write `folder`/stacked.json atomically; return its path."""
        from noshow.system.files import write_json_atomic

        return write_json_atomic(Path(folder) / STACKED_FILE, self.to_dict())

    @classmethod
    def load(cls, folder: str | Path) -> Stacked | None:
        """The stacked model stored in `folder` (to `refit`), or None when there is none."""
        from noshow.system.files import read_json_object

        data = read_json_object(Path(folder) / STACKED_FILE, StackingError, "a stacked object")
        return None if data is None else cls.from_dict(data)

    def refit(
        self, validation: pd.DataFrame, predict_baseline: Callable[[pd.DataFrame], np.ndarray]
    ) -> Stacked:
        """The same model again from the stored settings and logits: the stored validation
        rows are looked up in `validation` by record id (labels and columns), the tuned
        baseline (refitted from `baseline_params`) scores them, one fit. Raises StackingError
        when the rows are not all there (another data set)."""
        if self.record_ids is None or not self.validation_logits:
            raise StackingError("this stacked.json stores no validation logits to refit from.")
        rows = rows_by_id(validation, self.record_ids)
        p = {BASELINE: predict_baseline(rows)}
        stored = {a: _sigmoid(np.asarray(self.validation_logits[a], float)) for a in self.adapters}
        refitted = fit_stacked(
            rows,
            {**p, **stored},
            rows["no_show"].to_numpy(),
            fold_unit=self.fold_unit,
            folds=self.folds,
            seed=self.seed,
            settings=self.settings,
            trees=self.n_trees,
            record_ids=self.record_ids,
        )
        refitted.threshold, refitted.cv_auc, refitted.cv_log_loss = (
            self.threshold,
            self.cv_auc,
            self.cv_log_loss,
        )
        refitted.baseline_params = self.baseline_params
        return refitted


def rows_by_id(frame: pd.DataFrame, record_ids: Sequence) -> pd.DataFrame:
    """`frame`'s rows for `record_ids`, in that order; StackingError naming what is missing."""
    if "record_id" not in frame.columns:
        raise StackingError("the loaded data has no record ids to find the validation rows by.")
    wanted = pd.Index(np.asarray(record_ids))
    position = pd.Index(frame["record_id"]).get_indexer(wanted)
    if (position < 0).any():
        raise StackingError(
            f"{int((position < 0).sum()):,} of the {len(wanted):,} validation rows the stacked "
            "model was fitted on are not in the loaded data: load the data set it was "
            "evaluated on."
        )
    return frame.iloc[position]


def fit_stacked(
    rows: pd.DataFrame,
    p: Mapping[str, Sequence | np.ndarray],
    y: Sequence | np.ndarray,
    *,
    groups: Sequence | np.ndarray | None = None,
    fold_unit: str = "row",
    folds: int = FOLDS,
    seed: int = 0,
    settings: Mapping[str, Any] = SETTINGS,
    max_trees: int = MAX_TREES,
    trees: int | None = None,
    record_ids: Sequence | None = None,
) -> Stacked:
    """Fit on validation `rows` (their columns), each input's P for them (`p`: BASELINE
    first, then the adapters, e.g. {BASELINE: ..., "adapter": ...}) and their labels `y`.

    The number of trees (0 .. `max_trees`) is chosen by cross-fitting over folds of `groups`
    (days or patients: `fold_groups`), whose held-out P become `validation_p`; `trees` given
    (a refit) skips the choice and fits once. `record_ids` (the rows' ids) are stored with the
    adapters' logits so `refit` can rebuild the model. The threshold is left to the caller.
    """
    names = list(p)
    if not names or names[0] != BASELINE or len(names) < 2:
        raise StackingError(f"inputs must be {BASELINE!r} then one or more adapters, got {names}.")
    if fold_unit not in FOLD_UNITS:
        raise StackingError(f"fold_unit must be one of {', '.join(FOLD_UNITS)}, got {fold_unit!r}.")
    labels = np.asarray(y, dtype=float).ravel()
    if len(labels) != len(rows):
        raise StackingError(f"labels and rows differ in length ({len(labels)} vs {len(rows)}).")
    if not np.isin(labels, (0.0, 1.0)).all():
        raise StackingError("labels must be 0 (attended) or 1 (no-show).")
    if labels.size == 0 or labels.min() == labels.max():
        raise StackingError("the stacked model needs validation rows of both classes.")
    labels = labels.astype(int)
    columns = [logits(p[name], f"{name} scores") for name in names]
    encoder = fit_encoder(rows)
    x = design(rows, columns, encoder)
    k = len(names)
    stacked = Stacked(
        adapters=tuple(names[1:]),
        n_trees=0,
        settings=dict(settings),
        rows=len(labels),
        fold_unit=fold_unit,
        folds=folds,
        seed=seed,
        record_ids=None if record_ids is None else [int(r) for r in np.asarray(record_ids)],
        validation_logits={
            name: c.tolist() for name, c in zip(names[1:], columns[1:], strict=True)
        },
        encoder=encoder,
    )
    if trees is None:
        g = None if groups is None else np.asarray(groups).ravel()
        if g is not None and len(g) != len(labels):
            raise StackingError(f"groups and labels differ in length ({len(g)} vs {len(labels)}).")
        units = len(np.unique(g)) if g is not None else len(labels)
        stacked.folds = min(folds, units)
        if stacked.folds < 2:
            raise StackingError("cross-fitting needs at least two days, patients or rows.")
        fold = _folds(labels, g, stacked.folds, seed)
        for f in range(stacked.folds):
            if len(np.unique(labels[fold != f])) < 2:
                raise StackingError(
                    "too few validation rows to cross-fit: a fold's complement holds one class."
                )
        held = cross_fit(x, labels, fold, k, max_trees, settings, seed, patience=PATIENCE)
        losses = _pooled_log_loss(labels, held)
        trees = int(np.argmin(losses))  # ties: fewer trees
        stacked.validation_p = _sigmoid(held[trees])
        stacked.cv_log_loss = {"stacked": float(losses[trees]), "blend": float(losses[0])}
        stacked.cv_auc = {
            "stacked": _mean_fold_auc(labels, held[trees], fold),
            "blend": _mean_fold_auc(labels, held[0], fold),
            **{
                name: _mean_fold_auc(labels, c, fold)
                for name, c in zip(names, columns, strict=True)
            },
        }
    stacked.n_trees = trees
    if trees == 0:
        stacked.model = _Blend(k).fit(x, labels)
    else:
        stacked.model = _boosting(k, trees, settings, seed).fit(x, labels)
    return stacked


def stack_run(
    validation: pd.DataFrame,
    test: pd.DataFrame,
    y_val: Sequence | np.ndarray,
    adapters: Mapping[str, tuple[Sequence | np.ndarray, Sequence | np.ndarray]],
    baseline: tuple[Sequence | np.ndarray, Sequence | np.ndarray],
    *,
    baseline_params: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> tuple[Stacked, tuple[np.ndarray, np.ndarray]]:
    """A run's stacked model: fitted on `validation` (folds from `fold_groups`), its
    threshold the max-F1 one on the cross-fitted validation P; returns it with (cross-fitted
    validation P, test P). `adapters` maps each adapter's name to its calibrated (validation
    P, test P); `baseline` is the tuned baseline's. Test labels are never read."""
    from noshow.evaluation.metrics import choose_threshold

    groups, unit = fold_groups(validation, test)
    ids = validation["record_id"].to_numpy() if "record_id" in validation.columns else None
    p_val = {BASELINE: baseline[0], **{name: pair[0] for name, pair in adapters.items()}}
    p_test = {BASELINE: baseline[1], **{name: pair[1] for name, pair in adapters.items()}}
    stacked = fit_stacked(
        validation, p_val, y_val, groups=groups, fold_unit=unit, seed=seed, record_ids=ids
    )
    stacked.threshold = choose_threshold(y_val, stacked.validation_p)
    stacked.baseline_params = dict(baseline_params) if baseline_params else None
    return stacked, (stacked.validation_p, stacked.predict(test, p_test))
