"""The hybrid model: an adapter's score and the tabular baseline's score blended into one
P(no-show), with weights fitted on the validation split.

    P_hybrid = sigmoid(w_adapter * logit(P_adapter) + w_baseline * logit(P_baseline) + b)

Why this and how it stays leak-free:
- Both inputs are scores of models fitted on the train split only, so on validation rows they
  are out-of-sample; the three numbers are fitted by logistic regression on the validation
  rows alone. Test rows enter only through `Hybrid.predict`, which takes scores, never labels.
- Not "the adapter's logit as one more gradient-boosting feature" fitted on train: the adapter
  was trained on those rows, so its scores there are optimistic and the trees would lean on
  them. Boosting on the validation rows instead (11.7k rows, adapter logit + columns) was
  measured and did not beat this blend (BENCHMARKS.md, the shipped adapters' CPU preview),
  and the blend stores as three numbers of JSON (no pickle) that numpy applies.
- Validation also chose the adapter's checkpoint and the baseline's settings, so its rows are
  not perfectly fresh for either; three weights on 11.7k rows add next to nothing to that.
- `fit_hybrid` reports the blend's 5-fold cross-validated ROC-AUC on validation (folds by
  patient when `groups` is given) next to the adapter's and the baseline's on the same folds.

    from noshow.evaluation.hybrid import fit_hybrid, Hybrid
    hybrid = fit_hybrid(p_adapter_val, p_baseline_val, y_val, groups=val["patient_id"])
    p = hybrid.predict(p_adapter_test, p_baseline_test)
    hybrid.save(adapter_dir)                  # adapter_dir / "hybrid.json"
    Hybrid.load(adapter_dir)                  # None when the adapter has no hybrid

Serving the hybrid needs the row's tabular columns (for the baseline), so it can score data-set
rows (Compare's batch view, examples), not free text typed by a user.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HYBRID_FILE = "hybrid.json"
FORMAT_VERSION = 1
EPS = 1e-7
CV_FOLDS = 5


class HybridError(ValueError):
    """The hybrid cannot be fitted, read or applied; says why."""


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, EPS, 1 - EPS)
    return np.log(q) - np.log1p(-q)


def _probabilities(p: Sequence | np.ndarray, what: str) -> np.ndarray:
    q = np.asarray(p, dtype=float).ravel()
    if q.size and (not np.isfinite(q).all() or (q < 0).any() or (q > 1).any()):
        raise HybridError(f"{what} must be probabilities: finite numbers between 0 and 1.")
    return q


@dataclass(frozen=True)
class Hybrid:
    """A logistic blend of the adapter's and the baseline's logits, fitted on validation."""

    w_adapter: float
    w_baseline: float
    intercept: float
    rows: int = 0  # validation rows it was fitted on
    threshold: float | None = None  # max-F1 threshold on its validation scores
    cv_auc: Mapping[str, float] | None = None  # hybrid / adapter / baseline, same folds
    # The tuned baseline's settings (noshow.evaluation.baseline.TunedBaseline.params) whose P
    # it blends: a server refits that baseline (`refit_tuned_baseline`) to score new rows the
    # same way.
    baseline_params: Mapping[str, Any] | None = None

    def predict(
        self, p_adapter: Sequence | np.ndarray, p_baseline: Sequence | np.ndarray
    ) -> np.ndarray:
        """P(no-show) of the hybrid for rows scored by the adapter and by the baseline."""
        a = _probabilities(p_adapter, "adapter scores")
        b = _probabilities(p_baseline, "baseline scores")
        if a.shape != b.shape:
            raise HybridError(
                f"adapter and baseline scores differ in length ({len(a)} vs {len(b)})."
            )
        z = self.w_adapter * _logit(a) + self.w_baseline * _logit(b) + self.intercept
        return 0.5 * (1.0 + np.tanh(0.5 * z))  # sigmoid, inside [0, 1] for any z

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "kind": "logistic blend of logit(P adapter) and logit(P tuned baseline)",
            "fitted_on": "validation",
            "w_adapter": self.w_adapter,
            "w_baseline": self.w_baseline,
            "intercept": self.intercept,
            "rows": self.rows,
            "threshold": self.threshold,
            "cv_auc": dict(self.cv_auc) if self.cv_auc else None,
            "baseline_params": dict(self.baseline_params) if self.baseline_params else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Hybrid:
        version = data.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise HybridError(
                f"hybrid format {version} is not known to this noshow (knows {FORMAT_VERSION})."
            )
        try:
            values = {k: data[k] for k in ("w_adapter", "w_baseline", "intercept")}
            hybrid = cls(
                **{k: float(v) for k, v in values.items()},
                rows=int(data.get("rows", 0)),
                threshold=data.get("threshold"),
                cv_auc=data.get("cv_auc"),
                baseline_params=data.get("baseline_params"),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise HybridError(f"hybrid data is malformed: {e!r}") from e
        if not all(np.isfinite([hybrid.w_adapter, hybrid.w_baseline, hybrid.intercept])):
            raise HybridError("hybrid weights must be finite numbers.")
        return hybrid

    def save(self, folder: str | Path) -> Path:
        """Write `folder`/hybrid.json atomically; return its path."""
        from noshow.system.files import write_json_atomic

        return write_json_atomic(Path(folder) / HYBRID_FILE, self.to_dict())

    @classmethod
    def load(cls, folder: str | Path) -> Hybrid | None:
        """The hybrid stored in `folder`, or None when there is none."""
        from noshow.system.files import read_json_object

        data = read_json_object(Path(folder) / HYBRID_FILE, HybridError, "a hybrid object")
        return None if data is None else cls.from_dict(data)


def _fit_blend(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    from sklearn.linear_model import LogisticRegression

    # Unpenalized: three numbers on thousands of rows need no shrinkage, and a penalty
    # would pull the blend away from calibrated.
    model = LogisticRegression(C=np.inf, max_iter=1000).fit(x, y)
    w_adapter, w_baseline = (float(w) for w in model.coef_[0])
    return w_adapter, w_baseline, float(model.intercept_[0])


def _folds(y: np.ndarray, groups: np.ndarray | None, folds: int, seed: int) -> np.ndarray:
    """Fold number per row: whole groups (patients) stay in one fold when given."""
    rng = np.random.default_rng(seed)
    if groups is None:
        return rng.permutation(len(y)) % folds
    _, cluster = np.unique(groups, return_inverse=True)
    fold_of_cluster = rng.permutation(int(cluster.max()) + 1) % folds
    return fold_of_cluster[cluster]


def fit_hybrid(
    p_adapter_val: Sequence | np.ndarray,
    p_baseline_val: Sequence | np.ndarray,
    y_val: Sequence | np.ndarray,
    *,
    groups: Sequence | np.ndarray | None = None,
    folds: int = CV_FOLDS,
    seed: int = 0,
) -> Hybrid:
    """Fit the blend on validation rows only: the adapter's and the tuned baseline's P for
    each validation row, and its label. `groups` (patient ids) keeps a patient's rows in one
    cross-validation fold. The threshold is left for the caller to choose
    (noshow.evaluation.report.evaluate_run)."""
    from sklearn.metrics import roc_auc_score

    a = _probabilities(p_adapter_val, "adapter scores")
    b = _probabilities(p_baseline_val, "baseline scores")
    y = np.asarray(y_val, dtype=float).ravel()
    if not (len(a) == len(b) == len(y)):
        raise HybridError(
            f"adapter scores, baseline scores and labels differ in length "
            f"({len(a)}, {len(b)}, {len(y)})."
        )
    if not np.isin(y, (0.0, 1.0)).all():
        raise HybridError("labels must be 0 (attended) or 1 (no-show).")
    if y.size == 0 or y.min() == y.max():
        raise HybridError("the hybrid needs validation rows of both classes.")
    y = y.astype(int)
    x = np.column_stack([_logit(a), _logit(b)])
    g = None if groups is None else np.asarray(groups).ravel()
    if g is not None and len(g) != len(y):
        raise HybridError(f"groups and labels differ in length ({len(g)} vs {len(y)}).")
    fold = _folds(y, g, folds, seed)
    held_out = np.empty(len(y))
    cv_auc = None
    usable = all(0 < y[fold == k].sum() < (fold == k).sum() for k in range(folds))
    if usable:
        for k in range(folds):
            held = fold == k
            w_a, w_b, c = _fit_blend(x[~held], y[~held])
            held_out[held] = w_a * x[held, 0] + w_b * x[held, 1] + c
        # AUC per fold, averaged: the pooled AUC would mix the folds' different intercepts
        cv_auc = {
            name: float(np.mean([roc_auc_score(y[fold == k], s[fold == k]) for k in range(folds)]))
            for name, s in (("hybrid", held_out), ("adapter", x[:, 0]), ("baseline", x[:, 1]))
        }
    w_a, w_b, c = _fit_blend(x, y)
    return Hybrid(w_adapter=w_a, w_baseline=w_b, intercept=c, rows=len(y), cv_auc=cv_auc)
