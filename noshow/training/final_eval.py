"""The end of a run: score the validation and test rows, choose the threshold on
validation, fit the tabular baseline on the same training rows, then write eval.json, the
predictions and the adapter (staged, renamed only when complete).

    from noshow.training.final_eval import evaluate_and_save
    report = evaluate_and_save(session, splits, val_enc, test_enc, bound.score, save, loop)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from noshow.modeling.batching import Encoded
from noshow.training import runs
from noshow.training.loop import LoopState
from noshow.training.run_splits import Splits
from noshow.training.session import TrainingSession


def evaluate_and_save(
    session: TrainingSession,
    splits: Splits,
    val_encoded: Encoded,
    test_encoded: Encoded,
    score_fn: Callable[[Encoded], np.ndarray],
    save_adapter: Callable[[Path, float], None],
    loop: LoopState,
) -> dict[str, Any]:
    """Score validation and test, then `noshow.evaluation.report.evaluate_run`: calibrate on
    validation (the threshold is chosen on calibrated scores), tune the tabular baseline on
    validation, fit the hybrid and the stacked model on validation, and report every model
    on test with 95% intervals and the test ECE recalibrated day by day. Writes eval.json,
    the predictions and the adapter with its calibration.json, hybrid.json and
    stacked.json."""
    from noshow.evaluation.report import evaluate_run

    session.check_stop()
    session.emit(phase="evaluating", message="Scoring validation and test rows")
    t0 = time.time()
    p_val = session.score(score_fn, val_encoded, "validation")
    t_test = time.time()
    p_test = session.score(score_fn, test_encoded, "test")
    score_s, test_score_s = time.time() - t0, time.time() - t_test
    if not session.is_writer:
        # The other ranks of a multi-process run only help score; they meet rank 0 at its
        # two cancel checks below (collectives: keep the counts equal when editing).
        session.check_stop()
        session.check_stop()
        return {}
    session.emit(
        phase="evaluating",
        message="Calibrating, tuning the tabular baseline and fitting the hybrid on validation",
    )
    t_baseline = time.time()
    run = evaluate_run(
        splits.train,
        splits.validation,
        splits.test,
        p_val,
        p_test,
        record_ids=(val_encoded.record_ids, test_encoded.record_ids),
        seed=session.config.data.seed,
    )
    baseline_s = time.time() - t_baseline
    report = run.report
    for note in run.notes:
        session.log(note)
    report.update(
        {
            "split": splits.split_method,
            "data_source": splits.source,
            "synthetic": splits.is_synthetic,
            "rows": {
                "train": len(splits.train),
                "validation": len(splits.validation),
                "test": len(splits.test),
            },
            "steps": loop.step,
            "samples_seen": loop.samples_seen,
            "scoring_rows_per_s": round((len(p_val) + len(p_test)) / max(score_s, 1e-6), 1),
            "elapsed_s": round(time.time() - session.started, 1),
        }
    )
    if run.notes:
        report["baseline_note"] = "; ".join(run.notes)
    threshold = float(run.calibrator.threshold)
    session.check_stop()
    session.emit(phase="saving", message="Saving the adapter")
    staging = runs.adapter_staging_dir(session.run_dir)
    t_save = time.time()
    save_adapter(staging, threshold)
    run.calibrator.save(staging)  # calibration.json: every P the adapter shows goes through it
    if run.hybrid is not None:
        run.hybrid.save(staging)  # hybrid.json: the adapter's P blended with the baseline's
    if run.stacked is not None:
        run.stacked.save(staging)  # stacked.json: the tuned baseline with the adapter's score
    save_s = time.time() - t_save
    runs.write_predictions(session.run_dir, run.scores)
    # where the end of the run went (the preflight extrapolates from these)
    report["timing"] = {
        "score_s": round(score_s, 2),
        "scored_rows": int(len(p_val) + len(p_test)),
        "test_score_s": round(test_score_s, 3),  # after validation warmed scoring up
        "test_rows": int(len(p_test)),
        "baseline_s": round(baseline_s, 2),
        "save_s": round(save_s, 2),
    }
    runs.write_eval(session.run_dir, report)
    session.check_stop()
    session.adapter_dir = runs.finalize_adapter(session.run_dir)
    session.result_metrics = report
    m, b = report["model"], report.get("baseline")
    session.log(
        f"Test ROC-AUC {_fmt_auc(m)} (tuned tabular baseline {_fmt_auc(b) if b else 'n/a'}); "
        f"adapter saved to {session.adapter_dir}"
    )
    return report


def _fmt_auc(metrics: dict[str, Any] | None) -> str:
    from noshow.evaluation.metrics import format_auc

    return "n/a" if not metrics or metrics.get("roc_auc") is None else format_auc(metrics)
