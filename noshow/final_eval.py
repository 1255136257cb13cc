"""The end of a run: score the validation and test rows, choose the threshold on
validation, fit the tabular baseline on the same training rows, then write eval.json, the
predictions and the adapter (staged, renamed only when complete).

    from noshow.final_eval import evaluate_and_save
    report = evaluate_and_save(session, splits, val_enc, test_enc, bound.score, save, loop)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from noshow import runs
from noshow.batching import Encoded
from noshow.loop import LoopState
from noshow.session import TrainingSession
from noshow.splits import Splits


def evaluate_and_save(
    session: TrainingSession,
    splits: Splits,
    val_encoded: Encoded,
    test_encoded: Encoded,
    score_fn: Callable[[Encoded], np.ndarray],
    save_adapter: Callable[[Path, float], None],
    loop: LoopState,
) -> dict[str, Any]:
    """Score validation and test, pick the threshold on validation, compare with the tabular
    baseline fitted on the same rows, then write eval.json, predictions and the adapter."""
    from noshow.evaluate import (
        BaselineError,
        baseline_predict,
        build_report,
        fit_tabular_baseline,
    )

    session.check_stop()
    session.emit(phase="evaluating", message="Scoring validation and test rows")
    t0 = time.time()
    p_val = session.score(score_fn, val_encoded, "validation")
    p_test = session.score(score_fn, test_encoded, "test")
    score_s = time.time() - t0
    if not session.is_writer:
        # The other ranks of a multi-process run only help score; they meet rank 0 at its
        # two cancel checks below (collectives: keep the counts equal when editing).
        session.check_stop()
        session.check_stop()
        return {}
    t_baseline = time.time()
    baseline = None
    baseline_note = None
    try:
        b_model = fit_tabular_baseline(splits.train, seed=session.config.data.seed)
        baseline = (
            baseline_predict(b_model, splits.validation),
            baseline_predict(b_model, splits.test),
        )
    except BaselineError as e:  # Statement/NoShow data has no tabular features
        baseline_note = f"tabular baseline unavailable: {e}"
        session.log(baseline_note)
    report = build_report(val_encoded.labels, p_val, test_encoded.labels, p_test, baseline=baseline)
    baseline_s = time.time() - t_baseline
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
    if baseline_note:
        report["baseline_note"] = baseline_note
    threshold = float(report["threshold"])
    session.check_stop()
    session.emit(phase="saving", message="Saving the adapter")
    staging = runs.adapter_staging_dir(session.run_dir)
    t_save = time.time()
    save_adapter(staging, threshold)
    save_s = time.time() - t_save
    preds = pd.DataFrame(
        {
            "record_id": np.concatenate([val_encoded.record_ids, test_encoded.record_ids]),
            "split": ["validation"] * len(p_val) + ["test"] * len(p_test),
            "label": np.concatenate([val_encoded.labels, test_encoded.labels]).astype(int),
            "p_no_show": np.concatenate([p_val, p_test]).astype(float),
        }
    )
    if baseline is not None:
        preds["p_baseline"] = np.concatenate(baseline).astype(float)
    runs.write_predictions(session.run_dir, preds)
    # where the end of the run went (the preflight extrapolates from these)
    report["timing"] = {
        "score_s": round(score_s, 2),
        "scored_rows": int(len(p_val) + len(p_test)),
        "baseline_s": round(baseline_s, 2),
        "save_s": round(save_s, 2),
    }
    runs.write_eval(session.run_dir, report)
    session.check_stop()
    session.adapter_dir = runs.finalize_adapter(session.run_dir)
    session.result_metrics = report
    m, b = report["model"], report.get("baseline")
    session.log(
        f"Test ROC-AUC {_fmt_auc(m.get('roc_auc'))} (tabular baseline "
        f"{_fmt_auc(b.get('roc_auc')) if b else 'n/a'}); adapter saved to {session.adapter_dir}"
    )
    return report


def _fmt_auc(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
