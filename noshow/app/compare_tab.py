"""The Compare tab: a generative and a classifier adapter side by side on one statement (typed,
an example, a data set row or a small form) with the tabular baseline, each result
explained; a what-if that changes one fact; and a batch mode that evaluates all three on
the test split (or the clinicians' gold set) with progress and an ETA.

Endpoints (for gradio_client and tests):
- `/compare(statement, generative, classifier, clinic_rate)` -> (html, summary dict, message)
- `/compare_record(record_id, generative, classifier, clinic_rate)` -> (statement, html,
  summary, message)
- `/compare_form(age, gender, lead_days, sms, scholarship, conditions, prior_appointments,
  prior_no_shows, weekday, neighbourhood, booking_hour, generative, classifier, clinic_rate)`
  -> (statement, html, summary, message)
- `/what_if(statement, fact, value, generative, classifier, clinic_rate)` -> (html, summary,
  message)
- `/compare_batch(generative, classifier, max_rows, gold_set)` -> a generator: progress in
  the message, then (summary, metrics, ROC, calibration, confusion, disagreements, CSV
  file, message)
- `/compare_adapters()` -> refreshed adapter lists

`clinic_rate` (last: "" or None = not set; "15%" or 0.15; gradio_client may leave it out,
the plain HTTP API at /gradio_api/call/... takes every input, so "" there) is "your clinic's
no-show rate": every card's P
is moved to it (`noshow.app.compare_clinic`); the stacked cards come from
`noshow.app.compare_stacked`.

How it stays responsive with many users: every model call goes through the app's
scheduler (`noshow.inference.scheduler`, reached through `ctx.adapters`), so Compares of many sessions share forwards
and are served in turn, and a batch evaluation runs as background chunks behind them. The
single-statement events share one concurrency group with room for every waiting user
(their order is the scheduler's); batch evaluations have their own group (two at a time)
and one per browser session; a batch is a generator, so Gradio stops it when its browser
disconnects or Stop is pressed, and the job stops at its next chunk.

The handlers are thin: what the tab accepts is `noshow.app.compare_input`, the scoring
`compare_single` and `compare_batch` (over `compare_slots` and `compare_baseline`), the
words `compare_cards`; the batch panel's layout and wiring are `compare_batch_panel`.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import gradio as gr
import pandas as pd

from noshow.app.common import UIContext, error_box, info_box, request_owner, user_message
from noshow.app.compare_baseline import Baseline, BaselineCache, TunedBaselines, base_rate
from noshow.app.compare_batch_panel import build_batch_panel
from noshow.app.compare_cards import (
    compare_summary,
    render_compare_html,
    render_what_if_html,
    what_if_summary,
)
from noshow.app.compare_clinic import (
    CLINIC_RATE_INFO,
    CLINIC_RATE_LABEL,
    clinic_rate_problem,
    parse_clinic_rate,
)
from noshow.app.compare_facts import FACT_NOTE, fact_effects, plot_effects, typical_values
from noshow.app.compare_input import (
    COMPARE_BUTTON,
    CONDITIONS,
    FORM_BUTTON,
    FORM_DEFAULTS,
    NEIGHBOURHOODS,
    RECORD_BUTTON,
    REFRESH_BUTTON,
    WEEKDAYS,
    WHAT_IF_FACTS,
    CompareInputError,
    fact_text,
    facts_state,
    prepare_statement,
    render_form_statement,
    resolve_facts,
)
from noshow.app.compare_single import compare_statement, what_if
from noshow.app.compare_slots import (
    CLASSIFIER,
    GENERATIVE,
    MODEL_NAMES,
    load_slot,
    missing_adapters_text,
    score_statements,
)
from noshow.app.compare_stacked import stacked_cache
from noshow.data.examples import EXAMPLES

# A single Compare waits this long for a first baseline fit before answering without it
# (the fit carries on in the background, and a small data set is fitted within it).
BASELINE_WAIT_S = 3.0
# Single-statement events: room for every waiting user (the scheduler orders the model work).
COMPARE_CONCURRENCY = 64


def adapters_note(found: dict[str, list[tuple[str, str]]]) -> str:
    text = missing_adapters_text(found)
    return info_box(text) if text else ""


def build_compare_tab(ctx: UIContext) -> dict[str, Any]:
    """Lay out the Compare tab inside the current Blocks and wire its events; returns its
    components by name. The adapters chosen here are kept in `ctx.adapter_inputs()`, which
    other tabs read; the adapters themselves are `ctx.adapters`."""
    service = ctx.adapters
    baselines: BaselineCache = ctx.extras.setdefault("baselines", BaselineCache())
    stacked = stacked_cache(ctx.extras, baselines)
    rates: dict[str, float | None] = {}
    rates_lock = threading.Lock()
    typical: dict[str, dict[str, str]] = {}  # data key -> each fact's typical value
    start = service.choices()

    def first(items: list[tuple[str, str]]) -> str | None:
        return items[0][1] if items else None

    gr.Markdown(
        "Score one statement with a **generative** and a **classifier** adapter side by side, "
        "next to the **tabular baseline** (gradient boosting on the appointment's facts, "
        "fitted on the loaded data's train split). Type a statement, click an example, pick a "
        "data set row or fill the form; then change one fact to see what the models predict."
    )
    with gr.Row(equal_height=True):
        gen_dd = gr.Dropdown(
            start[GENERATIVE],
            value=first(start[GENERATIVE]),
            label="Generative adapter",
            info="From finished runs and shipped adapters; or paste a folder path.",
            allow_custom_value=True,
            scale=3,
        )
        clf_dd = gr.Dropdown(
            start[CLASSIFIER],
            value=first(start[CLASSIFIER]),
            label="Classifier adapter",
            info="From finished runs and shipped adapters; or paste a folder path.",
            allow_custom_value=True,
            scale=3,
        )
        refresh_btn = gr.Button(REFRESH_BUTTON, scale=1, size="sm")
    adapters_msg = gr.HTML(adapters_note(start))
    # A text box, not gr.Number: the browser sends an empty number box as 0, which is no rate.
    clinic = gr.Textbox(
        "",
        label=CLINIC_RATE_LABEL,
        info=CLINIC_RATE_INFO,
        placeholder="e.g. 15% or 0.15; empty = as calibrated",
        elem_id="compare-clinic-rate",
        max_lines=1,
    )
    row_state = gr.State(None)
    gen_chosen, clf_chosen = ctx.adapter_inputs()

    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=360):
            statement = gr.Textbox(
                label="Statement",
                lines=4,
                max_lines=12,
                placeholder="A 34-year-old woman from Maria Ortiz has an appointment on a Monday…",
                elem_id="compare-statement",
            )
            gr.Markdown("**Examples** (one click scores them):")
            with gr.Row():
                example_btns = [
                    gr.Button(ex.label, size="sm", elem_classes=["noshow-example"])
                    for ex in EXAMPLES
                ]
            compare_btn = gr.Button(COMPARE_BUTTON, variant="primary", elem_id="compare-run")
        with gr.Column(scale=2, min_width=300):
            with gr.Accordion("Pick a data set row", open=False, elem_id="compare-record-box"):
                record_id = gr.Number(
                    label="Record id (AppointmentID)", precision=0, elem_id="compare-record-id"
                )
                record_btn = gr.Button(RECORD_BUTTON, size="sm", elem_id="compare-record")
            with gr.Accordion("Fill a form", open=False):
                with gr.Row():
                    f_age = gr.Number(FORM_DEFAULTS["age"], label="Age", precision=0)
                    f_gender = gr.Radio(["F", "M"], value="F", label="Gender")
                with gr.Row():
                    f_lead = gr.Number(FORM_DEFAULTS["lead_days"], label="Lead days", precision=0)
                    f_hour = gr.Number(9, label="Booking hour (0-23)", precision=0)
                with gr.Row():
                    f_weekday = gr.Dropdown(WEEKDAYS, value="Tuesday", label="Weekday")
                    f_place = gr.Dropdown(
                        NEIGHBOURHOODS,
                        value=FORM_DEFAULTS["neighbourhood"],
                        label="Neighbourhood",
                        allow_custom_value=True,
                    )
                with gr.Row():
                    f_sms = gr.Checkbox(True, label="SMS reminder")
                    f_scholarship = gr.Checkbox(False, label="Welfare scholarship")
                f_conditions = gr.CheckboxGroup(CONDITIONS, label="Conditions")
                with gr.Row():
                    f_prior = gr.Number(0, label="Earlier appointments", precision=0)
                    f_missed = gr.Number(0, label="Earlier no-shows", precision=0)
                form_btn = gr.Button(FORM_BUTTON, size="sm", elem_id="compare-form")

    message = gr.HTML()
    result_html = gr.HTML(elem_id="compare-result")
    with gr.Accordion("The facts behind these scores", open=True, elem_id="compare-facts"):
        facts_plot = gr.Plot(label="How much each fact moved P(no-show)", elem_id="facts-plot")
        facts_note = gr.Markdown(elem_id="facts-note")
    with gr.Accordion("What if one fact were different?", open=True, elem_id="compare-what-if"):
        gr.Markdown(
            "Change one fact of the statement above (from the form, a data set row, an "
            "example, or a typed statement in the examples' words) and see P(no-show) of "
            "all three models side by side. This shows what the models **predict**, not "
            "what the change would **cause**."
        )
        with gr.Row(equal_height=True):
            first_fact = next(iter(WHAT_IF_FACTS))
            wi_fact = gr.Dropdown(
                list(WHAT_IF_FACTS), value=first_fact, label="Fact to change", scale=2
            )
            wi_value = gr.Dropdown(
                WHAT_IF_FACTS[first_fact][1],
                value=WHAT_IF_FACTS[first_fact][1][1],
                label="New value",
                allow_custom_value=True,
                scale=2,
            )
            wi_btn = gr.Button("Show what the models predict", scale=1, elem_id="what-if-run")
        wi_msg = gr.HTML()
        wi_html = gr.HTML(elem_id="what-if-result")
    with gr.Accordion("Result as data", open=False):
        summary_json = gr.JSON(label="Comparison")
        wi_json = gr.JSON(label="What-if")

    batch = build_batch_panel(ctx, baselines, gen_dd, clf_dd)

    # -- handlers ----------------------------------------------------------------------------

    def refresh(gen_value: str | None, clf_value: str | None):
        found = service.choices()
        updates = []
        for approach, value in ((GENERATIVE, gen_value), (CLASSIFIER, clf_value)):
            paths = [path for _, path in found[approach]]
            keep = value if value in paths else first(found[approach])
            updates.append(gr.update(choices=found[approach], value=keep))
        return *updates, adapters_note(found)

    def data_for(
        key: Any, with_baseline: bool
    ) -> tuple[Baseline | None, float | None, TunedBaselines | None]:
        """(baseline, base rate, tuned baselines) of the loaded data; a baseline that cannot
        be had says why."""
        try:
            entry = ctx.get_data(key)
        except Exception as e:  # noqa: BLE001 - no data: the adapters still compare
            return Baseline(error=f"no data loaded: {user_message(e)}"), None, None
        with rates_lock:
            if entry.key not in rates:
                rates[entry.key] = base_rate(entry.frame)
            rate = rates[entry.key]
        if not with_baseline:
            return None, rate, None
        tuned = baselines.tuned(entry, BASELINE_WAIT_S)
        try:
            return baselines.get(entry, timeout=BASELINE_WAIT_S), rate, tuned
        except Exception as e:  # noqa: BLE001 - no baseline, still compare the adapters
            error = f"tabular baseline unavailable: {user_message(e)}"
            return Baseline(error=error), rate, tuned

    def stacked_for(key: Any):
        """The stacked models of the loaded data (None without data)."""
        try:
            return stacked.source(ctx.get_data(key), BASELINE_WAIT_S)
        except Exception:  # noqa: BLE001 - no data: no stacked cards
            return None

    def rate_refusal(clinic_rate) -> str | None:
        """A refused rate is checked first: it changes nothing on the page but the message."""
        return error_box(problem) if (problem := clinic_rate_problem(clinic_rate)) else None

    def run_compare(text, gen_path, clf_path, state, key, owner, clinic_rate=None):
        """(html, summary, message) for the statement `text`. A refused clinic rate leaves the
        cards on the page as they were (they still describe the statement in the box); a
        refused statement clears them (they would describe a different text)."""
        if refusal := rate_refusal(clinic_rate):
            return gr.update(), gr.update(), refusal
        clinic_rate = parse_clinic_rate(clinic_rate)
        try:
            prepared, _ = prepare_statement(text)
        except CompareInputError as e:
            return "", None, error_box(str(e))
        row, facts, reason, truth = resolve_facts(prepared, state)
        baseline, rate, tuned = data_for(key, with_baseline=row is not None)
        try:
            result = compare_statement(
                text,
                gen_path,
                clf_path,
                row=row,
                baseline=baseline,
                source=service,
                owner=owner,
                facts_source=facts,
                reason=reason,
                truth=truth,
                base_rate=rate,
                tuned_baselines=tuned,
                stacked_models=stacked_for(key) if row is not None else None,
                clinic_rate=clinic_rate,
            )
        except CompareInputError as e:
            return "", None, error_box(str(e))
        note = result.get("notice")
        return (
            render_compare_html(result),
            compare_summary(result),
            info_box(note) if note else "",
        )

    def explain(text, gen_path, clf_path, state, key, request: gr.Request):
        """The facts' bars for the statement in the box: a second event after the cards, so
        a Compare answers as fast as before (noshow.app.compare_facts)."""
        try:
            prepared, _ = prepare_statement(text)
        except CompareInputError:
            return None, ""
        row, _, reason, _ = resolve_facts(prepared, state)
        if row is None:
            why = str(reason or "").removeprefix("No baseline: ")
            return None, f"No bars: they need the appointment's facts ({why})"
        baseline, _, _ = data_for(key, with_baseline=True)
        with rates_lock:
            entry_key = str(key)
            if entry_key not in typical:
                with contextlib.suppress(Exception):  # no data: no typical values
                    typical[entry_key] = typical_values(ctx.get_data(key).frame)
        result = fact_effects(
            row,
            {GENERATIVE: gen_path, CLASSIFIER: clf_path},
            typical.get(entry_key) or {},
            baseline=baseline,
            source=service,
            owner=request_owner(request),
        )
        if not result["facts"]:
            return None, "No bars: every fact of this appointment is at its typical value."
        return plot_effects(result, MODEL_NAMES), FACT_NOTE

    def compare(text, gen_path, clf_path, state, key, clinic_rate=None, request: gr.Request = None):
        owner = request_owner(request)
        return run_compare(text, gen_path, clf_path, state, key, owner, clinic_rate)

    def compare_example(index: int):
        ex = EXAMPLES[index]

        def handler(gen_path, clf_path, key, clinic_rate=None, request: gr.Request = None):
            if refusal := rate_refusal(clinic_rate):
                return gr.update(), gr.update(), gr.update(), gr.update(), refusal
            state = facts_state(ex.statement, ex.row, f"example: {ex.title}")
            owner = request_owner(request)
            return (
                ex.statement,
                state,
                *run_compare(ex.statement, gen_path, clf_path, state, key, owner, clinic_rate),
            )

        return handler

    def compare_record(rid, gen_path, clf_path, key, clinic_rate=None, request: gr.Request = None):
        from noshow.app.data_views import find_record

        if refusal := rate_refusal(clinic_rate):
            return gr.update(), gr.update(), gr.update(), gr.update(), refusal
        try:
            entry = ctx.get_data(key)
            row = find_record(entry.frame, rid, table="the Data tab's table")
        except (LookupError, ValueError) as e:
            return gr.update(), gr.update(), gr.update(), gr.update(), error_box(user_message(e))
        text = str(row["statement"])
        source = f"record {int(row['record_id'])}, {row.get('split', '?')} split"
        truth = int(row["no_show"]) if pd.notna(row.get("no_show")) else None
        state = facts_state(text, row, source, truth)
        owner = request_owner(request)
        return (
            text,
            state,
            *run_compare(text, gen_path, clf_path, state, key, owner, clinic_rate),
        )

    def compare_form(
        age,
        gender,
        lead,
        sms,
        scholarship,
        conditions,
        prior,
        missed,
        weekday,
        place,
        hour,
        gen_path,
        clf_path,
        key,
        clinic_rate=None,  # optional in the API: gradio_client may leave it out
        request: gr.Request = None,
    ):
        if refusal := rate_refusal(clinic_rate):
            return gr.update(), gr.update(), gr.update(), gr.update(), refusal
        try:
            text, row = render_form_statement(
                age=age,
                gender=gender,
                lead_days=lead,
                sms_received=sms,
                scholarship=scholarship,
                conditions=conditions,
                prior_appointments=prior,
                prior_no_shows=missed,
                weekday=weekday,
                neighbourhood=place,
                booking_hour=hour,
            )
        except ValueError as e:
            return gr.update(), gr.update(), gr.update(), gr.update(), error_box(user_message(e))
        state = facts_state(text, row, "the form")
        owner = request_owner(request)
        return (
            text,
            state,
            *run_compare(text, gen_path, clf_path, state, key, owner, clinic_rate),
        )

    def compare_what_if(
        text,
        fact,
        value,
        gen_path,
        clf_path,
        state,
        key,
        clinic_rate=None,
        request: gr.Request = None,
    ):
        if refusal := rate_refusal(clinic_rate):
            return gr.update(), gr.update(), refusal
        clinic_rate = parse_clinic_rate(clinic_rate)
        try:
            prepared, _ = prepare_statement(text)
            row, _, reason, _ = resolve_facts(prepared, state)
            if row is None:
                why = str(reason or "").removeprefix("No baseline: ").rstrip(".")
                raise CompareInputError(
                    "What-if needs the appointment's facts: fill the form, pick a data set row "
                    f"or an example, or type a statement in the examples' words ({why})."
                )
            baseline, rate, _ = data_for(key, with_baseline=True)
            result = what_if(
                row,
                fact,
                value,
                gen_path,
                clf_path,
                baseline=baseline,
                source=service,
                owner=request_owner(request),
                clinic_rate=clinic_rate,
                base_rate=rate,
            )
        except CompareInputError as e:
            return "", None, error_box(str(e))
        return render_what_if_html(result), what_if_summary(result), ""

    def fact_values(fact, text, state):
        """The new-value choices for `fact`, starting at one that differs from the current."""
        if fact not in WHAT_IF_FACTS:
            return gr.update()
        choices = WHAT_IF_FACTS[fact][1]
        current = None
        try:
            row, _, _, _ = resolve_facts(prepare_statement(text)[0], state)
            current = fact_text(row, fact) if row else None
        except CompareInputError:
            pass
        pick = next((c for c in choices if c.upper() != str(current).upper()), choices[0])
        return gr.update(choices=choices, value=pick)

    def warm_up(gen_path, clf_path, key):
        """On page load: load the listed adapters, start the baseline fit and score the
        examples into the cache, so a visitor's first click is answered at once."""
        paths = {GENERATIVE: gen_path, CLASSIFIER: clf_path}
        with contextlib.suppress(Exception):  # no data: nothing to fit
            entry = ctx.get_data(key)
            baselines.get(entry, timeout=0)
            predictors = {}
            for approach, path in paths.items():  # the tuned baselines the hybrids blend
                predictor, _ = load_slot(path, approach, service)
                hybrid = getattr(predictor, "hybrid", None)
                if hybrid is not None and hybrid.baseline_params:
                    baselines.get(entry, timeout=0, params=hybrid.baseline_params)
                if predictor is not None:
                    predictors[approach] = predictor
            stacked.source(entry, timeout=0)(predictors)  # their fits start too
        texts = [ex.statement for ex in EXAMPLES]
        score_statements(texts, paths, service)

    # -- wiring ------------------------------------------------------------------------------

    interactive = {"concurrency_id": "compare", "concurrency_limit": COMPARE_CONCURRENCY}
    compare_inputs = [statement, gen_dd, clf_dd, row_state, ctx.data_key, clinic]
    compare_outputs = [result_html, summary_json, message]
    filled_outputs = [statement, row_state, *compare_outputs]
    # after a new statement, the what-if offers a value that differs from its current one
    suggest_value = {
        "fn": fact_values,
        "inputs": [wi_fact, statement, row_state],
        "outputs": wi_value,
        "api_visibility": "private",
        "show_progress": "hidden",
    }
    explain_facts = {  # after the cards: the facts' bars
        "fn": explain,
        "inputs": [statement, gen_dd, clf_dd, row_state, ctx.data_key],
        "outputs": [facts_plot, facts_note],
        "api_visibility": "private",
        "show_progress": "minimal",
        **interactive,
    }
    compare_btn.click(
        compare, compare_inputs, compare_outputs, api_name="compare", **interactive
    ).then(**{**explain_facts, "api_visibility": "public", "api_name": "compare_facts"})
    statement.submit(
        compare, compare_inputs, compare_outputs, api_visibility="private", **interactive
    ).then(**explain_facts)
    form_btn.click(
        compare_form,
        [f_age, f_gender, f_lead, f_sms, f_scholarship, f_conditions, f_prior, f_missed]
        + [f_weekday, f_place, f_hour, gen_dd, clf_dd, ctx.data_key, clinic],
        filled_outputs,
        api_name="compare_form",
        **interactive,
    ).then(**suggest_value).then(**explain_facts)
    record_btn.click(
        compare_record,
        [record_id, gen_dd, clf_dd, ctx.data_key, clinic],
        filled_outputs,
        api_name="compare_record",
        **interactive,
    ).then(**suggest_value).then(**explain_facts)
    for index, btn in enumerate(example_btns):
        # one event per click: the statement and its result come back together
        btn.click(
            compare_example(index),
            [gen_dd, clf_dd, ctx.data_key, clinic],
            filled_outputs,
            api_visibility="private",
            **interactive,
        ).then(**suggest_value).then(**explain_facts)
    wi_btn.click(
        compare_what_if,
        [statement, wi_fact, wi_value, gen_dd, clf_dd, row_state, ctx.data_key, clinic],
        [wi_html, wi_json, wi_msg],
        api_name="what_if",
        **interactive,
    )
    wi_fact.change(**suggest_value)
    refresh_btn.click(
        refresh, [gen_dd, clf_dd], [gen_dd, clf_dd, adapters_msg], api_name="compare_adapters"
    )
    # Other tabs (Label) read the chosen adapters from these, not from the dropdowns.
    for dropdown, chosen in ((gen_dd, gen_chosen), (clf_dd, clf_chosen)):
        dropdown.change(
            lambda value: value, dropdown, chosen, api_visibility="private", show_progress="hidden"
        )
    root = gr.context.Context.root_block
    if root is not None:
        # New runs finish while the app is up: a page load lists them without a restart.
        root.load(
            refresh, [gen_dd, clf_dd], [gen_dd, clf_dd, adapters_msg], api_visibility="private"
        ).then(
            warm_up,
            [gen_dd, clf_dd, ctx.data_key],
            None,
            api_visibility="private",
            show_progress="hidden",
            **interactive,
        ).then(  # the examples were just scored: the batch slider says this machine's speed
            batch["speed"],
            [gen_dd, clf_dd],
            batch["max_rows"],
            api_visibility="private",
            show_progress="hidden",
        )

    return {
        GENERATIVE: gen_dd,
        CLASSIFIER: clf_dd,
        "statement": statement,
        "result": result_html,
    }
