"""The Train tab: configure a run, check it fits (preflight), start it in the background,
watch it live, cancel it, and list past runs. Layout and wiring only; the form <-> RunConfig
is `noshow/app/train_form.py`, what Preflight check and Start do `noshow/app/train_actions.py`,
the wording, curves and runs table `noshow/app/train_views.py`.

The form's fields, defaults, choices and help text derive from `noshow.config.options()` and
its preset buttons from `noshow.config.RUN_PRESETS`, like scripts/train.py's flags. On a
machine without a GPU the form opens on the quick CPU preset and says so. The form's values
are kept in the browser (`gr.BrowserState`), so a reload keeps them.

Preflight check measures (`noshow.training.preflight.estimate_resources(measure=True)`: a
few steps of the real recipe, up to a minute on a CPU, shown as it goes; the answer is cached
per machine and configuration); Start training never measures (cached or rough), and no
measurement runs while a job trains (it would compete with the job). A run the preflight
calls longer than a day, or one evaluated on fewer than 100 rows, is not started at once:
Start says why and shows *Start anyway* (a second Start within two minutes does the same).

Training runs in the `JobManager`'s thread, never in a Gradio handler; the page polls
`JobManager.snapshot()` with a `gr.Timer`, so reloading the page or opening it in another
browser re-attaches to the running job. In demo mode the controls are hidden and the start
and cancel endpoints refuse.

When more than one CUDA device is visible, a "GPUs" input appears (and `/start_training`
takes a last `gpus` parameter): with n > 1 the JobManager runs torchrun with n processes in
the same run folder, and the page shows its progress and cancels it the same way.

Endpoints: `/preflight`, `/start_training` (`/start_training_anyway`: the same parameters,
answering Start's question), `/cancel_training`, `/training_status`, `/list_runs`.
"""

from __future__ import annotations

import functools
import threading
import time
from typing import Any

import gradio as gr
import pandas as pd

from noshow.app import train_form as tf
from noshow.app import train_views as tv
from noshow.app.common import UIContext, error_box, info_box
from noshow.app.train_actions import TrainActions
from noshow.config import RUN_PRESETS

PLOT_EVERY_S = 3.0
# The form is kept in the browser's localStorage under this key. A fixed secret keeps it
# readable after an app restart (a random one would forget the form each time); it holds
# only training options, nothing private.
FORM_STORAGE_KEY = "noshow-train-form"
FORM_STORAGE_SECRET = "noshow-train-tab"
RESTORED_NOTE = "_The form shows the values you last used in this browser._"


def gpu_count() -> int:
    """CUDA devices visible to the app (no torch import on a machine without one)."""
    from noshow.training.distributed import visible_gpu_count

    return visible_gpu_count()


def build_train_tab(ctx: UIContext) -> dict[str, Any]:
    """Lay out the Train tab inside the current Blocks and wire its events."""
    from noshow.modeling.presets import PRESETS

    jobs = ctx.jobs
    runs_dir = ctx.runs_dir
    n_gpus = gpu_count()
    first_preset = tf.start_preset(cuda=n_gpus > 0)
    start = tf.form_defaults(cuda=n_gpus > 0)
    opt, info = tf.form_option, tf.form_info
    start_note = tf.cpu_start_note(start["approach"]) if first_preset else ""

    label = tf.FORM_LABELS

    def whole_number(name: str) -> gr.Number:
        """A form box for a whole-number option, starting at its form default. No minimum
        here: Gradio would refuse with a pop-up that names no field; build_run_config's
        refusal names the field and its range in the action box."""
        return gr.Number(value=start[name], label=label[name], precision=0, info=info(name))

    if ctx.demo_mode:
        gr.HTML(info_box(tv.DEMO_REFUSAL))
    with gr.Column(visible=not ctx.demo_mode) as controls:
        form_note = gr.Markdown(start_note, visible=bool(start_note), elem_id="train-form-note")
        with gr.Row():
            preset_buttons = {
                name: gr.Button(f"Preset: {tf.PRESET_LABELS.get(name, name)}", size="sm")
                for name in RUN_PRESETS
            }
        with gr.Row():
            approach = gr.Radio(
                list(opt("approach").choices),
                value=start["approach"],
                label=label["approach"],
                info=info("approach"),
            )
            model = gr.Dropdown(
                list(PRESETS),
                value=start["model"],
                label=label["model"],
                allow_custom_value=True,
                info=info("model"),
            )
            quantize = gr.Radio(
                list(opt("quantize").choices),
                value=start["quantize"],
                label=label["quantize"],
                info=info("quantize"),
            )
        model_note = gr.Markdown(tf.describe_model_choice(start["model"], PRESETS))
        with gr.Row():
            data_source = gr.Dropdown(
                list(tf.SOURCE_CHOICES),
                value=tf.SOURCE_DATA_TAB,
                label=label["data_source"],
                allow_custom_value=not ctx.demo_mode,
                info="Or type the path of a CSV/Parquet file on the server.",
            )
            split = gr.Radio(
                list(opt("split").choices),
                value=start["split"],
                label=label["split"],
                info=info("split"),
            )
            max_train_rows = whole_number("max_train_rows")
            max_eval_rows = whole_number("max_eval_rows")
        with gr.Row():
            epochs = gr.Number(value=start["epochs"], label=label["epochs"], info=info("epochs"))
            max_steps = whole_number("max_steps")
            lr = gr.Number(value=start["lr"], label=label["lr"], info=info("lr"))
            batch_size = whole_number("batch_size")
            lora_r = whole_number("lora_r")
            eval_every = whole_number("eval_every")
        with gr.Row():
            wandb = gr.Checkbox(value=start["wandb"], label=label["wandb"], info=info("wandb"))
            use_labels = gr.Checkbox(
                value=start["use_clinician_labels"],
                label=label["use_clinician_labels"],
                info=info("use_clinician_labels"),
            )
            gpus = None
            if n_gpus > 1:  # one GPU or none: nothing to choose, so no control
                gpus = gr.Number(
                    value=1,
                    label="GPUs",
                    precision=0,
                    info=f"data-parallel with torchrun ({n_gpus} visible); the batch is split",
                )
        with gr.Row():
            preflight_btn = gr.Button("Preflight check", variant="secondary")
            start_btn = gr.Button("Start training", variant="primary")
            # Shown under Start's question about a run longer than a day or evaluated on a
            # handful of rows (noshow.app.train_actions); a second Start answers it too.
            anyway_btn = gr.Button("Start anyway", variant="primary", visible=False)
            cancel_btn = gr.Button("Cancel", variant="stop")
        action_msg = gr.HTML(elem_id="train-action")
        # How the job the action box spoke of ended: the timer writes it here, and its change
        # moves it into the box. (The timer never outputs to the box itself: a tick would
        # replace the progress a preflight shows there.)
        job_ended = gr.Textbox(visible="hidden", elem_id="train-job-ended")

    gr.Markdown("### Current job")
    status_html = gr.HTML(elem_id="train-status")
    with gr.Row():
        curves = gr.Plot(label="Loss and validation ROC-AUC", show_label=False, scale=3)
        with gr.Column(scale=2):
            wandb_md = gr.Markdown()
            log_box = gr.Textbox(
                label="Log (last 50 lines)",
                lines=14,
                max_lines=14,
                autoscroll=True,
                elem_classes="noshow-mono",
            )
    with gr.Accordion("Raw job status (JSON)", open=False):
        status_json = gr.JSON()
    gr.Markdown("### Runs")
    with gr.Row():
        runs_df = gr.DataFrame(
            label=f"Run folders in {runs_dir}", interactive=False, max_height=320, wrap=False
        )
    refresh_runs = gr.Button("Refresh runs", size="sm")
    plot_key = gr.State(None)
    # The run the action box spoke of last (started or cancelling): when it ends, the box says so.
    awaiting = gr.State(None)
    asked = gr.State(None)  # Start's open question (train_actions.StartAnswer.asked)
    saved_form = gr.BrowserState({}, storage_key=FORM_STORAGE_KEY, secret=FORM_STORAGE_SECRET)
    form_restored = gr.State(False)
    timer = gr.Timer(1.0)

    form = {
        "approach": approach,
        "model": model,
        "data_source": data_source,
        "split": split,
        "max_train_rows": max_train_rows,
        "max_eval_rows": max_eval_rows,
        "epochs": epochs,
        "max_steps": max_steps,
        "lr": lr,
        "batch_size": batch_size,
        "lora_r": lora_r,
        "eval_every": eval_every,
        "quantize": quantize,
        "wandb": wandb,
        "use_clinician_labels": use_labels,
    }
    config_inputs = [form[name] for name in tf.FORM_FIELDS]
    ctx.extras["train_form"] = form  # tests compare the form as built with the config

    actions = TrainActions(ctx, n_gpus=n_gpus)

    # -- handlers (named parameters become the API's parameter names) -------------------

    def start_training(
        approach,
        model,
        data_source,
        split,
        max_train_rows,
        max_eval_rows,
        epochs,
        max_steps,
        lr,
        batch_size,
        lora_r,
        eval_every,
        quantize,
        wandb,
        use_clinician_labels,
        data_key=None,
        question=None,
        gpus=1,
        anyway=False,
        check_only=False,
    ) -> Any:
        """Check the configuration (no measurement: a cached one or a rough figure) and
        start it in the background (refused in demo mode); a run over a day or evaluated on
        fewer than 100 rows starts on a second Start or Start anyway. Returns the message,
        the run the action box follows from now on (None: no job) and Start's open question
        (None: none)."""
        form_now = locals()
        values = {name: form_now[name] for name in tf.FORM_FIELDS}
        if check_only:  # Preflight check: the same form, measured instead of started
            return actions.preflight(values, data_key)
        if ctx.demo_mode:
            return error_box(tv.DEMO_REFUSAL), None, None
        answer = actions.start(values, data_key, gpus, asked=question, anyway=anyway)
        return answer.message, answer.run_id, answer.asked

    # The Preflight check reads the same form, so the API gives it the same parameter names.
    preflight = functools.partial(start_training, check_only=True)
    preflight.__doc__ = """Will this configuration fit, and how long will it take? Measures a few
    steps of it on this machine when no measurement is cached (up to a minute on a CPU; never
    while a job trains); says why when it will not fit."""

    def cancel_training() -> tuple[str, str | None]:
        """Ask the running job to stop after its current step (refused in demo mode)."""
        if ctx.demo_mode:
            return error_box(tv.DEMO_REFUSAL), None
        snap = jobs.snapshot()
        if jobs.cancel():
            message = f"Cancelling run {snap['run_id']}: it stops after the current step."
            return info_box(message), snap["run_id"]
        return info_box("No training job is running."), None

    plot_lock = threading.Lock()
    plot_cache: dict[str, Any] = {}
    report_cache: dict[str, Any] = {}

    def read_report(snap: dict[str, Any]) -> dict[str, Any] | None:
        """The ended run's eval.json (read once per run and state)."""
        from noshow.training.runs import read_eval

        if snap.get("active") or not snap.get("run_dir"):
            return None
        key = f"{snap['run_dir']}|{snap.get('state')}"
        if report_cache.get("key") != key:
            try:
                report = read_eval(snap["run_dir"])
            except Exception:  # noqa: BLE001 - a damaged eval.json: the Runs table says why
                report = None
            report_cache.update(key=key, report=report)
        return report_cache["report"]

    def training_status(last_plot: Any = None, waiting_for: Any = None) -> tuple:
        """The job's snapshot, summary (the test ROC-AUC next to the baseline once it has
        ended), log, W&B link, curves (redrawn at most every few seconds while running) and,
        when the job the action box spoke of has ended, the action box's new message."""
        snap = jobs.snapshot()
        report = read_report(snap)
        ended = bool(waiting_for) and snap.get("run_id") == waiting_for and not snap["active"]
        if ended:
            action, still_waiting = tv.describe_job_end(snap, report), None
        else:
            action, still_waiting = gr.skip(), gr.skip()
        parts = (
            snap,
            tv.describe_status(snap, report),
            "\n".join(snap.get("log") or []),
            tv.wandb_markdown(snap.get("run_dir"), snap.get("config")),
        )
        frame = tv.curves_frame(snap) if snap.get("run_id") else pd.DataFrame()
        key = f"{snap.get('run_id')}|{len(frame)}|{snap.get('state')}|{report is not None}"
        last = last_plot if isinstance(last_plot, dict) else {}
        same_view = last.get("view") == (snap.get("run_id"), snap.get("state"))
        now = time.time()
        if key == last.get("key") or (same_view and now - last.get("t", 0) < PLOT_EVERY_S):
            # Unchanged, or changed too recently: a PNG per second per browser is wasted work.
            return (*parts, gr.skip(), action, last, still_waiting)
        if not snap.get("run_id"):
            figure = None
        else:
            with plot_lock:  # one figure per change, shared by every open browser
                if plot_cache.get("key") != key:
                    # A running or completed run's axis spans its planned steps; a
                    # cancelled one's the steps it made (5000 planned, 70 made: 70).
                    planned = snap.get("active") or snap.get("state") == "completed"
                    total = (snap.get("progress") or {}).get("total_steps") if planned else None
                    plot_cache.update(
                        key=key, figure=tv.training_curves_figure(frame, total, report)
                    )
                figure = plot_cache["figure"]
        new_last = {"key": key, "view": (snap.get("run_id"), snap.get("state")), "t": now}
        return (*parts, figure, action, new_last, still_waiting)

    def list_runs() -> pd.DataFrame:
        """Past runs in the runs folder, newest first."""
        return tv.runs_table(runs_dir)

    def apply_preset(name: str, current_approach: str) -> list:
        values = tf.preset_values(name, current_approach)
        return [values[field] for field in tf.PRESET_FIELDS]

    def save_form(*values: Any) -> tuple[dict[str, Any], bool]:
        # Saving counts as restored: a later change of the stored value is this save's echo.
        return dict(zip(tf.FORM_FIELDS, values, strict=True)), True

    def restore_form(saved: Any, done: bool) -> list:
        """The form as last used in this browser, once per page (later changes of the
        stored value are the page's own saves)."""
        values = tf.restore_form(saved, demo_mode=ctx.demo_mode)
        if done or not values:
            return [gr.skip()] * (len(config_inputs) + 1) + [done]
        note = "\n\n".join(part for part in (start_note, RESTORED_NOTE) if part)
        restored = [values.get(name, gr.skip()) for name in tf.FORM_FIELDS]
        return [*restored, gr.update(value=note, visible=True), True]

    # -- wiring -------------------------------------------------------------------------

    key_state = ctx.data_key
    model.change(
        lambda name: tf.describe_model_choice(name, PRESETS),
        model,
        model_note,
        api_visibility="private",
        queue=False,
    )
    preset_outputs = [form[name] for name in tf.PRESET_FIELDS]
    form_saved = [saved_form, form_restored]
    for name, button in preset_buttons.items():
        button.click(
            lambda a, name=name: apply_preset(name, a),
            approach,
            preset_outputs,
            api_visibility="private",
        ).then(save_form, config_inputs, form_saved, api_visibility="private", queue=False)
    # `input` fires on the user's edits only, not on a restore or a preset: no echo loop.
    gr.on(
        [c.input for c in config_inputs],
        save_form,
        config_inputs,
        form_saved,
        api_visibility="private",
        queue=False,
        show_progress="hidden",
    )
    restore_outputs = [*config_inputs, form_note, form_restored]
    # BrowserState reads localStorage when it is first drawn (when this tab first opens) and
    # then fires `change`; the page's load covers a tab that is drawn at once.
    saved_form.change(
        restore_form,
        [saved_form, form_restored],
        restore_outputs,
        api_visibility="private",
        queue=False,
    )
    # The box says what is happening at once: a measurement can take a minute on a CPU. The
    # question of an earlier Start leaves with its message (Start asks again).
    preflight_btn.click(
        lambda: (info_box(tv.CHECKING_MESSAGE), None, gr.update(visible=False)),
        None,
        [action_msg, asked, anyway_btn],
        api_visibility="private",
        queue=False,
        show_progress="hidden",
    ).then(
        preflight,
        [*config_inputs, key_state],
        action_msg,
        api_name="preflight",
        show_progress="minimal",
    )
    start_inputs = [*config_inputs, key_state, asked] + ([gpus] if gpus is not None else [])
    # After a start or a cancel the action box follows the job it spoke of until it ends.
    start_outputs = [action_msg, awaiting, asked]
    show_anyway = {
        "fn": lambda question: gr.update(visible=bool(question)),
        "inputs": asked,
        "outputs": anyway_btn,
        "api_visibility": "private",
        "queue": False,
        "show_progress": "hidden",
    }
    start_btn.click(start_training, start_inputs, start_outputs, api_name="start_training").then(
        **show_anyway
    )
    anyway_btn.click(
        functools.partial(start_training, anyway=True),  # the API keeps the parameter names
        start_inputs,
        start_outputs,
        api_name="start_training_anyway",
    ).then(**show_anyway)
    cancel_btn.click(
        lambda: (*cancel_training(), None), None, start_outputs, api_name="cancel_training"
    ).then(**show_anyway)
    status_inputs = [plot_key, awaiting]
    status_outputs = [
        status_json,
        status_html,
        log_box,
        wandb_md,
        curves,
        job_ended,
        plot_key,
        awaiting,
    ]
    job_ended.change(
        lambda message: message or gr.skip(),
        job_ended,
        action_msg,
        api_visibility="private",
        queue=False,
        show_progress="hidden",
    )
    timer.tick(
        training_status,
        status_inputs,
        status_outputs,
        api_name="training_status",
        show_progress="hidden",
    )
    # The runs table changes rarely; every 5 s is plenty and keeps disk reads low.
    runs_timer = gr.Timer(5.0)
    gr.on(
        [refresh_runs.click, runs_timer.tick],
        list_runs,
        None,
        runs_df,
        api_name="list_runs",
        show_progress="hidden",
    )
    return {
        "controls": controls,
        "form": form,
        "gpus": gpus,
        # the message alone, as the API answers (tests call it directly)
        "start_training": lambda *args, **kwargs: start_training(*args, **kwargs)[0],
        "training_status": training_status,
        "status_inputs": status_inputs,
        "status_outputs": status_outputs,
        "plot_key": plot_key,
        "restore_form": restore_form,
        "restore_inputs": [saved_form, form_restored],
        "restore_outputs": restore_outputs,
        "list_runs": list_runs,
        "runs_df": runs_df,
    }
