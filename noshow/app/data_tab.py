"""The Data tab: pick a source, read the cleaning report, browse a paged and filtered table,
see one record exactly as both models see it, and look at summary plots.

Endpoints (for gradio_client and tests): `/load_data`, `/filter_rows`, `/show_record`,
`/data_summary` (-> plot, caption). The handlers are thin; the logic is in
`noshow.app.data_views`.

Filters apply when a choice is made, a slider is let go, or Enter is pressed in a number box
(Gradio's slider applies its box only when focus leaves it: FILTER_KEYS_JS blurs it on
Enter). Filters that the loaded data has no column for are hidden, with a note saying why.

    from noshow.app.data_tab import build_data_tab
    with gr.Blocks() as demo:
        build_data_tab(ctx)            # ctx: noshow.app.common.UIContext
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import gradio as gr

from noshow.app import data_plots
from noshow.app import data_views as dv
from noshow.app.common import (
    DEFAULT_SOURCE,
    SYNTHETIC_SOURCE,
    DataEntry,
    UIContext,
    check_server_data_path,
    error_box,
    ok_box,
    synthetic_banner,
    user_message,
)

SOURCE_DEFAULT = "Default"
SOURCE_SYNTHETIC = "Bundled synthetic"
SOURCE_UPLOAD = "Upload a file"
SOURCE_PATH = "Path on the server"
# Order of the filter inputs in every handler below (matches dv.filter_frame's keywords).
FILTER_NAMES = (
    "split",
    "label",
    "age_min",
    "age_max",
    "gender",
    "sms",
    "scholarship",
    "neighbourhood",
    "lead_min",
    "lead_max",
)


# Enter in a filter's number box applies it: the slider reads its box on blur (its `release`
# event), so blur and focus again; the caret stays where the user typed.
FILTER_KEYS_JS = """
if (!window.__noshowFilterKeys) {
  window.__noshowFilterKeys = true;
  document.addEventListener("keydown", (ev) => {
    if (ev.key !== "Enter" || ev.isComposing) return;
    const t = ev.target;
    if (!t || t.tagName !== "INPUT" || t.type !== "number" || !t.closest("#data-filters")) return;
    ev.preventDefault();
    t.blur();
    t.focus();
  });
}
"""


def source_choices(demo_mode: bool) -> list[str]:
    # A public Space must not read arbitrary server files on a visitor's request.
    base = [SOURCE_DEFAULT, SOURCE_SYNTHETIC, SOURCE_UPLOAD]
    return base if demo_mode else [*base, SOURCE_PATH]


def resolve_source(kind: str, upload: Any, path: str | None, demo_mode: bool) -> str:
    """The `load_data` source for the picker's state; ValueError with a hint when incomplete."""
    if kind in (None, "", SOURCE_DEFAULT):
        return DEFAULT_SOURCE
    if kind == SOURCE_SYNTHETIC:
        return SYNTHETIC_SOURCE
    if kind == SOURCE_UPLOAD:
        file_path = getattr(upload, "name", None) or upload
        if not file_path:
            raise ValueError("Choose a CSV or Parquet file to upload first.")
        return str(file_path)
    if kind == SOURCE_PATH:
        if demo_mode:
            raise ValueError("Reading files from the server is turned off in demo mode.")
        if not path or not str(path).strip():
            raise ValueError("Type the path of a CSV or Parquet file on the server.")
        return check_server_data_path(path)
    raise ValueError(
        f"Unknown data source {kind!r}; pick one of {', '.join(source_choices(False))}."
    )


def _define_unchecked_slider() -> type:
    """gr.Slider whose typed value reaches the handler as typed: Gradio's own check refuses a
    value out of range with a pop-up that names no field (and an emptied box with a
    TypeError), where the handler names the filter and its range
    (`data_views.filter_problem`). A subclass, because Gradio rebuilds a component from its
    class on every update it gets (a per-instance override is lost at the first one); its
    metaclass would write a stub file beside this source file, so that step is skipped."""
    from gradio import component_meta

    write_stub = component_meta.create_or_modify_pyi
    component_meta.create_or_modify_pyi = lambda *args, **kwargs: None
    try:

        class UncheckedSlider(gr.Slider):
            is_template = True  # drawn by the browser as a plain slider

            def preprocess(self, payload: float | None) -> float | None:
                if payload is None:
                    return None
                return gr.Number.round_to_precision(payload, self.precision)

    finally:
        component_meta.create_or_modify_pyi = write_stub
    return UncheckedSlider


UncheckedSlider = _define_unchecked_slider()


def build_data_tab(ctx: UIContext) -> dict[str, Any]:
    """Lay out the Data tab inside the current Blocks and wire its events; returns its
    components by name (build_demo uses `load_event` to chain start-up work)."""
    key_state = ctx.data_key

    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            source_kind = gr.Radio(
                source_choices(ctx.demo_mode),
                value=SOURCE_DEFAULT,
                label="Data source",
                info="Default: NOSHOW_DATA, then data/KaggleV2-May-2016.csv, then synthetic.",
            )
            upload = gr.File(
                label="Kaggle CSV, or a Statement/NoShow CSV or Parquet",
                file_types=[".csv", ".parquet"],
                visible=False,
                elem_id="data-upload",
            )
            path = gr.Textbox(
                label="Path on the server",
                placeholder="/data/KaggleV2-May-2016.csv",
                visible=False,
            )
            split_method = gr.Radio(
                ["time", "patient", "random"],
                value="time",
                label="Split",
                info="time: test = appointments from 2016-05-30 on; patient: grouped by patient.",
            )
            load_btn = gr.Button("Load data", variant="primary")
            message = gr.HTML()
        with gr.Column(scale=3, min_width=360):
            report = gr.Markdown("Loading the default data set…")

    with gr.Accordion("Filters", open=True, elem_id="data-filters"):
        filter_note = gr.Markdown(visible=False, elem_id="data-filter-note")
        with gr.Row():
            f_split = gr.Dropdown(dv.SPLIT_CHOICES, value=dv.ALL, label="Split", min_width=110)
            f_label = gr.Dropdown(dv.LABEL_CHOICES, value=dv.ALL, label="Label", min_width=120)
            f_gender = gr.Dropdown(
                dv.GENDER_CHOICES,
                value=dv.ALL,
                label="Gender",
                min_width=90,
                elem_id="data-filter-gender",
            )
            f_sms = gr.Dropdown(dv.YES_NO_CHOICES, value=dv.ALL, label="SMS", min_width=90)
            f_scholarship = gr.Dropdown(
                dv.YES_NO_CHOICES, value=dv.ALL, label="Scholarship", min_width=110
            )
            f_neighbourhood = gr.Dropdown(
                [dv.ALL], value=dv.ALL, label="Neighbourhood", min_width=180, filterable=True
            )
        with gr.Row():
            # Sliders, not empty number boxes: the browser sends an empty gr.Number as 0.
            f_age_min, f_age_max, f_lead_min, f_lead_max = (
                UncheckedSlider(
                    lo,
                    hi,
                    value=dv.FILTER_DEFAULTS[name],
                    step=1,
                    label=label,
                    elem_id=f"data-{name}",
                )
                for name, (label, lo, hi) in dv.NUMBER_FILTERS.items()
            )
            reset_btn = gr.Button("Clear filters", size="sm", min_width=100, scale=0)
        gr.HTML("", js_on_load=FILTER_KEYS_JS, elem_id="data-filter-keys")

    with gr.Row(equal_height=True):
        caption = gr.Markdown(elem_id="data-caption")
        prev_btn = gr.Button("◀ Previous", size="sm", min_width=90, scale=0)
        page = gr.Number(value=1, label="Page", precision=0, min_width=80, scale=0)
        next_btn = gr.Button("Next ▶", size="sm", min_width=90, scale=0)
    table = gr.DataFrame(
        label="Appointments (click a row to see what the models read)",
        interactive=False,
        wrap=False,
        max_height=460,
        max_chars=dv.STATEMENT_PREVIEW_CHARS + 2,
        elem_id="data-table",
    )

    with gr.Group():
        with gr.Row(equal_height=True):
            record_id = gr.Number(label="Record id", precision=0, min_width=160, scale=1)
            show_btn = gr.Button("Show record", scale=0, min_width=140)
        record_details = gr.Markdown()
    with gr.Row():
        statement = gr.Textbox(label="Statement", lines=7, elem_classes="noshow-mono")
        gen_prompt = gr.Textbox(
            label="Generative prompt (bundled model's chat template)",
            lines=7,
            elem_classes="noshow-mono",
            elem_id="data-prompt",
            buttons=["copy"],
        )
        clf_input = gr.Textbox(
            label="Classifier input", lines=7, elem_classes="noshow-mono", buttons=["copy"]
        )

    with gr.Accordion("Summary plots", open=True):
        plot_btn = gr.Button("Plot the filtered rows", size="sm")
        plot_caption = gr.Markdown(elem_id="data-plot-caption")
        summary_plot = gr.Plot(
            label="No-show rate by feature; class balance per split", show_label=False
        )

    filters = [
        f_split,
        f_label,
        f_age_min,
        f_age_max,
        f_gender,
        f_sms,
        f_scholarship,
        f_neighbourhood,
        f_lead_min,
        f_lead_max,
    ]
    # Shown or hidden with the loaded data's columns (the neighbourhood with its choices).
    other_filters = [f for f in filters if f is not f_neighbourhood]
    availability_outputs = [*other_filters, filter_note]

    # -- handlers -----------------------------------------------------------------------
    # Public handlers take named parameters (they become the API's parameter names); the
    # session's data key (a gr.State, invisible to API clients) always comes last.

    def entry_for(key: str | None) -> DataEntry | None:
        try:
            return ctx.get_data(key)
        except Exception:  # noqa: BLE001 - callers show a message instead
            return None

    def rows_page(key: str | None, filter_values: dict[str, Any], page_no: Any) -> tuple:
        entry = entry_for(key)
        if entry is None:
            return None, "No data loaded: pick a source and press **Load data**.", 1
        rows = dv.filter_frame(entry.frame, **filter_values)
        shown, page_no, n_pages = dv.page_of(rows, page_no)
        caption = dv.page_caption(len(rows), page_no, n_pages)
        return (
            dv.table_view(shown),
            caption + dv.ignored_filters_text(entry.frame, filter_values),
            page_no,
        )

    def neighbourhood_update(entry: DataEntry) -> Any:
        return gr.update(
            choices=dv.neighbourhood_choices(entry.frame),
            value=dv.ALL,
            visible="neighbourhood" not in dv.unavailable_filters(entry.frame),
        )

    def filter_updates(entry: DataEntry | None) -> list:
        """Visibility (and, when hidden, the open value) of every filter but the
        neighbourhood (its update comes with its choices), then the note saying why."""
        if entry is None:
            return [gr.skip()] * len(other_filters) + [gr.skip()]
        hidden = set(dv.unavailable_filters(entry.frame))
        updates = [
            gr.update(visible=False, value=dv.FILTER_DEFAULTS[name])
            if name in hidden
            else gr.update(visible=True)
            for name in FILTER_NAMES
            if name != "neighbourhood"
        ]
        note = dv.unavailable_filters_note(entry.frame, entry.label)
        return [*updates, gr.update(value=note, visible=bool(note))]

    def load_data(
        kind: str = SOURCE_DEFAULT,
        upload_file: Any = None,
        path_text: str | None = None,
        method: str = "time",
        data_key: str | None = None,
    ) -> tuple:
        """Load and split a data set; on bad input keep the previous data and say why."""
        source = label = None
        try:
            source = resolve_source(kind, upload_file, path_text, ctx.demo_mode)
            if kind == SOURCE_UPLOAD:
                label = getattr(upload_file, "orig_name", None) or Path(source).name
            entry = dv.load_entry(ctx.cache, source, split_method=method or "time", label=label)
            if label and entry.label != label:
                # The same content uploaded before under another name (the cache is keyed by
                # content): this session sees its own file's name, never another visitor's.
                entry = ctx.cache.put(
                    dataclasses.replace(entry, key=f"{entry.key}::{label}", label=label)
                )
        except Exception as e:  # noqa: BLE001 - shown as a message, previous data kept
            previous = ctx.cache.get(data_key)
            kept = f" Still showing {previous.label}." if previous else ""
            text = user_message(e)
            if kind == SOURCE_UPLOAD and label:
                text = text.replace(source, label)  # the upload's name, not a server temp path
            return data_key, error_box(text + kept), gr.skip(), gr.skip(), gr.skip()
        msg = f"Loaded {entry.label}: {len(entry.frame):,} rows, {entry.split_method} split."
        return (
            entry.key,
            ok_box(msg),
            synthetic_banner(entry.loaded.is_synthetic),
            dv.report_markdown(entry),
            neighbourhood_update(entry),
        )

    def filter_rows(
        split: str = dv.ALL,
        label: str = dv.ALL,
        age_min: float | None = None,
        age_max: float | None = None,
        gender: str = dv.ALL,
        sms: str = dv.ALL,
        scholarship: str = dv.ALL,
        neighbourhood: str = dv.ALL,
        lead_min: float | None = None,
        lead_max: float | None = None,
        data_key: str | None = None,
        page: int | None = 1,
        summary: bool = False,
    ) -> tuple:
        """One page (50 rows) of the rows that match the filters, a caption and the page."""
        form = locals()
        filter_values = {n: form[n] for n in FILTER_NAMES}
        if problem := dv.filter_problem(filter_values):  # the table stays as it was
            return (gr.skip(), error_box(problem)) + (() if summary else (gr.skip(),))
        if not summary:
            return rows_page(data_key, filter_values, page)
        entry = entry_for(data_key)
        if entry is None:
            return None, "No data loaded."
        return data_plots.summary_view(entry.frame, filter_values, entry.label)

    # The summary reads the same filters, so the API gives it the same parameter names.
    data_summary = functools.partial(filter_rows, summary=True)
    data_summary.__doc__ = """Summary plots of the rows that match the filters, and a caption
    saying what they show (with the Label filter on, the rates are over the rows of the other
    filters)."""

    def show_record(record_id: int | None = None, data_key: str | None = None) -> tuple:
        """The record's details, statement, generative prompt and classifier input."""
        entry = entry_for(data_key)
        if entry is None:
            return error_box("No data loaded."), "", "", ""
        try:
            view = dv.record_views(dv.find_record(entry.frame, record_id))
        except LookupError as e:
            return error_box(str(e.args[0])), "", "", ""
        return (
            f"Record **{view.record_id}** · " + view.details,
            view.statement,
            view.generative_prompt,
            view.classifier_input,
        )

    def startup(data_key: str | None) -> tuple:
        """On page load: show the session's data (or the start-up data) without a click."""
        try:
            entry = ctx.get_data(data_key)
        except Exception as e:  # noqa: BLE001 - the message says how to fix the source
            failed = (data_key, error_box(user_message(e)), "", "No data loaded.", gr.skip())
            return (*failed, *filter_updates(None))
        return (
            entry.key,
            "",
            synthetic_banner(entry.loaded.is_synthetic),
            dv.report_markdown(entry),
            neighbourhood_update(entry),
            *filter_updates(entry),
        )

    def show_available_filters(key: str | None) -> list:
        return filter_updates(entry_for(key))

    def first_page(*values: Any) -> tuple:
        *filter_values, key = values
        return rows_page(key, dict(zip(FILTER_NAMES, filter_values, strict=True)), 1)

    def show_first(*values: Any) -> tuple:
        """Fill the record view with the first matching row, so the page never looks empty."""
        *filter_values, key = values
        entry = entry_for(key)
        if entry is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        rows = dv.filter_frame(entry.frame, **dict(zip(FILTER_NAMES, filter_values, strict=True)))
        if rows.empty:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        rid = int(rows["record_id"].iloc[0])
        return (rid, *show_record(rid, key))

    def summary_of(*values: Any) -> Any:
        *filter_values, key = values
        return data_summary(*filter_values, data_key=key)

    def step_page(delta: int):
        def handler(*values: Any) -> tuple:
            *filter_values, page_no, key = values
            filters_dict = dict(zip(FILTER_NAMES, filter_values, strict=True))
            return rows_page(key, filters_dict, int(page_no or 1) + delta)

        return handler

    def pick_row(evt: gr.SelectData) -> Any:
        row = evt.row_value or []
        return row[0] if row else gr.skip()

    def toggle_source(kind: str) -> tuple:
        return gr.update(visible=kind == SOURCE_UPLOAD), gr.update(visible=kind == SOURCE_PATH)

    def clear_filters() -> list:
        return [dv.ALL, dv.ALL, 0, dv.AGE_MAX, dv.ALL, dv.ALL, dv.ALL, dv.ALL, 0, dv.LEAD_MAX]

    # -- wiring (public endpoints first, so they keep their exact api_names) --------------

    table_outputs = [table, caption, page]
    record_outputs = [record_details, statement, gen_prompt, clf_input]
    load_event = load_btn.click(
        load_data,
        [source_kind, upload, path, split_method, key_state],
        [key_state, message, ctx.banner, report, f_neighbourhood],
        api_name="load_data",
    )
    gr.on(
        [f.release if isinstance(f, gr.Slider) else f.input for f in filters] + [page.submit],
        filter_rows,
        [*filters, key_state, page],  # the State is no API input: `page` stays last there
        table_outputs,
        api_name="filter_rows",
        trigger_mode="always_last",  # a filter changed while the last one is applied counts
    )
    gr.on(
        [show_btn.click, record_id.submit],
        show_record,
        [record_id, key_state],
        record_outputs,
        api_name="show_record",
    )
    plot_outputs = [summary_plot, plot_caption]
    plot_btn.click(data_summary, [*filters, key_state], plot_outputs, api_name="data_summary")

    source_kind.change(
        toggle_source, source_kind, [upload, path], api_visibility="private", queue=False
    )
    load_event.then(
        show_available_filters, key_state, availability_outputs, api_visibility="private"
    ).then(first_page, [*filters, key_state], table_outputs, api_visibility="private").then(
        show_first, [*filters, key_state], [record_id, *record_outputs], api_visibility="private"
    ).then(summary_of, [*filters, key_state], plot_outputs, api_visibility="private")
    reset_btn.click(clear_filters, None, filters, api_visibility="private").then(
        first_page, [*filters, key_state], table_outputs, api_visibility="private"
    )
    prev_btn.click(
        step_page(-1), [*filters, page, key_state], table_outputs, api_visibility="private"
    )
    next_btn.click(
        step_page(+1), [*filters, page, key_state], table_outputs, api_visibility="private"
    )
    table.select(pick_row, None, record_id, api_visibility="private").then(
        lambda rid, key: show_record(rid, key),
        [record_id, key_state],
        record_outputs,
        api_visibility="private",
    )

    return {
        "startup": startup,
        "startup_inputs": [key_state],
        "startup_outputs": [
            key_state,
            message,
            ctx.banner,
            report,
            f_neighbourhood,
            *availability_outputs,
        ],
        "first_page": first_page,
        "summary_of": summary_of,
        "show_first": show_first,
        "record_outputs": [record_id, *record_outputs],
        "filter_inputs": [*filters, key_state],
        "table_outputs": table_outputs,
        "summary_plot": plot_outputs,
    }
