"""The stacked models on the Compare tab: each adapter's (its stacked.json: the tuned tabular
model with the adapter's score as one more input, `noshow.evaluation.stacking`) and both
adapters together. Neither ships fitted trees: each adapter's stacked.json holds its
settings and the adapter's logit per validation row, so the model is refitted here on the
loaded data's validation rows (with the tuned baseline its run reported, from the tab's
`BaselineCache`), once, in a background thread (`StackedCache`), as the hybrids' baseline is.
Both adapters together: fitted here from the two adapters' stored validation logits on the
rows they share, the number of trees chosen by cross-fitting as a run chooses it.

Nothing here imports Gradio:

    from noshow.app.compare_stacked import StackedCache, score_stacked
    cache = StackedCache(baselines)
    slots = score_stacked(predictors, {approach: [p, ...]}, rows, cache.source(entry, 3.0))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from noshow.app.background_fits import BackgroundFits
from noshow.app.compare_baseline import fill_slots
from noshow.app.compare_slots import (
    BOTH,
    CLASSIFIER,
    GENERATIVE,
    STACKED,
    hybrid_key,
    stacked_key,
)

MIN_SHARED_ROWS = 50  # validation rows both adapters stored, to stack them together
NO_FACTS_FOR_STACKED = "No stacked model: it needs the appointment's facts, as the baseline does."


def stacked_title(key: str) -> str:
    """A stacked card's title."""
    if key == BOTH:
        return "Stacked: both adapters + tabular"
    return f"Stacked: {key} + tabular"


@dataclass
class FittedStacked:
    """A stacked model fitted here with the tuned baseline it stacks, or why there is none."""

    model: Any = None  # noshow.evaluation.stacking.Stacked, fitted
    baseline: Any = None  # noshow.app.compare_baseline.Baseline, the tuned one
    error: str | None = None


StackedSource = Callable[[Mapping[str, Any]], dict[str, FittedStacked]]  # predictors -> models


def _fit_one(entry: Any, spec: Any, baselines: Any) -> FittedStacked:
    """An adapter's stacked model, refitted from its stacked.json on the loaded data."""
    from noshow.evaluation.stacking import StackingError

    if not spec.baseline_params:
        return FittedStacked(error="this adapter's stacked.json does not name its tabular model.")
    baseline = baselines.get(entry, timeout=None, params=spec.baseline_params)
    if baseline.model is None:
        return FittedStacked(error=baseline.error or "no tuned baseline here.")
    try:
        return FittedStacked(model=spec.refit(entry.frame, baseline.predict), baseline=baseline)
    except (StackingError, ValueError) as e:
        return FittedStacked(error=f"stacked model unavailable: {e}")


def _fit_both(entry: Any, specs: Mapping[str, Any], baselines: Any) -> FittedStacked:
    """Both adapters together: cross-fitted here on the validation rows both adapters
    stored, with the first adapter's tuned baseline."""
    from noshow.evaluation.metrics import choose_threshold
    from noshow.evaluation.stacking import (
        ADAPTER,
        BASELINE,
        StackingError,
        fit_stacked,
        rows_by_id,
    )

    first = specs[GENERATIVE]
    if not first.baseline_params:
        return FittedStacked(error="the adapters' stacked.json do not name their tabular model.")
    logits = {}
    for approach, spec in specs.items():
        logits[approach] = dict(zip(spec.record_ids, spec.validation_logits[ADAPTER], strict=True))
    ids = [r for r in first.record_ids if r in logits[CLASSIFIER]]
    if len(ids) < MIN_SHARED_ROWS:
        return FittedStacked(
            error=f"the two adapters share {len(ids)} validation rows: evaluate both on the "
            "same data set to stack them."
        )
    baseline = baselines.get(entry, timeout=None, params=first.baseline_params)
    if baseline.model is None:
        return FittedStacked(error=baseline.error or "no tuned baseline here.")
    try:
        rows = rows_by_id(entry.frame, ids)
        p = {BASELINE: baseline.predict(rows)}
        for approach in (GENERATIVE, CLASSIFIER):
            z = np.array([logits[approach][r] for r in ids])
            p[approach] = 0.5 * (1.0 + np.tanh(0.5 * z))
        unit = first.fold_unit
        column = {"day": "appointment_day", "patient": "patient_id"}.get(unit)
        y = rows["no_show"].to_numpy()
        model = fit_stacked(
            rows,
            p,
            y,
            groups=rows[column].to_numpy() if column else None,
            fold_unit=unit,
            seed=first.seed,
            record_ids=ids,
        )
    except (StackingError, ValueError) as e:
        return FittedStacked(error=f"stacked model of both adapters unavailable: {e}")
    model.threshold = choose_threshold(y, model.validation_p)
    model.baseline_params = dict(first.baseline_params)
    return FittedStacked(model=model, baseline=baseline)


class StackedCache:
    """Stacked models fitted once per loaded data set and adapter (or pair of adapters), each
    in a background thread, so a Compare never waits past its `timeout` (the fit carries on
    and a later Compare shows the card)."""

    def __init__(self, baselines: Any, max_entries: int = 8) -> None:
        self.baselines = baselines
        self._fits: BackgroundFits[FittedStacked] = BackgroundFits(
            "noshow-stacked",
            busy=lambda: FittedStacked(
                error="the stacked model is still being fitted on this data set's validation "
                "rows; its card appears on a later Compare."
            ),
            failed=lambda e: FittedStacked(error=f"stacked model unavailable: {e}"),
            max_entries=max_entries,
        )

    def get(
        self, key: tuple, fit: Callable[[], FittedStacked], timeout: float | None
    ) -> FittedStacked:
        return self._fits.get(key, fit, timeout)

    def source(self, entry: Any, timeout: float | None = None) -> StackedSource:
        """What `score_stacked` asks: for the chosen adapters ({approach: predictor}), each
        one's stacked model that carries a stacked.json, and both together."""

        def models(predictors: Mapping[str, Any]) -> dict[str, FittedStacked]:
            specs = {
                approach: spec
                for approach, predictor in predictors.items()
                if (spec := getattr(predictor, "stacked", None)) is not None
            }
            folder = {a: str(getattr(predictors[a], "adapter_dir", a)) for a in specs}
            out = {
                approach: self.get(
                    (str(entry.key), folder[approach]),
                    lambda spec=spec: _fit_one(entry, spec, self.baselines),
                    timeout,
                )
                for approach, spec in specs.items()
            }
            if set(specs) >= {GENERATIVE, CLASSIFIER}:
                out[BOTH] = self.get(
                    (str(entry.key), folder[GENERATIVE], folder[CLASSIFIER]),
                    lambda: _fit_both(entry, specs, self.baselines),
                    timeout,
                )
            return out

        return models


def stacked_cache(extras: dict[str, Any], baselines: Any) -> StackedCache:
    """The app's one StackedCache (kept in `UIContext.extras` beside the baselines)."""
    return extras.setdefault(STACKED, StackedCache(baselines))


def describe_stacked(model: Any) -> str:
    """What a stacked card's model is, in words."""
    trees = (
        f"{model.n_trees} trees on the appointment's facts and the scores"
        if model.n_trees
        else "no trees (the cross-fitting kept the blend)"
    )
    return (
        f"Gradient boosting from the blend of the tuned tabular model's and the adapter "
        f"scores, {trees}; fitted on {int(model.rows):,} validation appointments by "
        "cross-fitting."
    )


def score_stacked(
    predictors: Mapping[str, Any],
    adapter_p: Mapping[str, Sequence[float | None]],
    rows: Sequence[Mapping[str, Any] | None] | pd.DataFrame,
    source: StackedSource | None,
    why_no_facts: str | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """{key: [slot per row]} for each stacked model `source` offers for these adapters (each
    adapter with a stacked.json, and BOTH): its P from the row's facts, the tuned baseline's
    P and the adapters' calibrated P. Without the facts, a score or the model, the slot's
    `error` says why (with `why_no_facts`, which facts were not read, when given)."""
    from noshow.evaluation.stacking import ADAPTER, BASELINE

    if source is None:
        return {}
    table = rows if isinstance(rows, pd.DataFrame) else None
    n = len(rows)
    out: dict[str, list[dict[str, Any]]] = {}
    for key, fitted in source(predictors).items():
        needs = [GENERATIVE, CLASSIFIER] if key == BOTH else [key]
        slots = [{"approach": STACKED, "name": stacked_title(key), "p": None} for _ in range(n)]
        out[key] = slots
        todo = []
        for i in range(n):
            if any(adapter_p.get(a, [None] * n)[i] is None for a in needs):
                slots[i]["error"] = "the stacked model needs the adapters' scores."
            elif table is None and rows[i] is None:
                why = f" ({why_no_facts})." if why_no_facts else "."
                slots[i]["error"] = NO_FACTS_FOR_STACKED.removesuffix(".") + why
            elif fitted.model is None:
                slots[i]["error"] = fitted.error or "no stacked model here."
            else:
                todo.append(i)
        if not todo:
            continue
        frame = (
            table.iloc[todo] if table is not None else pd.DataFrame([dict(rows[i]) for i in todo])
        )
        try:
            p = {BASELINE: fitted.baseline.predict(frame)}
            for a in needs:
                p[ADAPTER if key != BOTH else a] = [adapter_p[a][i] for i in todo]
            values = fitted.model.predict(frame, p)
        except Exception as e:  # noqa: BLE001 - e.g. rows without tabular columns
            for i in todo:
                slots[i]["error"] = f"stacked model unavailable: {e}"
            continue
        threshold = float(fitted.model.threshold if fitted.model.threshold is not None else 0.5)
        where = "chosen on the validation split's cross-fitted scores, where F1 peaked"
        fill_slots(slots, todo, values, threshold, where, describe_stacked(fitted.model))
    return out


def add_stacked_scores(
    adapters: Mapping[str, Any],
    scores: dict[str, np.ndarray],
    thresholds: dict[str, float],
    notes: list[str],
    rows: pd.DataFrame,
    source: StackedSource | None,
) -> list[tuple[str, str]]:
    """A batch's stacked models: their P per row into `scores` (and `thresholds`) under
    `stacked_key`, a note for each left out; returns the pairs to compare besides the
    baseline (each stacked model with its adapters, their hybrids and, for both adapters,
    each adapter's stacked model)."""
    if source is None or not adapters:
        return []
    adapter_p = {a: scores[a].tolist() for a in adapters}
    pairs = []
    for key, slots in score_stacked(adapters, adapter_p, rows, source).items():
        if not slots or slots[0]["p"] is None:
            notes.append(f"{stacked_title(key)} left out: {slots[0]['error'] if slots else ''}")
            continue
        column = stacked_key(key)
        scores[column] = np.array([slot["p"] for slot in slots], dtype=float)
        thresholds[column] = float(slots[0]["threshold"])
        parts = [GENERATIVE, CLASSIFIER] if key == BOTH else [key]
        pairs += [(column, part) for part in parts if part in scores]
        pairs += [(column, hybrid_key(p)) for p in parts if hybrid_key(p) in scores]
        if key == BOTH:
            pairs += [(column, stacked_key(p)) for p in parts if stacked_key(p) in scores]
    return pairs
