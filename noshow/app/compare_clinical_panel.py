"""The batch panel's part a clinic acts on: net benefit (plot and sentence), capacity (a
control for the share of appointments the clinic can call, a table for 5/10/20/30% and that
share, the no-shows-reached curve) and subgroups (a model picker, a table with intervals,
the differences in words). Layout and wiring only; the work is `noshow.app.compare_clinical`.

`build_clinical_outputs()` lays the components out inside the batch accordion;
`clinical_values(result, share, model)` gives their values in `outputs` order for the
batch's last yield; `wire_clinical_controls(parts)` redraws capacity and subgroups from the
batch kept in a gr.State, with no rescoring.

Endpoints: `/batch_capacity(share_percent)` -> (capacity table, sentence, curve) and
`/batch_subgroups(model)` -> (subgroup table, sentence), on the session's last batch.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import gradio as gr

from noshow.app.compare_clinical import (
    CAPACITY_DEFAULT,
    capacity_view,
    default_subgroup_model,
    net_benefit_view,
    subgroup_choices,
    subgroup_view,
)

# Batch evaluations and the facts' average share one queue: two at a time, one per session
# (noshow.inference.serving.BackgroundJobs). Every event in a Gradio concurrency group needs
# the same limit: the group takes the smallest, and an event left at the default (1) made it 1.
BATCH_QUEUE = {"concurrency_id": "compare_batch", "concurrency_limit": 2}

NO_BATCH = "Run a batch comparison first: these figures come from its scored rows."
EXPLAIN_ROWS = 50  # a CPU scores a batch's facts for 50 appointments in a few minutes


def build_clinical_outputs() -> SimpleNamespace:
    """Lay out the net benefit, capacity and subgroup parts (inside the current Blocks)."""
    parts = SimpleNamespace()
    parts.state = gr.State(None)  # the last batch's BatchClinical
    # {browser session: {"share": percent, "model": key}}: what its controls last asked for,
    # so a batch's later update redraws capacity and subgroups as the user has set them
    parts.chosen = {}
    # {browser session: Event}: set once its batch's last update has gone to the page; a
    # capacity or subgroup redraw made meanwhile waits for it, so that update cannot land
    # after the redraw and put the old share back
    parts.reporting = {}
    with gr.Group(elem_id="batch-clinical"):
        gr.Markdown("### Acting on the scores: calls, capacity and fairness")
        with gr.Row():
            parts.net_plot = gr.Plot(label="Net benefit", elem_id="batch-net-benefit")
        parts.net_text = gr.Markdown(elem_id="batch-net-benefit-text")
        parts.share = gr.Slider(
            1,
            50,
            value=round(CAPACITY_DEFAULT * 100),
            step=1,
            label="Appointments the clinic can call (% of the day's list)",
            info="E.g. 50 calls a day for 500 appointments: 10%. The table adds this share "
            "to 5, 10, 20 and 30%.",
            elem_id="batch-capacity-share",
        )
        parts.capacity_text = gr.Markdown(elem_id="batch-capacity-text")
        with gr.Row():
            parts.capacity_table = gr.Dataframe(
                label="No-shows reached when the top K% by P are called (95% CI)",
                interactive=False,
                wrap=True,
                elem_id="batch-capacity",
                scale=3,
            )
            parts.capacity_plot = gr.Plot(label="No-shows reached", scale=2)
        parts.model = gr.Dropdown(
            [],
            label="Subgroups of",
            info="The table shows one model; the sentences all.",
            elem_id="batch-subgroup-model",
        )
        parts.subgroup_text = gr.Markdown(elem_id="batch-subgroup-text")
        parts.subgroup_table = gr.Dataframe(
            label="By subgroup: ROC-AUC, observed and predicted no-shows, flagged (95% CI)",
            interactive=False,
            wrap=True,
            elem_id="batch-subgroups",
        )
        with gr.Row(equal_height=True):
            parts.explain_rows = gr.Number(
                EXPLAIN_ROWS,
                label="Appointments to explain (a sample of the batch)",
                info="Each fact of each appointment is set to its typical value and scored "
                "again: about a dozen scores per appointment and adapter.",
                precision=0,
                minimum=5,
                maximum=2000,
            )
            parts.explain_btn = gr.Button(
                "Which facts move the scores, on average?", elem_id="batch-explain"
            )
        parts.explain_msg = gr.HTML(elem_id="batch-explain-progress")
        parts.explain_plot = gr.Plot(
            label="Facts that move P(no-show), averaged", elem_id="batch-facts-plot"
        )
    parts.outputs = [
        parts.state,
        parts.net_plot,
        parts.net_text,
        parts.capacity_table,
        parts.capacity_text,
        parts.capacity_plot,
        parts.model,
        parts.subgroup_table,
        parts.subgroup_text,
    ]
    return parts


def clinical_values(result: Any, share_percent: Any = None) -> list[Any]:
    """Values for `parts.outputs` from a BatchResult (its `clinical`); a batch without them
    clears the parts."""
    clinical = getattr(result, "clinical", None)
    if clinical is None:
        return [None, None, "", None, "", None, gr.update(choices=[], value=None), None, ""]
    share = _share(share_percent)
    net_plot, net_text = net_benefit_view(clinical)
    table, text, curve = capacity_view(clinical, share)
    model = default_subgroup_model(clinical)
    sub_table, sub_text = subgroup_view(clinical, model)
    return [
        clinical,
        net_plot,
        net_text,
        table,
        text,
        curve,
        gr.update(choices=subgroup_choices(clinical), value=model),
        sub_table,
        sub_text,
    ]


def values_as_chosen(
    parts: SimpleNamespace, values: list[Any], owner: str, share_percent: Any
) -> list[Any]:
    """`values` (clinical_values of a batch, already sent once) for a later update of the
    same batch: capacity and subgroups redrawn for the share and model this browser session
    picked meanwhile, so that update never puts back what the user had just changed; each
    update a fresh copy (Gradio takes the value out of an update it sends)."""
    fresh = [dict(v) if isinstance(v, dict) else v for v in values]
    clinical, chosen = values[0], parts.chosen.get(owner, {})
    if clinical is None:
        return fresh
    if chosen.get("share") not in (None, share_percent):
        fresh[3:6] = capacity_view(clinical, _share(chosen["share"]))
    if chosen.get("model"):
        fresh[6] = gr.update(choices=subgroup_choices(clinical), value=chosen["model"])
        fresh[7:9] = subgroup_view(clinical, chosen["model"])
    return fresh


def cleared_values() -> list[Any]:
    """What the parts show while a new batch runs."""
    return [None, None, "", None, "", None, gr.update(choices=[], value=None), None, ""]


def _share(percent: Any) -> float:
    try:
        value = float(percent) / 100
    except (TypeError, ValueError):
        return CAPACITY_DEFAULT
    return min(max(value, 0.01), 1.0)


REPORT_WAIT_S = 60.0  # the longest a redraw waits for its batch's last update


def report_starting(parts: SimpleNamespace, owner: str) -> threading.Event:
    """Mark `owner`'s batch as sending its results; set the Event (`report_sent`) after the
    last of them has gone to the page."""
    sent = threading.Event()
    parts.reporting[owner] = sent
    return sent


def report_sent(parts: SimpleNamespace, owner: str, sent: threading.Event) -> None:
    sent.set()
    if parts.reporting.get(owner) is sent:
        parts.reporting.pop(owner, None)


def _after_report(parts: SimpleNamespace, owner: str) -> None:
    sent = parts.reporting.get(owner)
    if sent is not None:
        sent.wait(REPORT_WAIT_S)


def wire_clinical_controls(parts: SimpleNamespace) -> None:
    """Redraw capacity when the share moves and the subgroup table when the model changes,
    from the batch kept in `parts.state` (no rescoring)."""

    from noshow.app.common import request_owner

    def capacity(share_percent, clinical, request: gr.Request = None):
        owner = request_owner(request)
        parts.chosen.setdefault(owner, {})["share"] = share_percent
        _after_report(parts, owner)
        if clinical is None:
            return None, NO_BATCH, None
        return capacity_view(clinical, _share(share_percent))

    def subgroups(model, clinical, request: gr.Request = None):
        owner = request_owner(request)
        parts.chosen.setdefault(owner, {})["model"] = model
        _after_report(parts, owner)
        if clinical is None:
            return None, NO_BATCH
        return subgroup_view(clinical, model)

    parts.share.change(  # typed or dragged; only the last value of a drag is drawn
        capacity,
        [parts.share, parts.state],
        [parts.capacity_table, parts.capacity_text, parts.capacity_plot],
        api_name="batch_capacity",
        show_progress="minimal",
        trigger_mode="always_last",
        concurrency_limit=None,  # one may wait for its batch's last update (cheap otherwise)
    )
    parts.model.input(
        subgroups,
        [parts.model, parts.state],
        [parts.subgroup_table, parts.subgroup_text],
        api_name="batch_subgroups",
        show_progress="minimal",
        concurrency_limit=None,
    )

    def forget(request: gr.Request = None):
        """A closed page's choices go with it (the dict would otherwise grow per visitor)."""
        parts.chosen.pop(request_owner(request), None)

    gr.context.Context.root_block.unload(forget)


def wire_explain(
    parts: SimpleNamespace, ctx: Any, baselines: Any, gen_dd: Any, clf_dd: Any
) -> None:
    """The facts' average over a sample of the last batch's rows (noshow.app.compare_facts
    .batch_fact_effects): a background job of this session, its adapters' scores in the
    scheduler's background chunks, stopped with the page. Endpoint `/batch_facts(generative,
    classifier, rows)` -> (figure, message)."""
    from noshow.app.common import error_box, request_owner, user_message
    from noshow.app.compare_batch import progress_html
    from noshow.app.compare_facts import batch_fact_effects, plot_batch_effects, typical_values
    from noshow.app.compare_slots import CLASSIFIER, GENERATIVE, MODEL_NAMES, load_slot

    def explain(gen_path, clf_path, n, clinical, key, request: gr.Request):
        if clinical is None or clinical.rows is None:
            yield None, error_box(NO_BATCH)
            return
        owner = request_owner(request)
        service = ctx.adapters
        try:
            entry = ctx.get_data(key)
            typical = typical_values(entry.frame)
            count = max(1, min(int(n or EXPLAIN_ROWS), len(clinical.rows)))
            rows = clinical.rows.sample(n=count, random_state=0)

            def work(job):
                plain = {}
                for approach, path in ((GENERATIVE, gen_path), (CLASSIFIER, clf_path)):
                    predictor, _ = load_slot(path, approach, service)
                    if predictor is not None:
                        plain[approach] = getattr(predictor, "predictor", predictor)

                def score(model, statements):
                    if model not in plain:
                        return None
                    phase = f"Scoring the facts with the {model} adapter"
                    return service.scheduler.score_background(
                        plain[model],
                        statements,
                        owner,
                        on_chunk=lambda done, total: job.report(done, total, phase, None),
                        should_stop=job.should_stop,
                    )

                result = batch_fact_effects(rows, score, typical, baselines.get(entry))
                return plot_batch_effects(result, MODEL_NAMES)

            job = service.jobs.start(owner, "facts' average", work)
        except Exception as e:  # noqa: BLE001 - every failure becomes a sentence
            yield gr.skip(), error_box(user_message(e))
            return
        try:
            while not job.wait(0.5):
                yield gr.skip(), progress_html(job.snapshot())
            if job.state == "done":
                yield job.result, ""
            else:
                yield None, error_box(f"The facts' average did not finish: {job.state}.")
        finally:
            job.cancel()

    parts.explain_btn.click(
        explain,
        [gen_dd, clf_dd, parts.explain_rows, parts.state, ctx.data_key],
        [parts.explain_plot, parts.explain_msg],
        api_name="batch_facts",
        **BATCH_QUEUE,
        show_progress="hidden",
    )
