"""The tabular baseline and the hybrids on the Compare tab. The baseline (gradient boosting on
an appointment's facts) is fitted on the loaded data's train split, its threshold on the
validation split, once per data set in a background thread (`BaselineCache`), and scores a
row into its slot when the row's facts are known. A hybrid (an adapter's hybrid.json) blends
that adapter's calibrated P with the tuned baseline its run reported, refitted here from
the stored settings. Also the data set's base rate, which the cards quote.

Nothing here imports Gradio:

    from noshow.app.compare_baseline import BaselineCache, score_baseline
    cache = BaselineCache()
    baseline = cache.get(entry, timeout=3.0)   # a Baseline whose `error` says why, if none
    slot = score_baseline(baseline, row)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from noshow.app.background_fits import BackgroundFits
from noshow.app.compare_slots import BASELINE, HYBRID

BASELINE_THRESHOLD_SOURCE = "chosen on the loaded data's validation split, where F1 peaked"
NO_FACTS_FOR_HYBRID = "No hybrid: it needs the appointment's facts, as the baseline does."


# ----------------------------------------------------------------------------- baseline


@dataclass
class Baseline:
    """A tabular baseline fitted on one data set's train split, or why there is none."""

    model: Any = None
    threshold: float = 0.5
    error: str | None = None
    train_rows: int = 0

    def predict(self, rows: pd.DataFrame) -> np.ndarray | None:
        if self.model is None:
            return None
        from noshow.evaluation.baseline import baseline_predict

        return baseline_predict(self.model, rows)


TunedBaselines = Callable[[Mapping[str, Any]], Baseline]  # params -> the tuned baseline


def fit_baseline(
    frame: pd.DataFrame, seed: int = 0, params: Mapping[str, Any] | None = None
) -> Baseline:
    """Fit the baseline on the train split; its threshold is the max-F1 one on validation.
    With `params` (a hybrid's `baseline_params`): the tuned baseline a run reported, refitted
    with its stored settings (one fit, no grid)."""
    from noshow.evaluation.baseline import (
        baseline_predict,
        fit_tabular_baseline,
        refit_tuned_baseline,
    )
    from noshow.evaluation.metrics import choose_threshold

    if "split" not in frame.columns:
        return Baseline(error="the data has no split column, so the baseline has no train rows.")
    train_rows = frame[frame["split"] == "train"]
    try:
        if params:
            model = refit_tuned_baseline(train_rows, dict(params), seed=seed)
        else:
            model = fit_tabular_baseline(train_rows, seed=seed)
    except ValueError as e:  # BaselineError: text-only files, one class, ...
        return Baseline(error=f"tabular baseline unavailable: {e}")
    val = frame[frame["split"] == "validation"]
    threshold = 0.5
    if len(val) and val["no_show"].nunique() == 2:
        threshold = choose_threshold(val["no_show"].to_numpy(), baseline_predict(model, val))
    return Baseline(model=model, threshold=float(threshold), train_rows=len(train_rows))


class BaselineCache:
    """One fitted baseline per loaded data set (keyed by the data cache key), fitted once in
    a background thread so a slow fit (the full Kaggle file's) never blocks more than the
    caller's `timeout`; each hybrid's tuned baseline is kept beside it (`tuned`)."""

    def __init__(self, max_entries: int = 4) -> None:
        self._fits: BackgroundFits[Baseline] = BackgroundFits(
            "noshow-baseline",
            busy=lambda: Baseline(
                error="the tabular baseline is still being fitted on this data set's train "
                "split (about half a minute on the full Kaggle file); its score appears on a "
                "later Compare."
            ),
            failed=lambda e: Baseline(error=f"tabular baseline unavailable: {e}"),
            max_entries=max_entries,
        )

    def get(
        self,
        entry: Any,
        timeout: float | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Baseline:
        """The baseline for a `DataEntry` (key + frame), fitting it on first use; with
        `params`, the tuned one with those settings (`fit_baseline`), kept apart.

        Waits at most `timeout` seconds (None = until fitted); if the fit is still running
        then, returns a Baseline whose `error` says so (the fit carries on).
        """
        key = str(entry.key)
        if params:
            key += "|tuned:" + json.dumps(dict(params), sort_keys=True, default=str)
        frame = entry.frame
        return self._fits.get(key, lambda: fit_baseline(frame, params=params), timeout)

    def tuned(self, entry: Any, timeout: float | None = None) -> TunedBaselines:
        """What `score_hybrids` asks for the tuned baseline a hybrid blends: `get(entry,
        timeout, params)` for the hybrid's `baseline_params`, a failure turned into a
        Baseline whose `error` the hybrid's card shows."""

        def tuned_baseline(params: Mapping[str, Any]) -> Baseline:
            try:
                return self.get(entry, timeout=timeout, params=params)
            except Exception as e:  # noqa: BLE001 - the hybrid card says why
                from noshow.app.common import user_message

                return Baseline(error=f"tuned tabular baseline unavailable: {user_message(e)}")

        return tuned_baseline


def score_baseline(
    baseline: Baseline | None, row: Mapping[str, Any] | None, reason: str | None = None
) -> dict[str, Any]:
    """The baseline's P for one row (form, data set row or a parsed statement); without a
    row, `reason` (why the facts could not be read) becomes the slot's error."""
    return score_baseline_rows(baseline, [row], reason)[0]


def score_baseline_rows(
    baseline: Baseline | None,
    rows: Sequence[Mapping[str, Any] | None],
    reason: str | None = None,
) -> list[dict[str, Any]]:
    """`score_baseline` for several rows in one call (a what-if scores two)."""
    slots: list[dict[str, Any]] = []
    for row in rows:
        out: dict[str, Any] = {"approach": BASELINE, "name": "tabular baseline", "p": None}
        if row is None:
            out["error"] = reason or (
                "The baseline needs the appointment's facts: use a record id, the form or a "
                "statement written like the examples."
            )
        elif baseline is None or baseline.model is None:
            out["error"] = (baseline.error if baseline else None) or "No baseline for this data."
        slots.append(out)
    todo = [i for i, slot in enumerate(slots) if "error" not in slot]
    if not todo:
        return slots
    start = time.perf_counter()
    try:
        ps = baseline.predict(pd.DataFrame([dict(rows[i]) for i in todo]))
    except Exception as e:  # noqa: BLE001 - e.g. a Statement/NoShow row without features
        for i in todo:
            slots[i]["error"] = f"tabular baseline unavailable: {e}"
        return slots
    ms = (time.perf_counter() - start) * 1000
    for i, p in zip(todo, ps, strict=True):
        slots[i].update(
            name=f"gradient boosting, {baseline.train_rows:,} train rows",
            p=float(p),
            threshold=baseline.threshold,
            threshold_source=BASELINE_THRESHOLD_SOURCE,
            label=int(p >= baseline.threshold),
            latency_ms=ms,
            error=None,
        )
    return slots


def score_baseline_rows_on_cpu_thread(
    baseline: Baseline | None,
    rows: Sequence[Mapping[str, Any] | None],
    reason: str | None = None,
) -> list[dict[str, Any]]:
    """`score_baseline_rows` on the CPU inference thread, in turn with the adapters' forwards:
    beside a forward (in the caller's thread) it would preempt one of the forward's OpenMP
    threads, and the whole team waits, so both would take longer (BENCHMARKS.md, "The app
    under load and in the browser")."""
    if baseline is None or baseline.model is None or all(row is None for row in rows):
        return score_baseline_rows(baseline, rows, reason)  # nothing to compute
    from noshow.inference.cpu.thread import run_on_cpu_thread

    return run_on_cpu_thread(score_baseline_rows, baseline, rows, reason)


# ----------------------------------------------------------------------------- hybrids


def blend_text(hybrid: Any) -> str:
    """How a hybrid mixes its two inputs, in words."""
    return (
        f"Blends the adapter's P with a tuned tabular model's P: weights "
        f"{hybrid.w_adapter:.2f} (adapter) and {hybrid.w_baseline:.2f} (tabular), fitted on "
        f"{int(hybrid.rows):,} validation appointments."
    )


def score_hybrids(
    predictors: Mapping[str, Any],
    adapter_p: Mapping[str, Sequence[float | None]],
    rows: Sequence[Mapping[str, Any] | None] | pd.DataFrame,
    tuned_baselines: TunedBaselines | None,
    why_no_facts: str | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """{approach: [hybrid slot per row]} for each adapter that carries a hybrid.json
    (`noshow.evaluation.hybrid`): its calibrated P blended with the tuned baseline's P for the row.

    The tuned baseline is the one the adapter's run reported, refitted from the hybrid's
    `baseline_params` by `tuned_baselines(params)`; without the row's facts (free text that
    could not be read back), the slot says so, and `why_no_facts` (which facts were not
    read) when given."""
    table = rows if isinstance(rows, pd.DataFrame) else None
    n = len(rows)
    out: dict[str, list[dict[str, Any]]] = {}
    # Adapters trained on one data set share the tuned baseline: predict its rows once.
    predicted: dict[tuple[int, tuple[int, ...]], np.ndarray] = {}
    for approach, predictor in predictors.items():
        hybrid = getattr(predictor, "hybrid", None)
        if hybrid is None:
            continue
        slots = [
            {"approach": HYBRID, "name": f"{approach} adapter + tuned tabular", "p": None}
            for _ in range(n)
        ]
        out[approach] = slots
        todo = []
        for i in range(n):
            if adapter_p[approach][i] is None:
                slots[i]["error"] = "the hybrid needs the adapter's score."
            elif table is None and rows[i] is None:
                why = f" ({why_no_facts})." if why_no_facts else "."
                slots[i]["error"] = NO_FACTS_FOR_HYBRID.removesuffix(".") + why
            else:
                todo.append(i)
        if not todo:
            continue
        baseline, error = None, None
        if not hybrid.baseline_params:
            error = (
                "this adapter's hybrid.json does not name its tabular model's settings (it "
                "was made before noshow stored them): evaluate or train the adapter again."
            )
        else:
            baseline = tuned_baselines(hybrid.baseline_params) if tuned_baselines else None
            if baseline is None or baseline.model is None:
                error = (baseline.error if baseline else None) or "no tuned baseline here."
        if error is not None:
            for i in todo:
                slots[i]["error"] = error
            continue
        frame = (
            table.iloc[todo] if table is not None else pd.DataFrame([dict(rows[i]) for i in todo])
        )
        try:
            key = (id(baseline), tuple(todo))
            if key not in predicted:
                predicted[key] = baseline.predict(frame)
            p_base = predicted[key]
            p = hybrid.predict([adapter_p[approach][i] for i in todo], p_base)
        except Exception as e:  # noqa: BLE001 - e.g. rows without tabular columns
            for i in todo:
                slots[i]["error"] = f"hybrid unavailable: {e}"
            continue
        threshold = float(hybrid.threshold if hybrid.threshold is not None else 0.5)
        where = "chosen on the adapter's validation split, where the hybrid's F1 peaked"
        fill_slots(slots, todo, p, threshold, where, blend_text(hybrid))
    return out


def fill_slots(
    slots: list[dict[str, Any]],
    todo: Sequence[int],
    values: Sequence[float],
    threshold: float,
    threshold_source: str,
    blend: str,
) -> None:
    """Scores of a model that combines others (hybrid, stacked) into the slots `todo`: P, the
    label at `threshold`, where that came from, and the line saying what was combined."""
    for i, value in zip(todo, values, strict=True):
        slots[i].update(
            p=float(value),
            threshold=threshold,
            threshold_source=threshold_source,
            label=int(value >= threshold),
            blend=blend,
            error=None,
        )


# ----------------------------------------------------------------------------- data


def base_rate(frame: pd.DataFrame) -> float | None:
    """The share of no-shows in the data's train split (all rows without a split)."""
    if "no_show" not in frame.columns or frame.empty:
        return None
    rows = frame[frame["split"] == "train"] if "split" in frame.columns else frame
    if rows.empty:
        rows = frame
    return float(pd.to_numeric(rows["no_show"], errors="coerce").mean())
