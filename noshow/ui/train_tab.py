"""The Train tab: configure a run, check it fits (preflight), start it in the background,
watch it live, cancel it, and list past runs.

Training runs in the `JobManager`'s thread, never in a Gradio handler; the page polls
`JobManager.snapshot()` with a `gr.Timer`, so reloading the page or opening it in another
browser re-attaches to the running job. In demo mode the controls are hidden and the start
and cancel endpoints refuse.

When more than one CUDA device is visible, a "GPUs" input appears (and `/start_training`
takes a last `gpus` parameter): with n > 1 the JobManager runs torchrun with n processes in
the same run folder, and the page shows its progress and cancels it the same way.

Endpoints: `/preflight`, `/start_training`, `/cancel_training`, `/training_status`,
`/list_runs`. The pure helpers (`build_run_config`, `describe_estimate`, `describe_status`,
`runs_table`) are tested without a browser.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from noshow.config import RunConfig
from noshow.ui.common import (
    SYNTHETIC_SOURCE,
    UIContext,
    check_server_data_path,
    error_box,
    format_duration,
    info_box,
    ok_box,
    user_message,
)

SOURCE_DATA_TAB = "Same as the Data tab"
SOURCE_DEFAULT = "Default (NOSHOW_DATA, data/, synthetic)"
SOURCE_SYNTHETIC = "Bundled synthetic"
DEMO_REFUSAL = (
    "Training is turned off in this demo (NOSHOW_DEMO=1): visitors can browse, compare and "
    "label, but not start GPU jobs. Run the app yourself to train."
)
RUNS_COLUMNS = ["run_id", "approach", "model", "state", "created", "steps"]
RUNS_COLUMNS += ["test_roc_auc", "baseline_roc_auc", "adapter", "error"]

QUICK_CPU = {
    "model": "smollm2-135m-instruct",
    "quantize": "none",
    "max_train_rows": 256,
    "max_eval_rows": 256,
    "epochs": 1,
    "max_steps": 20,
    "batch_size": 16,
    "eval_every": 10,
    "lr": 2e-4,
}
FULL_GPU = {
    "quantize": "4bit",
    "max_train_rows": 0,
    "max_eval_rows": 0,
    "epochs": 1,
    "max_steps": 0,
    "batch_size": 64,
    "eval_every": 200,
    "lr": 2e-4,
}
PRESET_FIELDS = ("model", "quantize", "max_train_rows", "max_eval_rows", "epochs", "max_steps")
PRESET_FIELDS += ("batch_size", "eval_every", "lr")
# The seed project's models for a full run, per approach.
FULL_GPU_MODELS = {"generative": "llama-3.1-8b-instruct", "classifier": "llama-3.1-8b"}

PLOT_EVERY_S = 3.0
# Inputs of preflight/start_training, in order (names double as the API's parameter names).
CONFIG_FIELDS = (
    "approach",
    "model",
    "data_source",
    "split",
    "max_train_rows",
    "max_eval_rows",
    "epochs",
    "max_steps",
    "lr",
    "batch_size",
    "lora_r",
    "eval_every",
    "quantize",
    "wandb",
    "use_clinician_labels",
)


def _whole_or_none(value: Any) -> int | None:
    """0, empty or None mean "no limit"."""
    if value in (None, ""):
        return None
    number = float(value)
    if number != int(number):
        raise ValueError(f"Expected a whole number, got {value!r}.")
    return int(number) or None


def resolve_train_source(choice: str | None, data_tab_source: str | None) -> str | None:
    """DataConfig.source for the picker's choice (None = discovery order)."""
    if choice in (None, "", SOURCE_DEFAULT):
        return None
    if choice == SOURCE_SYNTHETIC:
        return SYNTHETIC_SOURCE
    if choice == SOURCE_DATA_TAB:
        return data_tab_source
    return check_server_data_path(choice)  # typed by the user


def build_run_config(
    *,
    approach: str,
    model: str,
    data_source: str | None,
    split: str,
    max_train_rows: Any,
    max_eval_rows: Any,
    epochs: Any,
    max_steps: Any,
    lr: Any,
    batch_size: Any,
    lora_r: Any,
    eval_every: Any,
    quantize: str,
    wandb: bool,
    use_clinician_labels: bool,
    output_dir: str | Path = "runs",
) -> RunConfig:
    """A validated RunConfig from the form's values; ConfigError/ValueError say what to fix."""
    r = _whole_or_none(lora_r) or 16
    return RunConfig.from_dict(
        {
            "data": {
                "source": data_source,
                "split": split,
                "max_train_rows": _whole_or_none(max_train_rows),
                "max_eval_rows": _whole_or_none(max_eval_rows),
                "use_clinician_labels": bool(use_clinician_labels),
            },
            # alpha = 2r keeps the update scale of the seed recipe (r16, alpha 32) as r changes
            "lora": {"r": r, "alpha": 2 * r},
            "train": {
                "approach": approach,
                "model": (model or "").strip(),
                "quantize": quantize,
                "epochs": float(epochs) if epochs not in (None, "") else 1.0,
                "max_steps": _whole_or_none(max_steps),
                "lr": float(lr) if lr not in (None, "") else 2e-4,
                "batch_size": _whole_or_none(batch_size) or 0,
                "eval_every": _whole_or_none(eval_every) or 0,
                "wandb": bool(wandb),
                "output_dir": str(output_dir),
            },
        }
    )


def describe_model_choice(name: str | None, presets: dict[str, Any]) -> str:
    """One line under the model picker: the preset's description, or what a custom entry needs."""
    preset = presets.get((name or "").strip())
    if preset is not None:
        return f"_{preset.description}._"
    return (
        "_Custom model: a hub id (org/name) needs network access, and a token (HF_TOKEN) for "
        "gated models; a local folder must hold a Hugging Face model and tokenizer._"
    )


def describe_estimate(estimate: dict[str, Any], n_train_rows: int) -> tuple[bool, str]:
    """(fits, one-paragraph message) from training.estimate_resources' answer."""
    mem = estimate.get("gpu_mem_gb", estimate.get("mem_gb"))
    where = estimate.get("device", "this machine")
    parts = [
        f"{n_train_rows:,} training rows, about {estimate.get('steps', '?')} steps",
        f"about {mem} GB of {estimate.get('available_gb', '?')} GB free on {where}"
        if mem is not None
        else f"on {where}",
        f"about {format_duration(60 * float(estimate.get('minutes', 0) or 0))}",
        f"quantization {estimate.get('quantize', '?')}",
    ]
    fits = bool(estimate.get("fits"))
    reason = estimate.get("reason") or ""
    if fits:
        text = "Fits: " + "; ".join(parts) + "." + (f" Note: {reason}" if reason else "")
    else:
        text = f"Will not fit: {reason or 'not enough memory'} (" + "; ".join(parts) + ")."
    return fits, text


def describe_status(snap: dict[str, Any]) -> str:
    """The live view's headline as HTML: state, step/total with a bar, ETA, speed, metrics."""
    state = snap.get("state", "idle")
    if state == "idle":
        return info_box("No training job has run since the app started. Configure one above.")
    p = snap.get("progress") or {}
    step, total = p.get("step"), p.get("total_steps")
    pieces = [f"Run {snap.get('run_id')}: {state}"]
    if p.get("phase") and snap.get("active"):
        pieces.append(f"phase {p['phase']}")
    if step is not None:
        pieces.append(f"step {step}/{total or '?'}")
    if p.get("epoch") is not None:
        pieces.append(f"epoch {float(p['epoch']):.2f}")
    if p.get("loss") is not None:
        pieces.append(f"loss {float(p['loss']):.4f}")
    if p.get("val_auc") is not None:
        pieces.append(f"validation AUC {float(p['val_auc']):.3f}")
    if p.get("samples_per_s") is not None:
        pieces.append(f"{float(p['samples_per_s']):.1f} statements/s")
    if snap.get("active") and p.get("eta_s") is not None:
        pieces.append(f"ETA {format_duration(p['eta_s'])}")
    pieces.append(f"elapsed {format_duration(snap.get('elapsed_s'))}")
    text = " · ".join(pieces)
    if snap.get("error"):
        text += f"\nError: {snap['error']}"
    box = {"completed": ok_box, "failed": error_box}.get(state, info_box)(text)
    if step is not None and total:
        pct = max(0.0, min(100.0, 100.0 * float(step) / float(total)))
        box += (
            '<div style="background:#e5e7eb;border-radius:6px;height:10px;margin-top:6px">'
            f'<div style="width:{pct:.1f}%;background:#3b82f6;height:10px;border-radius:6px">'
            "</div></div>"
        )
    return box


def runs_table(runs_dir: str | Path) -> pd.DataFrame:
    """Past runs (newest first) with the columns worth a glance."""
    from noshow.runs import list_runs

    frame = list_runs(runs_dir)
    frame = frame[[c for c in RUNS_COLUMNS if c in frame.columns]].copy()
    if "created" in frame.columns:
        frame["created"] = frame["created"].map(
            lambda t: "" if pd.isna(t) else pd.Timestamp(t).strftime("%Y-%m-%d %H:%M")
        )
    for col in ("test_roc_auc", "baseline_roc_auc"):
        if col in frame.columns:
            frame[col] = frame[col].map(lambda v: "" if pd.isna(v) else f"{v:.3f}")
    return frame


def wandb_markdown(run_dir: str | None, config: dict | None) -> str:
    """A link (online) or folder (offline) for the run's W&B log, if W&B is on."""
    if not run_dir or not config or not (config.get("train") or {}).get("wandb"):
        return ""
    from noshow.runs import read_status

    status = read_status(run_dir)
    if status.get("wandb_url"):
        return f"**W&B:** [{status['wandb_url']}]({status['wandb_url']})"
    if status.get("wandb_dir"):
        return f"**W&B (offline):** `{status['wandb_dir']}` - sync with `wandb sync`"
    return "**W&B:** starting…"


def curves_frame(snap: dict[str, Any]) -> pd.DataFrame:
    """Metric lines for the curves: the run's metrics.jsonl, else the in-memory history."""
    from noshow.runs import read_metrics

    if snap.get("run_dir"):
        metrics = read_metrics(snap["run_dir"])
        if not metrics.empty and "step" in metrics.columns:
            return metrics
    return pd.DataFrame.from_records(snap.get("history") or [])


def build_train_tab(ctx: UIContext) -> dict[str, Any]:
    """Lay out the Train tab inside the current Blocks and wire its events."""
    from noshow.distributed import visible_gpu_count
    from noshow.models import DEFAULT_MODEL, PRESETS

    jobs = ctx.jobs
    runs_dir = ctx.runs_dir
    n_gpus = visible_gpu_count()  # no torch import: the app starts fast

    if ctx.demo_mode:
        gr.HTML(info_box(DEMO_REFUSAL))
    with gr.Column(visible=not ctx.demo_mode) as controls:
        with gr.Row():
            preset_quick = gr.Button("Preset: quick CPU demo", size="sm")
            preset_full = gr.Button("Preset: full GPU run", size="sm")
        with gr.Row():
            approach = gr.Radio(
                ["classifier", "generative"],
                value="classifier",
                label="Approach",
                info="classifier: a linear head on the last token; generative: answers Yes/No.",
            )
            model = gr.Dropdown(
                list(PRESETS),
                value=DEFAULT_MODEL,
                label="Model",
                allow_custom_value=True,
                info="A preset, a Hugging Face hub id or a local folder.",
            )
            quantize = gr.Radio(
                ["auto", "4bit", "none"],
                value="auto",
                label="Quantization",
                info="auto: 4-bit (QLoRA) on a GPU, none on the CPU.",
            )
        model_note = gr.Markdown(describe_model_choice(DEFAULT_MODEL, PRESETS))
        with gr.Row():
            data_source = gr.Dropdown(
                [SOURCE_DATA_TAB, SOURCE_DEFAULT, SOURCE_SYNTHETIC],
                value=SOURCE_DATA_TAB,
                label="Training data",
                allow_custom_value=not ctx.demo_mode,
                info="Or type the path of a CSV/Parquet file on the server.",
            )
            split = gr.Radio(["time", "patient", "random"], value="time", label="Split")
            max_train_rows = gr.Number(
                value=0, label="Max training rows", precision=0, minimum=0, info="0 = all"
            )
            max_eval_rows = gr.Number(
                value=0,
                label="Max validation/test rows",
                precision=0,
                minimum=0,
                info="0 = all",
            )
        with gr.Row():
            epochs = gr.Number(value=1, label="Epochs", minimum=0.01)
            max_steps = gr.Number(
                value=0, label="Max steps", precision=0, minimum=0, info="0 = use epochs"
            )
            lr = gr.Number(value=2e-4, label="Learning rate")
            batch_size = gr.Number(value=64, label="Batch size", precision=0, minimum=1)
            lora_r = gr.Number(value=16, label="LoRA r", precision=0, minimum=1, info="alpha = 2r")
            eval_every = gr.Number(
                value=0, label="Evaluate every", precision=0, minimum=0, info="steps; 0 = end"
            )
        with gr.Row():
            wandb = gr.Checkbox(
                value=False, label="Log to Weights & Biases", info="offline without an API key"
            )
            use_labels = gr.Checkbox(
                value=False,
                label="Use clinician labels",
                info="labels from the Label tab override the data set's",
            )
            gpus = None
            if n_gpus > 1:  # one GPU or none: nothing to choose, so no control
                gpus = gr.Number(
                    value=1,
                    label="GPUs",
                    precision=0,
                    minimum=1,
                    maximum=n_gpus,
                    info=f"data-parallel with torchrun ({n_gpus} visible); the batch is split",
                )
        with gr.Row():
            preflight_btn = gr.Button("Preflight check", variant="secondary")
            start_btn = gr.Button("Start training", variant="primary")
            cancel_btn = gr.Button("Cancel", variant="stop")
        action_msg = gr.HTML()

    gr.Markdown("### Current job")
    status_html = gr.HTML()
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
    timer = gr.Timer(1.0)

    config_inputs = [
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
        use_labels,
    ]

    # -- helpers ------------------------------------------------------------------------

    def config_from(values: dict[str, Any], key: str | None) -> RunConfig:
        listed = (None, "", SOURCE_DATA_TAB, SOURCE_DEFAULT, SOURCE_SYNTHETIC)
        if ctx.demo_mode and values["data_source"] not in listed:
            raise ValueError("Reading files from the server is turned off in demo mode.")
        data_tab_source = None
        if values["data_source"] == SOURCE_DATA_TAB:
            entry = ctx.get_data(key)
            loaded = entry.loaded
            data_tab_source = SYNTHETIC_SOURCE if loaded.is_synthetic else str(loaded.source)
        values = {
            **values,
            "data_source": resolve_train_source(values["data_source"], data_tab_source),
        }
        if ctx.demo_mode and values["data_source"] not in (None, SYNTHETIC_SOURCE):
            raise ValueError("Reading files from the server is turned off in demo mode.")
        return build_run_config(**values, output_dir=runs_dir)

    def check(config: RunConfig) -> tuple[bool, str]:
        from noshow.preflight import estimate_resources
        from noshow.ui.data_views import load_entry

        # The same load + split as training, so the row count is the one that will be used.
        entry = load_entry(ctx.cache, config.data.source, split_method=config.data.split)
        n_train = int((entry.frame["split"] == "train").sum())
        if config.data.max_train_rows:
            n_train = min(n_train, config.data.max_train_rows)
        return describe_estimate(estimate_resources(config, n_train), n_train)

    # -- handlers (named parameters become the API's parameter names) -------------------

    def preflight(
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
    ) -> str:
        """Estimate memory and time for this configuration; says why when it will not fit."""
        form = locals()
        values = {name: form[name] for name in CONFIG_FIELDS}
        try:
            fits, text = check(config_from(values, data_key))
        except Exception as e:  # noqa: BLE001 - shown to the user
            return error_box(user_message(e))
        return (ok_box if fits else error_box)(text)

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
        gpus=1,
    ) -> str:
        """Check the configuration and start it in the background (refused in demo mode)."""
        form = locals()
        values = {name: form[name] for name in CONFIG_FIELDS}
        if ctx.demo_mode:
            return error_box(DEMO_REFUSAL)
        try:
            n = _whole_or_none(gpus) or 1
            if not 1 <= n <= max(n_gpus, 1):
                raise ValueError(f"GPUs must be between 1 and {max(n_gpus, 1)}, got {n}.")
            config = config_from(values, data_key)
            if jobs.is_busy():  # a cheap refusal before the preflight loads anything
                snap = jobs.snapshot()
                return error_box(
                    f"A training job is already running (run {snap['run_id']}). "
                    "Cancel it or wait for it to finish before starting another."
                )
            fits, text = check(config)
            if not fits:
                return error_box(text)
            run_id = jobs.start(config, gpus=n) if n > 1 else jobs.start(config)
        except Exception as e:  # noqa: BLE001 - JobBusyError names the running job
            return error_box(user_message(e))
        where = f" on {n} GPUs" if n > 1 else ""
        return ok_box(f"Started run {run_id}{where}. {text}")

    def cancel_training() -> str:
        """Ask the running job to stop after its current step (refused in demo mode)."""
        if ctx.demo_mode:
            return error_box(DEMO_REFUSAL)
        snap = jobs.snapshot()
        if jobs.cancel():
            return info_box(f"Cancelling run {snap['run_id']}: it stops after the current step.")
        return info_box("No training job is running.")

    plot_lock = threading.Lock()
    plot_cache: dict[str, Any] = {}

    def training_status(last_plot: Any = None) -> tuple:
        """The job's snapshot, headline, curves (redrawn at most every few seconds while
        running), log and W&B link."""
        from noshow.evaluate import plot_training_curves

        snap = jobs.snapshot()
        frame = curves_frame(snap) if snap.get("run_id") else pd.DataFrame()
        key = f"{snap.get('run_id')}|{len(frame)}|{snap.get('state')}"
        last = last_plot if isinstance(last_plot, dict) else {}
        same_view = last.get("view") == (snap.get("run_id"), snap.get("state"))
        now = time.time()
        if key == last.get("key") or (same_view and now - last.get("t", 0) < PLOT_EVERY_S):
            # Unchanged, or changed too recently: a PNG per second per browser is wasted work.
            return (*status_parts(snap), gr.skip(), last)
        if not snap.get("run_id"):
            figure = None
        else:
            with plot_lock:  # one figure per change, shared by every open browser
                if plot_cache.get("key") != key:
                    plot_cache.update(key=key, figure=plot_training_curves(frame))
                figure = plot_cache["figure"]
        new_last = {"key": key, "view": (snap.get("run_id"), snap.get("state")), "t": now}
        return (*status_parts(snap), figure, new_last)

    def status_parts(snap: dict[str, Any]) -> tuple:
        return (
            snap,
            describe_status(snap),
            "\n".join(snap.get("log") or []),
            wandb_markdown(snap.get("run_dir"), snap.get("config")),
        )

    def list_runs() -> pd.DataFrame:
        """Past runs in the runs folder, newest first."""
        return runs_table(runs_dir)

    def apply_preset(which: str, current_approach: str) -> list:
        values = dict(QUICK_CPU if which == "quick" else FULL_GPU)
        if which == "full":
            values["model"] = FULL_GPU_MODELS.get(current_approach, DEFAULT_MODEL)
        return [values[name] for name in PRESET_FIELDS]

    preset_outputs = [
        model,
        quantize,
        max_train_rows,
        max_eval_rows,
        epochs,
        max_steps,
        batch_size,
        eval_every,
        lr,
    ]

    # -- wiring -------------------------------------------------------------------------

    key_state = ctx.data_key
    model.change(
        lambda name: describe_model_choice(name, PRESETS),
        model,
        model_note,
        api_visibility="private",
        queue=False,
    )
    preset_quick.click(
        lambda a: apply_preset("quick", a), approach, preset_outputs, api_visibility="private"
    )
    preset_full.click(
        lambda a: apply_preset("full", a), approach, preset_outputs, api_visibility="private"
    )
    preflight_btn.click(preflight, [*config_inputs, key_state], action_msg, api_name="preflight")
    start_inputs = [*config_inputs, key_state] + ([gpus] if gpus is not None else [])
    start_btn.click(start_training, start_inputs, action_msg, api_name="start_training")
    cancel_btn.click(cancel_training, None, action_msg, api_name="cancel_training")
    status_outputs = [status_json, status_html, log_box, wandb_md, curves, plot_key]
    timer.tick(
        training_status,
        plot_key,
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
        "gpus": gpus,
        "start_training": start_training,
        "training_status": training_status,
        "status_outputs": status_outputs,
        "plot_key": plot_key,
        "list_runs": list_runs,
        "runs_df": runs_df,
    }
