"""The facts behind a score: for one appointment, each fact changed to its typical value
(everything else kept) and every model's P scored again, so the bars show how much that
fact moved each model's P(no-show); averaged over a batch's rows, the same gives a global
view. The what-if (`noshow.app.compare_single.what_if`, one fact changed to a value the
user picks) scores through the same function, `score_rows`.

Typical values come from the loaded data's train split: the most common value for yes/no
facts, the weekday, gender and neighbourhood; the median for numbers (age, days booked
ahead, earlier appointments and no-shows, booking hour), because the most common age in
the file is 0 and a newborn is no typical patient. What the bars show is what the models
predict, not what a change would cause.

Nothing here imports Gradio:

    from noshow.app.compare_facts import fact_effects, typical_values
    typical = typical_values(entry.frame)
    effects = fact_effects(row, {"generative": g, "classifier": c}, typical, baseline=b)
    effects["facts"][0]      # {fact, value, typical, effects: {model: P(row) - P(typical)}}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from noshow.app.compare_baseline import Baseline, score_baseline_rows_on_cpu_thread
from noshow.app.compare_input import WHAT_IF_FACTS, CompareInputError, change_fact, fact_text
from noshow.app.compare_slots import (
    BASELINE,
    as_service,
    collect_slots,
    load_slot,
    submit_statements,
)

_MEDIAN = {"age", "lead_days", "prior_appointments", "prior_no_shows", "booking_hour"}
FACT_NOTE = (
    "Each bar: the model's P(no-show) for this appointment minus its P with that one fact "
    "at its typical value (the data's median for numbers, the most common value otherwise), "
    "everything else kept. Right of 0: the fact raised the predicted risk. What the models "
    "predict, not what a change would cause."
)


def typical_values(frame: pd.DataFrame) -> dict[str, str]:
    """{what-if fact: its typical value, as the what-if box writes it} from the train split
    (all rows when there is none); facts whose column is missing are left out."""
    rows = frame[frame["split"] == "train"] if "split" in frame.columns else frame
    if rows.empty:
        rows = frame
    out = {}
    for fact, (column, _) in WHAT_IF_FACTS.items():
        if column not in rows.columns or rows[column].dropna().empty:
            continue
        values = rows[column].dropna()
        if column in _MEDIAN:
            value = int(round(float(pd.to_numeric(values).median())))
        else:
            value = values.mode().iloc[0]
        out[fact] = fact_text({column: value}, fact)
    return out


def score_rows(
    rows: Sequence[Mapping[str, Any]],
    paths: Mapping[str, Any],
    baseline: Baseline | None = None,
    source: Any = None,
    owner: str = "",
    *,
    background: bool = False,
    predictors: dict[str, Any] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Every model's slot for each row, each row rendered to its statement: the adapters
    in `paths` queued on the scheduler together (one forward shares them), the baseline on
    the CPU inference thread meanwhile. {model key: [slot per row]}; the what-if and the
    facts' bars both score through here. `background`: the adapters' work waits behind
    every interactive call (the bars must never hold up anyone's next Compare). `predictors`,
    when given, receives {approach: predictor} of the adapters that loaded (what moves P to
    a clinic's own no-show rate needs their calibrators)."""
    from noshow.data.statements import render_statement

    statements = [render_statement(row) for row in rows]
    service = as_service(source)
    if background:
        out, pending = {}, {}
        for approach, path in paths.items():
            predictor, error = load_slot(path, approach, service)
            if predictor is None:
                out[approach] = [{"approach": approach, "p": None, "error": error}] * len(rows)
                continue
            plain = getattr(predictor, "predictor", predictor)
            size = service.scheduler.chunk_size(plain)  # ~0.25 s each: a Compare waits one
            futures = [
                service.scheduler.submit(plain, statements[i : i + size], owner, background=True)
                for i in range(0, len(statements), size)
            ]
            pending[approach] = (predictor, _Chunks(futures))
    else:
        out, pending = submit_statements(statements, paths, service, owner)
    base = score_baseline_rows_on_cpu_thread(baseline, list(rows))
    slots = collect_slots(out, pending, paths, len(statements))
    slots[BASELINE] = base
    if predictors is not None:
        predictors.update({approach: predictor for approach, (predictor, _) in pending.items()})
    return slots


class _Chunks:
    """The futures of one adapter's background chunks, read as one: `result()` joins them."""

    def __init__(self, futures: Sequence[Any]) -> None:
        self.futures = list(futures)

    def result(self, timeout: float | None = None) -> list[Any]:
        return [scored for f in self.futures for scored in f.result(timeout)]


def fact_changes(
    row: Mapping[str, Any], typical: Mapping[str, str]
) -> tuple[list[tuple[str, str, str, dict[str, Any]]], list[str]]:
    """([(fact, value, typical value, changed row)], [facts left as they are and why]) for
    every fact of `typical` that `row` holds with another value."""
    changes, kept = [], []
    for fact, value in typical.items():
        column = WHAT_IF_FACTS[fact][0]
        if column not in row:
            continue
        now = fact_text(row, fact)
        if now.upper() == str(value).upper():
            kept.append(f"{fact} is already typical ({now})")
            continue
        try:
            changed = change_fact(row, fact, value)
        except CompareInputError as e:  # e.g. fewer earlier appointments than no-shows
            kept.append(f"{fact}: {e}")
            continue
        changes.append((fact, now, str(value), changed))
    return changes, kept


def fact_effects(
    row: Mapping[str, Any],
    paths: Mapping[str, Any],
    typical: Mapping[str, str],
    *,
    baseline: Baseline | None = None,
    source: Any = None,
    owner: str = "",
) -> dict[str, Any]:
    """Each fact's effect on each model's P for one appointment: P(row) - P(row with the
    fact at its typical value), scored by `score_rows` (the row itself comes back from the
    scheduler's cache after a Compare). Returns {p: {model: P}, facts: [{fact, value,
    typical, effects: {model: change or None}}], kept: [why a fact has no bar], errors:
    {model: why it has no bars}}."""
    changes, kept = fact_changes(row, typical)
    slots = score_rows(
        [row] + [c[3] for c in changes], paths, baseline, source, owner, background=True
    )
    p = {key: s[0].get("p") for key, s in slots.items()}
    errors = {key: s[0].get("error") for key, s in slots.items() if s[0].get("p") is None}
    facts = []
    for k, (fact, value, usual, _) in enumerate(changes, start=1):
        effects = {}
        for key, s in slots.items():
            after = s[k].get("p")
            effects[key] = None if p[key] is None or after is None else p[key] - after
        facts.append({"fact": fact, "value": value, "typical": usual, "effects": effects})
    return {"p": p, "facts": facts, "kept": kept, "errors": errors}


def fact_labels(facts: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """{bar label: effects}: "SMS reminder: yes (typical no)"."""
    return {f"{f['fact']}: {f['value']} (typical {f['typical']})": f["effects"] for f in facts}


def plot_effects(result: Mapping[str, Any], names: Mapping[str, str] | None = None) -> Any:
    """The bars of `fact_effects`: facts ordered by their largest effect."""
    from noshow.evaluation.decision_plots import plot_fact_effects

    ordered = sorted(
        result["facts"],
        key=lambda f: -max((abs(v) for v in f["effects"].values() if v is not None), default=0),
    )
    return plot_fact_effects(fact_labels(ordered), names)


# ----------------------------------------------------------------------------- a batch


def batch_fact_effects(
    rows: pd.DataFrame,
    score_statements: Callable[[str, list[str]], np.ndarray | None],
    typical: Mapping[str, str],
    baseline: Baseline | None = None,
) -> dict[str, Any]:
    """The facts' effects averaged over `rows`: for each fact, the mean of |P(row) -
    P(row with the fact typical)| over the rows where it is not typical already, and the
    mean signed change. `score_statements(model, statements)` scores for each adapter
    (the batch's background chunks); the baseline predicts the changed rows at once.
    Returns {rows, facts: [{fact, rows, mean_abs: {model: v}, mean: {model: v}}]}."""
    from noshow.data.statements import render_statement

    plain = rows.to_dict("records")
    jobs: list[tuple[int, str, dict[str, Any]]] = []  # (row index, fact, changed row)
    for i, row in enumerate(plain):
        for fact, _, _, changed in fact_changes(row, typical)[0]:
            jobs.append((i, fact, changed))
    originals = [render_statement(r) for r in plain]
    changed_texts = [render_statement(c) for _, _, c in jobs]
    before: dict[str, np.ndarray] = {}
    after: dict[str, np.ndarray] = {}
    for model in ("generative", "classifier"):
        p = score_statements(model, originals + changed_texts)
        if p is not None:
            p = np.asarray(p, dtype=float)
            before[model], after[model] = p[: len(originals)], p[len(originals) :]
    if baseline is not None and baseline.model is not None:
        frame = pd.DataFrame(plain + [c for _, _, c in jobs])
        p = np.asarray(baseline.predict(frame), dtype=float)
        before[BASELINE], after[BASELINE] = p[: len(plain)], p[len(plain) :]
    index = np.array([i for i, _, _ in jobs], dtype=int)
    fact_of = np.array([f for _, f, _ in jobs])
    facts = []
    for fact in typical:
        mask = fact_of == fact
        if not mask.any():
            continue
        change = {m: before[m][index[mask]] - after[m][mask] for m in before}
        facts.append(
            {
                "fact": fact,
                "rows": int(mask.sum()),
                "mean_abs": {m: float(np.abs(v).mean()) for m, v in change.items()},
                "mean": {m: float(v.mean()) for m, v in change.items()},
            }
        )
    facts.sort(key=lambda f: -max(f["mean_abs"].values(), default=0))
    return {"rows": len(plain), "typical": dict(typical), "facts": facts}


def plot_batch_effects(result: Mapping[str, Any], names: Mapping[str, str] | None = None) -> Any:
    """Bars of `batch_fact_effects`: each fact's mean absolute effect per model."""
    from noshow.evaluation.decision_plots import plot_fact_effects

    effects = {
        f"{f['fact']} (typical {result['typical'][f['fact']]}; {f['rows']:,} rows)": f["mean_abs"]
        for f in result["facts"]
    }
    return plot_fact_effects(
        effects,
        names,
        title=f"Which facts move P(no-show), averaged over {result['rows']:,} appointments",
        xlabel="Mean absolute change in P(no-show), points (fact vs typical value)",
    )
