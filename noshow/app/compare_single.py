"""One statement, and one changed fact, scored by every model of the Compare tab: both adapters
(queued on the scheduler at once, so concurrent Compares share their forwards), the tabular
baseline on the CPU inference thread while they run, and (for one statement) each
adapter's hybrid once the adapter has answered. The results are dicts of slots (`noshow.app.compare_slots`) that
`noshow.app.compare_cards` puts into words.

Nothing here imports Gradio, so tests call these directly:

    from noshow.app.compare_single import compare_statement, what_if
    result = compare_statement("A 34-year-old woman ...", gen_path, clf_path, source=service)
    change = what_if(row, "SMS reminder", "no", gen_path, clf_path, baseline=baseline)
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from noshow.app.compare_baseline import (
    Baseline,
    TunedBaselines,
    score_baseline_rows_on_cpu_thread,
    score_hybrids,
)
from noshow.app.compare_cards import agreement_text
from noshow.app.compare_clinic import adjust_pairs_to_clinic, adjust_to_clinic
from noshow.app.compare_facts import score_rows
from noshow.app.compare_input import (
    CompareInputError,
    change_fact,
    fact_text,
    prepare_statement,
)
from noshow.app.compare_slots import (
    BASELINE,
    CLASSIFIER,
    GENERATIVE,
    HYBRID,
    Loader,
    as_service,
    collect_slots,
    submit_statements,
)
from noshow.app.compare_stacked import STACKED, StackedSource, score_stacked


def compare_statement(
    text: Any,
    generative_path: Any,
    classifier_path: Any,
    *,
    row: Mapping[str, Any] | None = None,
    baseline: Baseline | None = None,
    loader: Loader | None = None,
    source: Any = None,
    owner: str = "",
    facts_source: str | None = None,
    reason: str | None = None,
    truth: int | None = None,
    base_rate: float | None = None,
    tuned_baselines: TunedBaselines | None = None,
    stacked_models: StackedSource | None = None,
    clinic_rate: float | None = None,
) -> dict[str, Any]:
    """Score one statement with both adapters, the tabular baseline, each adapter's
    hybrid (`score_hybrids`; `tuned_baselines` gives the tuned baseline it blends) and the
    stacked models (`score_stacked`, from `stacked_models`); with `clinic_rate`, every card
    is moved to that no-show rate (`noshow.app.compare_clinic.adjust_to_clinic`).

    `row` holds the appointment's facts for the baseline (from the form, a data set row, an
    example, or read back from the statement: see `resolve_facts`); without it the baseline
    slot says why (`reason`). `truth` is the data set's label for a data set row;
    `base_rate` the train split's no-show rate. `source` (or `loader`): see `as_service`;
    `owner` is the caller's session for the scheduler's fair queue.

    `notice` says when the text was cut or is not one the adapters were trained for (not
    English, not about an appointment, contradicting itself: `noshow.data.facts.text_notes`).

    Returns {statement, notice, generative, classifier, baseline, hybrid ({approach: slot}),
    stacked ({approach or "both": slot}), agree, agree_text, row, facts_source, truth,
    base_rate, clinic_rate, server_ms}; each slot is a
    `score_slot` dict whose `error` says why it has no score. Raises CompareInputError for an
    empty statement.
    """
    from noshow.data.facts import text_notes

    start = time.perf_counter()
    statement, notice = prepare_statement(text)
    # A text the adapters were not trained for is still scored, with a word of warning.
    notice = " ".join(part for part in (notice, *text_notes(statement)) if part) or None
    paths = {GENERATIVE: generative_path, CLASSIFIER: classifier_path}
    service = as_service(source if source is not None else loader)
    out, pending = submit_statements([statement], paths, service, owner)
    base = score_baseline_rows_on_cpu_thread(baseline, [row], reason)[0]
    slots = collect_slots(out, pending, paths, 1)
    predictors = {approach: predictor for approach, (predictor, _) in pending.items()}
    adapter_p = {a: [slots[a][0].get("p")] for a in predictors}
    why_no_facts = (reason or "").removeprefix("No baseline: ").rstrip(".") or None
    hybrids = score_hybrids(predictors, adapter_p, [row], tuned_baselines, why_no_facts)
    stacked = score_stacked(predictors, adapter_p, [row], stacked_models, why_no_facts)
    gen, clf = slots[GENERATIVE][0], slots[CLASSIFIER][0]
    agree = None
    if gen.get("label") is not None and clf.get("label") is not None:
        agree = gen["label"] == clf["label"]
    result = {
        "statement": statement,
        "notice": notice,
        GENERATIVE: gen,
        CLASSIFIER: clf,
        BASELINE: base,
        HYBRID: {approach: hybrid_slots[0] for approach, hybrid_slots in hybrids.items()},
        STACKED: {key: key_slots[0] for key, key_slots in stacked.items()},
        "agree": agree,
        "agree_text": agreement_text(agree, gen, clf),
        "row": dict(row) if row is not None else None,
        "facts_source": facts_source if row is not None else None,
        "truth": truth,
        "base_rate": base_rate,
    }
    adjust_to_clinic(result, clinic_rate, predictors)  # after the hybrids: they take raw P
    result["server_ms"] = (time.perf_counter() - start) * 1000
    return result


def what_if(
    row: Mapping[str, Any],
    fact: str,
    value: Any,
    generative_path: Any,
    classifier_path: Any,
    *,
    baseline: Baseline | None = None,
    source: Any = None,
    owner: str = "",
    clinic_rate: float | None = None,
    base_rate: float | None = None,
) -> dict[str, Any]:
    """P(no-show) from both adapters and the baseline for `row` and for `row` with `fact`
    changed to `value`, side by side: what the models predict, not what the change causes.
    With `clinic_rate`, at that no-show rate (`base_rate`: the baseline's train split).

    Returns {fact, old, new, before, after (statements), models: {approach: (slot before,
    slot after)}}. Raises CompareInputError for a value out of range or no change.
    """
    from noshow.data.statements import render_statement

    changed = change_fact(row, fact, value)
    old, new = fact_text(row, fact), fact_text(changed, fact)
    if changed == dict(row):
        raise CompareInputError(f"{fact} is already {old}: pick another value to compare.")
    before, after = render_statement(row), render_statement(changed)
    paths = {GENERATIVE: generative_path, CLASSIFIER: classifier_path}
    # the same scoring as the facts' bars (noshow.app.compare_facts)
    predictors: dict[str, Any] = {}
    slots = score_rows([row, changed], paths, baseline, source, owner, predictors=predictors)
    models = {key: (pair[0], pair[1]) for key, pair in slots.items()}
    adjust_pairs_to_clinic(models, clinic_rate, predictors, base_rate)
    return {
        "fact": fact,
        "old": old,
        "new": new,
        "before": before,
        "after": after,
        "models": models,
    }
