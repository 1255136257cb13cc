"""The Compare tab: a generative and a classifier adapter side by side on one statement (typed,
an example, a data set row or a small form), with the tabular baseline for rows and forms;
and a batch mode that evaluates all three on the test split (or the clinicians' gold set).

Endpoints (for gradio_client and tests):
- `/compare(statement, generative, classifier)` -> (html, summary dict, message)
- `/render_form_statement(age, gender, lead_days, sms, scholarship, conditions,
  prior_appointments, prior_no_shows, weekday, neighbourhood, booking_hour)` -> (statement, message)
- `/compare_record(record_id)` -> (statement, message)
- `/compare_batch(generative, classifier, max_rows, gold_set)` -> (summary, metrics, ROC,
  calibration, confusion, disagreements, CSV file, message)
- `/compare_adapters()` -> refreshed adapter lists

The handlers are thin; the logic is in `noshow.ui.compare_views`.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import gradio as gr

from noshow.examples import EXAMPLES
from noshow.statements import STATEMENT_FIELDS
from noshow.ui import compare_views as cv
from noshow.ui.common import UIContext, error_box, info_box, user_message

REPO = Path(__file__).resolve().parents[2]
SHIPPED_ADAPTERS = REPO / "adapters"
# A single Compare waits this long for a first baseline fit before answering without it.
BASELINE_WAIT_S = 20.0
DEMO_BATCH_ROWS = 500
NEIGHBOURHOODS = [
    "JARDIM CAMBURI",
    "MARIA ORTIZ",
    "RESISTÊNCIA",
    "JARDIM DA PENHA",
    "ITARARÉ",
    "CENTRO",
    "TABUAZEIRO",
    "SANTA MARTHA",
    "JESUS DE NAZARETH",
    "BONFIM",
    "SANTO ANTÔNIO",
    "SANTO ANDRÉ",
    "CARATOÍRA",
    "JABOUR",
    "SÃO PEDRO",
]


def _row_state(statement: str, row: Any, source: str) -> dict[str, Any]:
    """What produced the statement in the box, so Compare can add the baseline's P while
    the text is unchanged (an edited statement no longer matches its row)."""
    plain = {}
    for key in STATEMENT_FIELDS:  # the same fields the baseline reads
        if key in row:
            value = row[key]
            plain[key] = value.item() if hasattr(value, "item") else value
    return {"statement": statement, "row": plain, "source": source}


def build_compare_tab(ctx: UIContext) -> dict[str, Any]:
    """Lay out the Compare tab inside the current Blocks and wire its events; returns its
    components by name (the Label tab reads the chosen adapters from `ctx.extras`)."""
    shipped_dir = Path(ctx.extras.get("shipped_dir", SHIPPED_ADAPTERS))
    baselines: cv.BaselineCache = ctx.extras.setdefault("baselines", cv.BaselineCache())

    def list_choices() -> dict[str, list[tuple[str, str]]]:
        try:
            return cv.adapter_choices(ctx.runs_dir, shipped_dir)
        except Exception:  # noqa: BLE001 - an unreadable folder lists nothing
            return {cv.GENERATIVE: [], cv.CLASSIFIER: []}

    start = list_choices()

    def listed_paths() -> list[str]:
        return [path for items in list_choices().values() for _, path in items]

    # None = any folder (people running their own app paste paths); the demo lists only.
    loader = cv.listed_only_loader(listed_paths) if ctx.demo_mode else None
    ctx.extras["adapter_loader"] = loader
    # A public Space shares one CPU between visitors: keep batch runs short there.
    row_cap = DEMO_BATCH_ROWS if ctx.demo_mode else 5000

    def first(items: list[tuple[str, str]]) -> str | None:
        return items[0][1] if items else None

    gr.Markdown(
        "Score one statement with a **generative** and a **classifier** adapter side by side. "
        "Type a statement, click an example, pick a data set row, or fill the form. Rows and "
        "forms are also scored by the **tabular baseline** (gradient boosting fitted on the "
        "loaded data's train split)."
    )
    with gr.Row(equal_height=True):
        gen_dd = gr.Dropdown(
            start[cv.GENERATIVE],
            value=first(start[cv.GENERATIVE]),
            label="Generative adapter",
            info="From finished runs and shipped adapters; or paste a folder path.",
            allow_custom_value=True,
            scale=3,
        )
        clf_dd = gr.Dropdown(
            start[cv.CLASSIFIER],
            value=first(start[cv.CLASSIFIER]),
            label="Classifier adapter",
            info="From finished runs and shipped adapters; or paste a folder path.",
            allow_custom_value=True,
            scale=3,
        )
        refresh_btn = gr.Button("Refresh adapter lists", scale=1, size="sm")
    adapters_msg = gr.HTML(_adapters_note(start))
    row_state = gr.State(None)

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
            compare_btn = gr.Button("Compare", variant="primary", elem_id="compare-run")
        with gr.Column(scale=2, min_width=300):
            with gr.Accordion("Pick a data set row", open=False):
                record_id = gr.Number(label="Record id (AppointmentID)", precision=0)
                record_btn = gr.Button("Use this record", size="sm")
            with gr.Accordion("Fill a form", open=False):
                with gr.Row():
                    f_age = gr.Number(cv.FORM_DEFAULTS["age"], label="Age", precision=0)
                    f_gender = gr.Radio(["F", "M"], value="F", label="Gender")
                with gr.Row():
                    f_lead = gr.Number(
                        cv.FORM_DEFAULTS["lead_days"], label="Lead days", precision=0
                    )
                    f_hour = gr.Number(9, label="Booking hour (0-23)", precision=0)
                with gr.Row():
                    f_weekday = gr.Dropdown(cv.WEEKDAYS, value="Tuesday", label="Weekday")
                    f_place = gr.Dropdown(
                        NEIGHBOURHOODS,
                        value=cv.FORM_DEFAULTS["neighbourhood"],
                        label="Neighbourhood",
                        allow_custom_value=True,
                    )
                with gr.Row():
                    f_sms = gr.Checkbox(True, label="SMS reminder")
                    f_scholarship = gr.Checkbox(False, label="Welfare scholarship")
                f_conditions = gr.CheckboxGroup(cv.CONDITIONS, label="Conditions")
                with gr.Row():
                    f_prior = gr.Number(0, label="Earlier appointments", precision=0)
                    f_missed = gr.Number(0, label="Earlier no-shows", precision=0)
                form_btn = gr.Button("Render statement", size="sm")

    message = gr.HTML()
    result_html = gr.HTML(elem_id="compare-result")
    with gr.Accordion("Result as data", open=False):
        summary_json = gr.JSON(label="Comparison")

    with gr.Accordion("Batch: evaluate on the test split", open=False):
        with gr.Row():
            max_rows = gr.Slider(
                10,
                row_cap,
                value=min(cv.DEFAULT_BATCH_ROWS, row_cap),
                step=10,
                label="Rows to evaluate (at most)",
                info="A stratified sample when the split is larger.",
            )
            gold = gr.Checkbox(
                False,
                label="Gold set: clinician-labelled records",
                info="Evaluate on records labelled in the Label tab, their consensus label "
                "replacing the data set's.",
            )
        batch_btn = gr.Button("Run batch comparison", variant="primary")
        batch_msg = gr.HTML()
        batch_summary = gr.Markdown()
        metrics_df = gr.Dataframe(label="Metrics", interactive=False, wrap=True)
        with gr.Row():
            roc_plot = gr.Plot(label="ROC curves")
            calib_plot = gr.Plot(label="Calibration")
        confusion_plot = gr.Plot(label="Confusion matrices")
        disagree_df = gr.Dataframe(
            label="Where the models disagree most", interactive=False, wrap=True
        )
        csv_file = gr.File(label="All predictions (CSV)", interactive=False)

    # -- handlers ----------------------------------------------------------------------------

    def refresh(gen_value: str | None, clf_value: str | None):
        found = list_choices()
        updates = []
        for approach, value in ((cv.GENERATIVE, gen_value), (cv.CLASSIFIER, clf_value)):
            paths = [path for _, path in found[approach]]
            keep = value if value in paths else first(found[approach])
            updates.append(gr.update(choices=found[approach], value=keep))
        return *updates, _adapters_note(found)

    def render_form(
        age, gender, lead, sms, scholarship, conditions, prior, missed, weekday, place, hour
    ):
        try:
            text, row = cv.render_form_statement(
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
            return gr.update(), gr.update(), error_box(user_message(e))
        return text, _row_state(text, row, "form"), info_box("Statement rendered from the form.")

    def use_record(rid, key):
        from noshow.ui.data_views import find_record

        try:
            entry = ctx.get_data(key)
            row = find_record(entry.frame, rid)
        except (LookupError, ValueError) as e:
            return gr.update(), gr.update(), error_box(user_message(e))
        text = str(row["statement"])
        return (
            text,
            _row_state(text, row, f"record {int(row['record_id'])}"),
            info_box(
                f"Statement of record {int(row['record_id'])} ({row.get('split', '?')} split)."
            ),
        )

    def use_example(index: int):
        ex = EXAMPLES[index]
        return ex.statement, _row_state(ex.statement, ex.row, f"example: {ex.title}")

    def compare(text, gen_path, clf_path, state, key):
        try:
            prepared, _ = cv.prepare_statement(text)
        except cv.CompareInputError as e:
            return "", None, error_box(str(e))
        row = None
        baseline = None
        if isinstance(state, dict) and state.get("statement") == prepared:
            row = state.get("row")
            try:
                baseline = baselines.get(ctx.get_data(key), timeout=BASELINE_WAIT_S)
            except Exception as e:  # noqa: BLE001 - no baseline, still compare the adapters
                baseline = cv.Baseline(error=f"tabular baseline unavailable: {user_message(e)}")
        try:
            result = cv.compare_statement(
                text, gen_path, clf_path, row=row, baseline=baseline, loader=loader
            )
        except cv.CompareInputError as e:
            return "", None, error_box(str(e))
        note = result.get("notice")
        return (
            cv.render_compare_html(result),
            cv.compare_summary(result),
            info_box(note) if note else "",
        )

    def compare_batch(
        gen_path,
        clf_path,
        rows_cap,
        use_gold,
        key,
        progress=gr.Progress(),  # noqa: B008 - how Gradio injects a progress bar
    ):
        empty = ("", None, None, None, None, None, None)
        try:
            entry = ctx.get_data(key)
            gold_labels = None
            if use_gold:
                if ctx.store is None:
                    raise cv.CompareInputError(
                        "The label store is off, so there is no gold set: start the app with a "
                        "writable NOSHOW_LABELS_DB."
                    )
                gold_labels = ctx.store.consensus_labels()
            cap = min(int(rows_cap or 1), row_cap)
            rows, notes = cv.select_eval_rows(entry.frame, cap, gold=gold_labels)
            progress(0.0, desc="Fitting the tabular baseline (once per data set)")
            baseline = baselines.get(entry)

            def report(fraction: float, what: str) -> None:
                progress(fraction, desc=what)

            result = cv.batch_compare(
                rows, gen_path, clf_path, baseline, loader=loader, on_progress=report
            )
            result.notes = notes + result.notes
            figures = cv.batch_figures(result)
            path = cv.write_predictions_csv(result.predictions)
        except Exception as e:  # noqa: BLE001 - every failure becomes a sentence
            return (*empty, error_box(user_message(e)))
        return (
            cv.batch_summary(result),
            result.metrics,
            figures["roc"],
            figures["calibration"],
            figures["confusion"],
            result.disagreements,
            str(path),
            "",
        )

    # -- wiring ------------------------------------------------------------------------------

    compare_inputs = [statement, gen_dd, clf_dd, row_state, ctx.data_key]
    compare_outputs = [result_html, summary_json, message]
    compare_btn.click(compare, compare_inputs, compare_outputs, api_name="compare")
    statement.submit(compare, compare_inputs, compare_outputs, api_visibility="private")
    form_btn.click(
        render_form,
        [f_age, f_gender, f_lead, f_sms, f_scholarship, f_conditions, f_prior, f_missed]
        + [f_weekday, f_place, f_hour],
        [statement, row_state, message],
        api_name="render_form_statement",
    )
    record_btn.click(
        use_record,
        [record_id, ctx.data_key],
        [statement, row_state, message],
        api_name="compare_record",
    )
    for index, btn in enumerate(example_btns):
        btn.click(
            functools.partial(use_example, index),
            None,
            [statement, row_state],
            api_visibility="private",
        ).then(compare, compare_inputs, compare_outputs, api_visibility="private")
    refresh_btn.click(
        refresh, [gen_dd, clf_dd], [gen_dd, clf_dd, adapters_msg], api_name="compare_adapters"
    )
    batch_btn.click(
        compare_batch,
        [gen_dd, clf_dd, max_rows, gold, ctx.data_key],
        [batch_summary, metrics_df, roc_plot, calib_plot, confusion_plot, disagree_df, csv_file]
        + [batch_msg],
        api_name="compare_batch",
    )
    root = gr.context.Context.root_block
    if root is not None:
        # New runs finish while the app is up: a page load lists them without a restart.
        root.load(
            refresh, [gen_dd, clf_dd], [gen_dd, clf_dd, adapters_msg], api_visibility="private"
        )

    parts = {
        "generative": gen_dd,
        "classifier": clf_dd,
        "statement": statement,
        "result": result_html,
    }
    ctx.extras["compare_adapters"] = (gen_dd, clf_dd)
    return parts


def _adapters_note(found: dict[str, list[tuple[str, str]]]) -> str:
    missing = [a for a in (cv.GENERATIVE, cv.CLASSIFIER) if not found.get(a)]
    if not missing:
        return ""
    return info_box(
        f"No finished {' or '.join(missing)} adapter yet: train one in the Train tab (the quick "
        "CPU demo takes a minute), then press Refresh."
    )
