"""The report every run writes, so every model is reported next to what a user would pick
instead: the adapter (raw and calibrated), the tuned and untuned tabular baselines and the
hybrid, side by side, each ROC-AUC with its interval and each difference in words.

- `build_report`: thresholds from validation, metrics and intervals on test;
  `noshow.training.runs.write_eval` saves it as eval.json.
- `evaluate_run` is the end of every training run, written once: it fits the calibrator
  (noshow.evaluation.calibration), tunes the baseline (noshow.evaluation.baseline), fits the
  hybrid (noshow.evaluation.hybrid) and the stacked model (noshow.evaluation.stacking), all
  on train/validation rows, then calls `build_report` on test; "recalibration" holds the test
  ECE with each day recalibrated from the days before it (noshow.evaluation.recalibration);
  the sections a clinic acts on (net benefit, capacity, subgroups: noshow.evaluation.clinical)
  come from the same test rows.

    from noshow.evaluation.report import evaluate_run
    run = evaluate_run(train, validation, test, p_val, p_test, seed=0)   # adapter's raw P
    run.report                      # eval.json
    run.calibrator.save(adapter_dir); run.hybrid.save(adapter_dir); run.stacked.save(...)
    run.scores                      # every model's P per validation/test row
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from noshow.evaluation.baseline import (
    BaselineError,
    TunedBaseline,
    baseline_predict,
    fit_tabular_baseline,
    tune_tabular_baseline,
)
from noshow.evaluation.calibration import CalibrationError, Calibrator, fit_calibrator
from noshow.evaluation.clinical import clinical_report
from noshow.evaluation.hybrid import Hybrid, HybridError, fit_hybrid
from noshow.evaluation.intervals import RESAMPLES, compare_auc
from noshow.evaluation.metrics import check_scores, choose_threshold, compute_metrics
from noshow.evaluation.recalibration import recalibrate_run
from noshow.evaluation.stacking import ADAPTER, Stacked, StackingError, stack_run

# The rows of a report, in the order tables show them, with the names people read.
REPORT_NAMES = {
    "model": "this adapter",
    "model_uncalibrated": "this adapter, before calibration",
    "hybrid": "hybrid (adapter + tabular)",
    "stacked": "stacked (tabular model + adapter score)",
    "baseline": "tuned tabular baseline",
    "baseline_untuned": "untuned tabular baseline",
}
# Paired ROC-AUC differences a report states (first minus second), when both rows exist.
REPORT_PAIRS = (
    ("model", "baseline"),
    ("hybrid", "baseline"),
    ("hybrid", "model"),
    ("stacked", "baseline"),
    ("stacked", "model"),
    ("stacked", "hybrid"),
    ("model", "baseline_untuned"),
    ("baseline", "baseline_untuned"),
)


def build_report(
    y_val: Sequence | np.ndarray,
    p_val: Sequence | np.ndarray,
    y_test: Sequence | np.ndarray,
    p_test: Sequence | np.ndarray,
    baseline: tuple[Sequence | np.ndarray, Sequence | np.ndarray] | None = None,
    *,
    untuned_baseline: tuple[Sequence | np.ndarray, Sequence | np.ndarray] | None = None,
    hybrid: tuple[Sequence | np.ndarray, Sequence | np.ndarray] | None = None,
    stacked: tuple[Sequence | np.ndarray, Sequence | np.ndarray] | None = None,
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
    `baseline` is the tuned tabular baseline's (p_val, p_test); `untuned_baseline`, `hybrid`
    and `stacked` (its validation P cross-fitted) likewise. `groups` (the test rows' patient
    ids) makes the intervals count a patient's appointments as one unit. Keys: model,
    model_uncalibrated, baseline, baseline_untuned, hybrid, stacked (metrics dicts with
    roc_auc_low/roc_auc_high, or None), threshold (the model's), calibration, validation {same keys}, intervals {method, level, unit, ...}, differences
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
        ("stacked", stacked),
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


@dataclass
class RunEvaluation:
    """What `evaluate_run` fitted and measured; `noshow.training.final_eval` saves the parts."""

    report: dict[str, Any]  # eval.json
    calibrator: Calibrator  # save with the adapter: calibrator.save(adapter_dir)
    hybrid: Hybrid | None  # likewise hybrid.save(adapter_dir); None without tabular columns
    baseline: TunedBaseline | None
    scores: pd.DataFrame  # one row per validation/test row scored: every model's P
    notes: list[str] = field(default_factory=list)
    stacked: Stacked | None = None  # likewise stacked.save(adapter_dir)


def _scored_rows(frame: pd.DataFrame, p: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    if "no_show" not in frame.columns:
        raise ValueError(f"the {what} rows have no no_show column to evaluate against.")
    y, q = check_scores(frame["no_show"].to_numpy(), p)
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
    fit the hybrid and the stacked model on validation, then build the report on test, and
    recalibrate each test day from the days before it (`noshow.evaluation.recalibration`).

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

    tuned = hybrid = stacked = None
    baseline = untuned = blend = stack = None
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
        try:  # the tuned model with the adapter's score as one more input, cross-fitted
            t0 = time.perf_counter()
            stacked, stack = stack_run(
                validation,
                test,
                y_val,
                {ADAPTER: (c_val, c_test)},
                baseline,
                baseline_params=tuned.params if tuned is not None else None,
                seed=seed,
            )
            timings["stacked_s"] = time.perf_counter() - t0
        except StackingError as e:
            notes.append(f"stacked model unavailable: {e}")

    t0 = time.perf_counter()
    report = build_report(
        y_val,
        p_val,
        y_test,
        p_test,
        baseline=baseline,
        untuned_baseline=untuned,
        hybrid=blend,
        stacked=stack,
        calibrator=calibrator,
        groups=_patients(test),
        interval_method=interval_method,
        seed=seed,
    )
    timings["report_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    recalibrated = {"model": (p_val, p_test, calibrator)}
    recalibrated.update(
        {k: (*pair, None) for k, pair in (("hybrid", blend), ("stacked", stack)) if pair}
    )
    report["recalibration"], rolling, note = recalibrate_run(
        validation, test, recalibrated, groups=_patients(test), seed=seed
    )
    if note:
        notes.append(note)
    timings["recalibration_s"] = time.perf_counter() - t0
    # net benefit, capacity and subgroups on the same test rows (noshow.evaluation.clinical)
    acted_on = {"model": c_test}
    for key, pair in (("hybrid", blend), ("stacked", stack), ("baseline", baseline)):
        if pair is not None:
            acted_on[key] = pair[1]
    sections = clinical_report(
        test,
        y_test,
        acted_on,
        {k: report[k]["threshold"] for k in acted_on},
        groups=_patients(test),
        names=REPORT_NAMES,
    )
    timings["clinical_s"] = sections.pop("seconds")
    report.update(sections)
    timings["total_s"] = time.perf_counter() - started
    report["baseline_tuning"] = tuned.to_dict() if tuned is not None else None
    report["hybrid_model"] = hybrid.to_dict() if hybrid is not None else None
    report["stacked_model"] = stacked.summary() if stacked is not None else None
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
        ("p_stacked", stack),
    ):
        if pair is not None:
            scores[column] = np.concatenate(pair)
    if "model" in rolling:  # test rows only: validation days are what it starts from
        scores["p_no_show_rolling"] = np.r_[np.full(len(y_val), np.nan), rolling["model"]]
    return RunEvaluation(
        report=report,
        calibrator=calibrator,
        hybrid=hybrid,
        baseline=tuned,
        scores=scores,
        notes=notes,
        stacked=stacked,
    )
