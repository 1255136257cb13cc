"""Batch evaluation on the Compare tab: the rows to evaluate (the test split, stratified down
to a cap, or the clinicians' gold set), every model's scores on them (the adapters as the
scheduler's background work, in chunks behind interactive Compares, with progress and an
ETA; then the tabular baseline and each adapter's hybrid), and the report: metrics with a
95% interval on every ROC-AUC and each model's difference to the baseline, the rows where
the models disagree most, ROC / calibration / confusion plots, a progress panel, and the
predictions as a CSV safe to open in a spreadsheet.

Nothing here imports Gradio, so tests call these directly:

    from noshow.app.compare_batch import batch_compare, batch_figures, select_eval_rows
    rows, notes = select_eval_rows(entry.frame, 200)
    result = batch_compare(rows, gen_path, clf_path, baseline, source=service)
    figures = batch_figures(result)
"""

from __future__ import annotations

import csv
import html
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from noshow.app.common import export_folder, format_duration
from noshow.app.compare_baseline import Baseline, TunedBaselines, score_hybrids
from noshow.app.compare_cards import label_text
from noshow.app.compare_clinical import batch_clinical, tuned_tabular
from noshow.app.compare_input import CompareInputError
from noshow.app.compare_slots import (
    BASELINE,
    CLASSIFIER,
    GENERATIVE,
    SLOT_TITLES,
    TUNED_BASELINE,
    Loader,
    as_service,
    hybrid_key,
    load_slot,
    model_name,
)
from noshow.app.compare_stacked import StackedSource, add_stacked_scores

# Both adapters score a few rows a second on a 2-core CPU (BENCHMARKS.md, "CPU inference"):
# the CPU default is a batch worth waiting for; a GPU takes the 1,000-row default in seconds.
DEFAULT_BATCH_ROWS = 1000
DEFAULT_BATCH_ROWS_CPU = 200
DISAGREEMENT_ROWS = 20
BATCH_ROWS_INFO = "A stratified sample when the split is larger."


# ----------------------------------------------------------------------------- speed


def batch_speed_note(
    seconds_per_statement: Mapping[str, float | None],
    last_batch: tuple[int, float] | None = None,
) -> str:
    """The rows slider's line on speed, from what this machine measured: the last batch of
    these adapters (rows, seconds end to end) when there was one, else the scheduler's model
    time per statement of each adapter (a lower bound: a batch also waits behind Compares
    and fits the baselines), else a word that it is not measured yet. Never a constant: a
    promise of "5 rows a second" met 0.3 on a loaded 2-core machine."""
    if last_batch and last_batch[0] > 0 and last_batch[1] > 0:
        rows, seconds = last_batch
        rate = rows / seconds
        basis = f"the last batch here: {rows:,} rows in {format_duration(seconds)}"
    else:
        per = [s for s in seconds_per_statement.values() if s]
        if not per or len(per) < len(seconds_per_statement):
            return (
                f"{BATCH_ROWS_INFO} Speed on this machine: measured once both adapters have "
                "scored here."
            )
        rate = 1 / sum(per)
        basis = "their model time here; a batch also waits behind Compares, so it is slower"
    return f"{BATCH_ROWS_INFO} On this machine: about {rate:.2g} rows a second ({basis})."


# ----------------------------------------------------------------------------- scoring


@dataclass
class BatchResult:
    """What a batch comparison produced: per-row predictions, metrics and figures."""

    predictions: pd.DataFrame
    metrics: pd.DataFrame
    per_model: dict[str, dict[str, Any]]
    disagreements: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    auc: dict[str, Any] | None = None  # noshow.evaluation.intervals.compare_auc's answer
    raw: dict[str, np.ndarray] = field(default_factory=dict)  # adapters' P before calibration
    clinical: Any = None  # noshow.app.compare_clinical.BatchClinical: net benefit, capacity, ...
    timings: dict[str, float] = field(default_factory=dict)  # scores_ready_at (epoch s), report_s


def select_eval_rows(
    frame: pd.DataFrame,
    max_rows: int = DEFAULT_BATCH_ROWS,
    *,
    gold: Mapping[int, int] | None = None,
    seed: int = 0,
) -> tuple[pd.DataFrame, list[str]]:
    """The rows to evaluate on and notes about them.

    Without `gold`: the test split, stratified down to `max_rows`. With `gold` ({record_id:
    label} from the label store): every clinician-labelled record in the loaded data, its label
    replaced by the clinicians' consensus.
    """
    notes: list[str] = []
    max_rows = int(max_rows)
    if max_rows < 1:
        raise CompareInputError("Rows to evaluate must be at least 1.")
    if gold is not None:
        ids = {int(k): int(v) for k, v in gold.items()}
        rows = frame[frame["record_id"].isin(list(ids))].copy()
        if rows.empty:
            raise CompareInputError(
                f"None of the {len(ids):,} clinician-labelled records are in the loaded data "
                "set: label some in the Label tab (or load the data set they came from)."
            )
        changed = int((rows["record_id"].map(ids) != rows["no_show"]).sum())
        rows["no_show"] = rows["record_id"].map(ids).astype(int)
        notes.append(
            f"Gold set: {len(rows):,} clinician-labelled records (consensus labels; {changed:,} "
            "differ from the data set's label)."
        )
        if "split" in rows.columns:
            seen = int((rows["split"] != "test").sum())
            if seen:
                notes.append(
                    f"{seen:,} of them are outside the test split: adapters trained on this data "
                    "(and the baseline) may have seen them, so scores can be optimistic."
                )
    else:
        if "split" not in frame.columns:
            raise CompareInputError("The loaded data has no split: reload it in the Data tab.")
        rows = frame[frame["split"] == "test"]
        if rows.empty:
            raise CompareInputError("The test split is empty: load more data or another split.")
        notes.append(f"Test split: {len(rows):,} rows.")
    if len(rows) > max_rows:
        if rows["no_show"].nunique() == 2:
            frac = max_rows / len(rows)
            rows = rows.groupby("no_show", group_keys=False).sample(frac=frac, random_state=seed)
        else:
            rows = rows.sample(n=max_rows, random_state=seed)
        rows = rows.sort_index().head(max_rows)  # rounding per class may add one row
        notes.append(f"Evaluated a stratified sample of {len(rows):,} rows (the row cap).")
    return rows.sort_index().reset_index(drop=True), notes


@dataclass
class BatchProgress:
    """Where a batch comparison is: rows scored over all adapters, and the time left."""

    done: int
    total: int
    phase: str
    eta_s: float | None = None


def batch_compare(
    rows: pd.DataFrame,
    generative_path: Any,
    classifier_path: Any,
    baseline: Baseline | Callable[[], Baseline] | None = None,
    *,
    tuned_baselines: TunedBaselines | None = None,
    stacked_models: StackedSource | None = None,
    loader: Loader | None = None,
    source: Any = None,
    owner: str = "",
    on_progress: Callable[[BatchProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> BatchResult:
    """Score `rows` (from `select_eval_rows`) with each available model and compare them.

    The adapters score as the scheduler's background work (chunks of about a quarter second,
    the first one row, so progress and an ETA show from the first row; Compares go
    first). `baseline` may be a function that returns it: it is called after the adapters,
    so a baseline still being fitted does not hold up their progress. `should_stop()` is
    checked between chunks (raises noshow.inference.serving.Cancelled). Each adapter with a hybrid.json
    adds its hybrid (`score_hybrids`, the tuned baseline from `tuned_baselines`) and the
    stacked models `stacked_models` offers (`noshow.app.compare_stacked`); every ROC-AUC
    gets a 95% interval and each model's difference to the baseline (`compare_auc`). A model
    that cannot be loaded is left out with a note; raises CompareInputError when no model at
    all can score.
    """
    labels = rows["no_show"].astype(int).to_numpy()
    statements = rows["statement"].astype(str).tolist()
    n = len(statements)
    service = as_service(source if source is not None else loader)
    report = on_progress or (lambda progress: None)
    scores: dict[str, np.ndarray] = {}
    thresholds: dict[str, float] = {}
    names: dict[str, str] = {}
    notes: list[str] = []
    loaded: dict[str, Any] = {}
    for approach, path in ((GENERATIVE, generative_path), (CLASSIFIER, classifier_path)):
        report(BatchProgress(0, n * 2, f"Loading the {approach} adapter"))
        predictor, error = load_slot(path, approach, service)
        if predictor is None:
            notes.append(f"{SLOT_TITLES[approach]} left out: {error}")
            continue
        loaded[approach] = predictor.predictor  # the scheduler takes the plain predictor
    total = n * len(loaded)
    sched = service.scheduler
    order = list(loaded)
    for k, approach in enumerate(order):
        predictor = loaded[approach]
        started = time.perf_counter()
        before = k * n
        report(
            BatchProgress(before, total, f"Scoring with the {approach} adapter (0 of {n:,} rows)")
        )

        def on_chunk(
            done: int, _n: int, approach=approach, predictor=predictor, k=k, started=started
        ) -> None:
            per_row = (time.perf_counter() - started) / max(done, 1)  # wall time, waits included
            eta = (n - done) * per_row
            for later in order[k + 1 :]:
                mine = sched.seconds_per_statement(predictor)
                theirs = sched.seconds_per_statement(loaded[later])
                eta += n * per_row * (theirs / mine if mine and theirs else 1.0)
            phase = f"Scoring with the {approach} adapter ({done:,} of {n:,} rows)"
            report(BatchProgress(k * n + done, total, phase, eta))

        p = sched.score_background(
            predictor, statements, owner, on_chunk=on_chunk, should_stop=should_stop
        )
        scores[approach] = np.asarray(p, dtype=float)
        thresholds[approach] = float(getattr(predictor, "threshold", 0.5))
        names[approach] = str(getattr(predictor, "name", "") or "")
    if should_stop is not None and should_stop():  # Stop during the last chunk: no fits
        from noshow.inference.serving import Cancelled

        raise Cancelled("the batch comparison was stopped")
    if callable(baseline) and not isinstance(baseline, Baseline):
        report(BatchProgress(total, total, "Waiting for the tabular baseline fit", None))
        baseline = baseline()
    if baseline is not None and baseline.model is not None:
        try:
            scores[BASELINE] = np.asarray(baseline.predict(rows), dtype=float)
            thresholds[BASELINE] = baseline.threshold
            names[BASELINE] = f"fitted on {baseline.train_rows:,} train rows"
        except Exception as e:  # noqa: BLE001 - text-only rows: report, keep the adapters
            notes.append(f"Tabular baseline left out: {e}")
    elif baseline is not None and baseline.error:
        notes.append(f"Tabular baseline left out: {baseline.error}")
    adapters = {a: loaded[a] for a in loaded if a in scores}
    if tuned_baselines is not None and any(getattr(p, "hybrid", None) for p in adapters.values()):
        report(BatchProgress(total, total, "Blending each adapter with the tuned baseline", None))
        adapter_p = {a: scores[a].tolist() for a in adapters}
        for approach, slots in score_hybrids(adapters, adapter_p, rows, tuned_baselines).items():
            if slots and slots[0]["p"] is not None:
                key = hybrid_key(approach)
                scores[key] = np.array([slot["p"] for slot in slots], dtype=float)
                thresholds[key] = float(slots[0]["threshold"])
                names[key] = "adapter and tuned tabular P, blended"
            elif slots:
                notes.append(f"Hybrid of the {approach} adapter left out: {slots[0]['error']}")
        tuned = tuned_tabular(adapters, rows, tuned_baselines)  # what the hybrids blend
        if tuned is not None:
            scores[TUNED_BASELINE], thresholds[TUNED_BASELINE] = tuned
            names[TUNED_BASELINE] = "gradient boosting with the settings its run tuned"
    stacked_pairs = add_stacked_scores(adapters, scores, thresholds, notes, rows, stacked_models)
    ready = time.time()
    raw = {}
    for approach, predictor in adapters.items():
        calibrator = getattr(predictor, "calibrator", None)
        if calibrator is not None and calibrator.method != "identity":
            raw[approach] = calibrator.invert(scores[approach])
    if not scores:
        raise CompareInputError("Nothing could score these rows. " + " ".join(notes))
    report(BatchProgress(total, total, "Computing metrics and intervals", 0.0))
    from noshow.evaluation.intervals import compare_auc
    from noshow.evaluation.metrics import compute_metrics

    per_model = {key: compute_metrics(labels, p, thresholds[key]) for key, p in scores.items()}
    pairs = [(k, BASELINE) for k in scores if k != BASELINE and BASELINE in scores]
    pairs += [(hybrid_key(a), a) for a in adapters if hybrid_key(a) in scores] + stacked_pairs
    groups = rows["patient_id"].to_numpy() if "patient_id" in rows.columns else None
    try:
        auc = compare_auc(
            labels, scores, pairs, groups=groups, names={k: model_name(k) for k in scores}
        )
    except ValueError as e:  # e.g. too few rows for an interval
        auc = None
        notes.append(f"No intervals: {e}")
    predictions = pd.DataFrame({"record_id": rows["record_id"].to_numpy()})
    if "split" in rows.columns:
        predictions["split"] = rows["split"].astype(str).to_numpy()
    predictions["label"] = labels
    for key, p in scores.items():
        predictions[f"p_{key}"] = p
        predictions[f"pred_{key}"] = (p >= thresholds[key]).astype(int)
    predictions["statement"] = statements
    for approach, p in raw.items():
        predictions[f"p_{approach}_uncalibrated"] = p
    result = BatchResult(
        predictions=predictions,
        metrics=metrics_table(per_model, names, auc),
        per_model=per_model,
        disagreements=disagreement_table(predictions),
        notes=notes,
        auc=auc,
        raw=raw,
    )
    try:  # net benefit, capacity and subgroups on the same rows (noshow.app.compare_clinical)
        result.clinical = batch_clinical(result, rows)
    except ValueError as e:
        notes.append(f"No net benefit, capacity or subgroups: {e}")
    result.timings = {"scores_ready_at": ready, "report_s": time.time() - ready}
    return result


# ----------------------------------------------------------------------------- report


def progress_html(progress: Mapping[str, Any]) -> str:
    """A batch job's progress (a `BackgroundJob.snapshot()` or its fields): a bar, scores
    done (rows x adapters), time so far and the estimate of the time left."""
    done, total = int(progress.get("done") or 0), int(progress.get("total") or 0)
    fraction = done / total if total else 0.0
    eta = progress.get("eta_s")
    left = f", about {format_duration(eta)} left" if eta is not None and done else ""
    rows = f"{done:,} of {total:,} scores" if total else "starting"
    elapsed = format_duration(progress.get("elapsed_s"))
    phase = html.escape(str(progress.get("phase") or ""))
    bar = (
        '<div style="height:10px;border-radius:5px;background:#e8ecf1;overflow:hidden;">'
        f'<div style="width:{fraction * 100:.1f}%;height:100%;background:#2e86c1;"></div></div>'
    )
    return (
        f'<div class="noshow-msg-info noshow-batch-progress" data-done="{done}" '
        f'data-total="{total}">{bar}<div>{phase}: {rows} ({fraction:.0%}), '
        f"{elapsed} so far{left}. Closing the page or pressing Stop ends it.</div></div>"
    )


def _round(value: Any) -> Any:
    return None if value is None else round(float(value), 4)


def interval_text(estimate: Mapping[str, Any] | None) -> str:
    """ "0.702-0.741" from a compare_auc estimate; "" without bounds."""
    if not estimate or estimate.get("low") is None or estimate.get("high") is None:
        return ""
    return f"{float(estimate['low']):.3f}-{float(estimate['high']):.3f}"


def metrics_table(
    per_model: Mapping[str, Mapping[str, Any]],
    names: Mapping[str, str] | None = None,
    auc: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """One row per model: ROC-AUC with its 95% interval (from `auc`, a compare_auc result),
    PR-AUC, F1, sensitivity, specificity, Brier, threshold."""
    intervals = (auc or {}).get("auc") or {}
    rows = []
    for key, m in per_model.items():
        rows.append(
            {
                "model": model_name(key),
                "name": (names or {}).get(key, ""),
                "rows": int(m["n"]),
                "ROC-AUC": _round(m["roc_auc"]),
                "ROC-AUC 95% CI": interval_text(intervals.get(key)),
                "PR-AUC": _round(m["pr_auc"]),
                "F1": _round(m["f1"]),
                "sensitivity": _round(m["sensitivity"]),
                "specificity": _round(m["specificity"]),
                "Brier": _round(m["brier"]),
                "threshold": _round(m["threshold"]),
            }
        )
    return pd.DataFrame(rows)


def disagreement_table(predictions: pd.DataFrame, limit: int = DISAGREEMENT_ROWS) -> pd.DataFrame:
    """The statements where two models' P differ most (the two adapters when both scored)."""
    keys = [k for k in (GENERATIVE, CLASSIFIER, BASELINE) if f"p_{k}" in predictions.columns]
    columns = ["record_id", "label", "p_a", "p_b", "gap", "statement"]
    if len(keys) < 2:
        return pd.DataFrame(columns=columns)
    a, b = keys[0], keys[1]
    gap = (predictions[f"p_{a}"] - predictions[f"p_{b}"]).abs()
    top = predictions.assign(gap=gap).sort_values("gap", ascending=False, kind="stable").head(limit)
    table = pd.DataFrame(
        {
            "record_id": top["record_id"].to_numpy(),
            "label": top["label"].map(label_text).to_numpy(),
            f"P {model_name(a)}": top[f"p_{a}"].round(3).to_numpy(),
            f"P {model_name(b)}": top[f"p_{b}"].round(3).to_numpy(),
            "gap": top["gap"].round(3).to_numpy(),
            "statement": top["statement"].to_numpy(),
        }
    )
    return table


def batch_figures(result: BatchResult) -> dict[str, Any]:
    """ROC curves (each AUC with its interval), the calibration plot (the adapters' P before
    and after their calibration when they carry one; else observed vs predicted for every
    model) and the confusion matrices."""
    from noshow.evaluation.calibration import plot_reliability
    from noshow.evaluation.plots import plot_calibration, plot_confusion, plot_roc

    preds = result.predictions
    labels = preds["label"].to_numpy()
    curves = {model_name(key): (labels, preds[f"p_{key}"].to_numpy()) for key in result.per_model}
    intervals = {
        model_name(key): estimate for key, estimate in ((result.auc or {}).get("auc") or {}).items()
    }
    if result.raw:
        calibration = plot_reliability(
            {
                model_name(a): (labels, raw, preds[f"p_{a}"].to_numpy())
                for a, raw in result.raw.items()
            },
            split="these rows",
            stacked=True,  # a half-width slot beside the ROC curves
        )
    else:
        calibration = plot_calibration(curves)
    return {
        "roc": plot_roc(curves, intervals=intervals or None),
        "calibration": calibration,
        "confusion": plot_confusion({model_name(k): m for k, m in result.per_model.items()}),
    }


def write_predictions_csv(predictions: pd.DataFrame, folder: str | Path | None = None) -> Path:
    """Write the predictions to a new CSV for download, atomically; text cells that a
    spreadsheet would run as a formula get a leading apostrophe."""
    from noshow.system.files import escape_spreadsheet_cell

    folder = Path(folder) if folder is not None else export_folder()
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    fd, tmp_name = tempfile.mkstemp(
        prefix=f"compare-predictions-{stamp}-", suffix=".csv.tmp", dir=folder
    )
    final = Path(tmp_name[: -len(".tmp")])
    text_columns = [
        c for c in predictions.columns if not pd.api.types.is_numeric_dtype(predictions[c])
    ]
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow([escape_spreadsheet_cell(str(c)) for c in predictions.columns])
            for record in predictions.itertuples(index=False):
                cells = []
                for column, value in zip(predictions.columns, record, strict=True):
                    if column in text_columns:
                        cells.append(escape_spreadsheet_cell("" if pd.isna(value) else str(value)))
                    elif isinstance(value, float | np.floating):
                        cells.append(f"{float(value):.6g}")
                    else:
                        cells.append(str(value))
                writer.writerow(cells)
        os.replace(tmp_name, final)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return final


def batch_summary(result: BatchResult) -> str:
    """Markdown: the notes and a one-line verdict per model."""
    lines = [f"- {note}" for note in result.notes]
    intervals = (result.auc or {}).get("auc") or {}
    for key, m in result.per_model.items():
        auc = "n/a" if m["roc_auc"] is None else f"{m['roc_auc']:.3f}"
        span = interval_text(intervals.get(key))
        span = f" (95% CI {span})" if span else ""
        lines.append(f"- **{model_name(key)}**: ROC-AUC {auc}{span} on {m['n']:,} rows.")
    for difference in (result.auc or {}).get("differences") or []:
        if difference.get("text"):
            lines.append(f"- {difference['text']}")
    if result.raw:
        lines.append(
            "- The adapters' P are calibrated (fitted on their validation split); the "
            "calibration plot shows them before and after."
        )
    return "\n".join(lines)
