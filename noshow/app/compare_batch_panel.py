"""The Compare tab's batch panel: evaluate both adapters, the tabular baseline and the hybrids
on the test split (or the clinicians' gold set), with a progress panel and Stop, then the
metrics, plots, disagreements and a CSV of every prediction. Layout and wiring only; the
work is `noshow.app.compare_batch`.

Endpoint (for gradio_client and tests): `/compare_batch(generative, classifier, max_rows,
gold_set, share_percent=10)` -> a generator: progress in the message, then (summary, metrics,
ROC, calibration, confusion, disagreements, CSV file, net benefit plot, its sentence,
capacity table, its sentence, capacity curve, subgroup model, subgroup table, its sentence,
message); `noshow.app.compare_clinical_panel` adds `/batch_capacity` and `/batch_subgroups`.

A batch runs as the scheduler's background work (`noshow.inference.serving.BackgroundJobs`,
one per browser session), in chunks behind the single Compares. Batches have their own
concurrency group, so they never hold up a Compare; the handler is a generator, so Gradio
stops it when its browser disconnects or Stop is pressed, and the job stops at its next
chunk.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from noshow.app.common import UIContext, error_box, info_box, request_owner, user_message
from noshow.app.compare_baseline import BaselineCache
from noshow.app.compare_batch import (
    DEFAULT_BATCH_ROWS,
    DEFAULT_BATCH_ROWS_CPU,
    BatchProgress,
    batch_compare,
    batch_figures,
    batch_speed_note,
    batch_summary,
    progress_html,
    select_eval_rows,
    write_predictions_csv,
)
from noshow.app.compare_clinical_panel import (
    BATCH_QUEUE,
    build_clinical_outputs,
    cleared_values,
    clinical_values,
    report_sent,
    report_starting,
    values_as_chosen,
    wire_clinical_controls,
    wire_explain,
)
from noshow.app.compare_input import BATCH_BUTTON, CompareInputError
from noshow.app.compare_stacked import stacked_cache

STOPPED_MESSAGE = f"Batch comparison stopped. Press {BATCH_BUTTON} to start a new one."
# A public Space shares one CPU between visitors: keep batch runs short there.
DEMO_BATCH_ROWS = 500
PROGRESS_EVERY_S = 0.5  # a batch yields this often: what lets Gradio notice a closed page


def _default_batch_rows(cap: int) -> int:
    """Where the rows slider starts: the GPU default with CUDA, else the CPU one, at most `cap`."""
    try:
        import torch

        gpu = torch.cuda.is_available()
    except Exception:  # noqa: BLE001 - torch missing: the CPU default
        gpu = False
    return min(DEFAULT_BATCH_ROWS if gpu else DEFAULT_BATCH_ROWS_CPU, cap)


def build_batch_panel(
    ctx: UIContext, baselines: BaselineCache, gen_dd: Any, clf_dd: Any
) -> dict[str, Any]:
    """Lay out the batch panel inside the current Blocks and wire its Run and Stop buttons;
    the adapters are the ones chosen in `gen_dd` / `clf_dd`, the baselines come from the
    tab's `baselines` cache. Returns the rows slider and `speed` (gen, clf) -> its update
    with the speed this machine measured (the tab calls it once the adapters have warmed up)."""
    from noshow.app.compare_slots import CLASSIFIER, GENERATIVE, load_slot

    service = ctx.adapters
    row_cap = DEMO_BATCH_ROWS if ctx.demo_mode else 5000
    finished: dict[tuple[str, str], tuple[int, float]] = {}  # (gen, clf) -> rows, seconds

    def speed(gen_path, clf_path):
        """The slider's info with this machine's measured speed for these adapters."""
        per: dict[str, float | None] = {}
        for approach, path in ((GENERATIVE, gen_path), (CLASSIFIER, clf_path)):
            predictor, _ = load_slot(path, approach, service)
            plain = getattr(predictor, "predictor", None)
            per[approach] = service.scheduler.seconds_per_statement(plain) if plain else None
        last = finished.get((str(gen_path), str(clf_path)))
        return gr.update(info=batch_speed_note(per, last))

    with gr.Accordion("Batch: evaluate on the test split", open=False, elem_id="compare-batch"):
        with gr.Row():
            max_rows = gr.Slider(
                10,
                row_cap,
                value=_default_batch_rows(row_cap),
                step=10,
                label="Rows to evaluate (at most)",
                info=batch_speed_note({GENERATIVE: None, CLASSIFIER: None}),
                elem_id="batch-rows",
            )
            gold = gr.Checkbox(
                False,
                label="Gold set: clinician-labelled records",
                info="Evaluate on records labelled in the Label tab, their consensus label "
                "replacing the data set's.",
            )
        with gr.Row():
            batch_btn = gr.Button(BATCH_BUTTON, variant="primary", elem_id="batch-run")
            stop_btn = gr.Button("Stop", variant="stop", elem_id="batch-stop")
        batch_msg = gr.HTML(elem_id="batch-progress")
        summary_md = gr.Markdown()
        metrics_df = gr.Dataframe(label="Metrics", interactive=False, wrap=True)
        with gr.Row():
            roc_plot = gr.Plot(label="ROC curves")
            calib_plot = gr.Plot(label="Calibration")
        confusion_plot = gr.Plot(label="Confusion matrices")
        clinical = build_clinical_outputs()  # net benefit, capacity, subgroups
        # per page, emptied when the page closes; the tests read it here
        ctx.batch_choices = clinical.chosen
        disagree_df = gr.Dataframe(
            label="Where the models disagree most", interactive=False, wrap=True
        )
        csv_file = gr.File(label="All predictions (CSV)", interactive=False)

    def compare_batch(gen_path, clf_path, rows_cap, use_gold, key, share, request: gr.Request):
        keep = [gr.skip()] * (7 + len(clinical.outputs))
        empty = ["", None, None, None, None, None, None, *cleared_values()]
        owner = request_owner(request)
        clinical.chosen.pop(owner, None)  # the share and model this batch starts from
        try:
            entry = ctx.get_data(key)
            gold_labels = None
            if use_gold:
                if ctx.store is None:
                    raise CompareInputError(
                        "The label store is off, so there is no gold set: start the app with a "
                        "writable NOSHOW_LABELS_DB."
                    )
                gold_labels = ctx.store.consensus_labels()
            cap = min(int(rows_cap or 1), row_cap)
            rows, notes = select_eval_rows(entry.frame, cap, gold=gold_labels)
            baselines.get(entry, timeout=0)  # the fit starts now, beside the adapters

            def evaluate(job):
                def report(progress: BatchProgress) -> None:
                    job.report(progress.done, progress.total, progress.phase, progress.eta_s)

                result = batch_compare(
                    rows,
                    gen_path,
                    clf_path,
                    lambda: baselines.get(entry),
                    tuned_baselines=baselines.tuned(entry, None),
                    stacked_models=stacked_cache(ctx.extras, baselines).source(entry, None),
                    source=service,
                    owner=owner,
                    on_progress=report,
                    should_stop=job.should_stop,
                )
                result.notes = notes + result.notes
                return (
                    result,
                    write_predictions_csv(result.predictions),
                    clinical_values(result, share),
                )

            job = service.jobs.start(owner, "batch comparison", evaluate)
        except Exception as e:  # noqa: BLE001 - every failure becomes a sentence
            yield (*keep, error_box(user_message(e)))  # a refused batch leaves results be
            return
        sent = None  # set while this batch's results go to the page (report_starting)
        try:
            yield (*empty, progress_html(job.snapshot()))
            while not job.wait(PROGRESS_EVERY_S):
                yield (*keep, progress_html(job.snapshot()))
            if job.state == "cancelled":
                yield (*empty, info_box(STOPPED_MESSAGE))
                return
            if job.state != "done":
                reason = user_message(job.error)
                yield (*empty, error_box(f"The batch comparison did not finish: {reason}."))
                return
            result, path, clinical_parts = job.result
            if result.predictions is not None and len(result.predictions):
                seconds = float(job.snapshot()["elapsed_s"])
                finished[(str(gen_path), str(clf_path))] = (len(result.predictions), seconds)
            # Two updates: the summary and what a clinic acts on first, then the metrics, the
            # ROC, calibration and confusion figures, the disagreements and the file (each
            # figure is drawn to an image and each table rendered by the browser: seconds
            # together on two cores). The last update carries every output, so an API
            # caller's result is whole.
            summary, marker = batch_summary(result), done_marker(result)
            sent = report_starting(clinical, owner)
            first = values_as_chosen(clinical, clinical_parts, owner, share)
            yield (summary, *[gr.skip()] * 6, *first, marker)
            figures = batch_figures(result)
            yield (
                summary,
                result.metrics,
                figures["roc"],
                figures["calibration"],
                figures["confusion"],
                result.disagreements,
                str(path),
                *values_as_chosen(clinical, clinical_parts, owner, share),
                marker,
            )
        finally:
            # GeneratorExit when the browser disconnects or Stop is pressed: end the job too.
            # Past the last yield, Gradio has sent it: a waiting redraw may go now.
            job.cancel()
            if sent is not None:
                report_sent(clinical, owner, sent)

    batch_btn.click(
        compare_batch,
        [gen_dd, clf_dd, max_rows, gold, ctx.data_key, clinical.share],
        [summary_md, metrics_df, roc_plot, calib_plot, confusion_plot, disagree_df, csv_file]
        + clinical.outputs
        + [batch_msg],
        api_name="compare_batch",
        **BATCH_QUEUE,
        show_progress="hidden",  # the progress panel in the message says more
    ).then(speed, [gen_dd, clf_dd], max_rows, api_visibility="private", show_progress="hidden")

    def stop_batch(request: gr.Request):
        """Cancel this browser's batch job; its generator then says "stopped" as its last
        message (a second writer of the message box could be overtaken by a progress line)."""
        for job in service.jobs.running(request_owner(request)):
            job.cancel()

    stop_btn.click(stop_batch, None, None, api_visibility="private", show_progress="hidden")
    wire_clinical_controls(clinical)
    wire_explain(clinical, ctx, baselines, gen_dd, clf_dd)  # the facts' average
    return {"max_rows": max_rows, "speed": speed}


def done_marker(result) -> str:
    """The batch message once the results are out: empty to the eye; it carries when the
    scores were ready and how long the report took after them (what a timing test reads)."""
    ready = float(result.timings.get("scores_ready_at") or 0) * 1000
    report = float(result.timings.get("report_s") or 0)
    return (
        f'<div class="noshow-batch-done" data-scores-ready-ms="{ready:.0f}" '
        f'data-report-s="{report:.3f}"></div>'
    )
