"""The Train tab's words and pictures: the demo's refusal, the preflight's verdict (fits, how
long, measured or rough), the job's summary and its end, a finished run's test ROC-AUC next
to the tabular baseline, the runs table, the W&B link, and the training curves (loss and
validation ROC-AUC against the step, on axes that span the whole run).

Nothing here imports Gradio, so tests call these directly; the form and the run it
describes are `noshow.app.train_form`:

    from noshow.app.train_views import describe_estimate, describe_status
    fits, text = describe_estimate(estimate_resources(config, rows))
    html = describe_status(jobs.snapshot(), report)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from noshow.app.common import error_box, format_duration, info_box, ok_box
from noshow.app.train_form import CPU_PRESET, PRESET_LABELS

DEMO_REFUSAL = (
    "Training is turned off in this demo (NOSHOW_DEMO=1): visitors can browse, compare and "
    "label, but not start GPU jobs. Run the app yourself to train."
)
# The AUCs come right after the state: a wide table is cut off at the right.
RUNS_COLUMNS = ["run_id", "state", "test_roc_auc", "baseline_roc_auc", "approach", "model"]
RUNS_COLUMNS += ["steps", "created", "adapter", "error"]


# ----------------------------------------------------------------------------- the preflight


def describe_phases(phases_s: dict[str, float] | None) -> str:
    """'data 1s · model 9s · training 6m 30s · ...' (empty without measured phases)."""
    if not phases_s:
        return ""
    return " · ".join(f"{name} {format_duration(s)}" for name, s in phases_s.items())


def _where(estimate: dict[str, Any]) -> str:
    device = str(estimate.get("device") or "this machine")
    return "on this CPU" if device.startswith("CPU") else f"on {device}"


def _minutes_text(minutes: float | None) -> str:
    from noshow.training.preflight import describe_minutes

    return describe_minutes(minutes)


def describe_estimate(
    estimate: dict[str, Any],
    *,
    quick_minutes: float | None = None,
    not_measured: str = "",
) -> tuple[bool, str]:
    """(fits, message) from `noshow.training.preflight.estimate_resources`' answer.

    The first line is the verdict: "Will not fit: ...", "Long: about 2 h on this CPU ..."
    (a CPU run over the preflight's limit, with the quick preset's time when known), "Fits in
    memory; about 3 min on this CPU (measured)", or "Fits in memory (rough ...); time
    unknown" when nothing was measured (`not_measured` says why). Then the sizes, the phases
    and the basis."""
    fits = bool(estimate.get("fits"))
    minutes = estimate.get("minutes")
    where = _where(estimate)
    mem = estimate.get("gpu_mem_gb", estimate.get("mem_gb"))
    have = estimate.get("available_gb")
    memory = f"about {mem} GB of {have} GB free" if mem is not None else "memory unknown"
    reason = (estimate.get("reason") or "").strip()
    measured = minutes is not None
    if not fits:
        head = f"Will not fit: {reason or 'not enough memory'}"
    elif measured and estimate.get("long"):
        quick = (
            f"the {PRESET_LABELS[CPU_PRESET]} preset takes {_minutes_text(quick_minutes)}"
            if quick_minutes is not None
            else f"the {PRESET_LABELS[CPU_PRESET]} preset takes minutes"
        )
        head = (
            f"Long: {_minutes_text(minutes)} {where} (measured). It fits in memory, but a CPU "
            f"run this long ties up the machine: {quick}; the full run belongs on a GPU."
        )
    elif measured:
        head = f"Fits in memory; {_minutes_text(minutes)} {where} (measured)."
    else:
        why = f" ({not_measured})" if not_measured else ""
        head = (
            f"Fits in memory (rough estimate, {memory}); time unknown: not measured{why}. "
            "Preflight check measures it."
        )
    rows = estimate.get("rows") or {}
    sizes = []
    if rows:
        sizes.append(
            f"{rows.get('train', 0):,} training rows, {rows.get('validation', 0):,} "
            f"validation, {rows.get('test', 0):,} test"
        )
    if estimate.get("steps") is not None:
        sizes.append(f"{estimate['steps']:,} steps")
    sizes.append(f"{memory} {where}")
    if estimate.get("quantize"):
        sizes.append(f"quantization {estimate['quantize']}")
    lines = [head if head.endswith(".") else head + ".", "; ".join(sizes) + "."]
    phases = describe_phases(estimate.get("phases_s"))
    if phases:
        lines.append(f"Phases: {phases}.")
    if estimate.get("basis"):
        lines.append(f"Basis: {estimate['basis']}.")
    if fits and reason:
        lines.append(f"Note: {reason}")
    return fits, "\n".join(lines)


CONFIRM_WITHIN_S = 120.0  # a second Start of the same run within this long confirms it


def describe_cautions(reasons: list[str]) -> str:
    """Start's question for a run that needs a yes (`noshow.training.preflight.run_cautions`)."""
    return "\n".join(
        [
            "Not started yet: this run needs a yes first.",
            *(f"- {reason}" for reason in reasons),
            "Press Start anyway (or Start training again within "
            f"{CONFIRM_WITHIN_S / 60:.0f} minutes) to start it, or change the form.",
        ]
    )


CHECKING_MESSAGE = (
    "Checking this configuration. The first check of a configuration on this machine "
    "measures it: a few real training steps time every phase (up to a minute on a CPU; "
    "the answer is kept for next time)."
)


# ----------------------------------------------------------------------------- the job


def format_auc(metrics: dict[str, Any] | None) -> str:
    """'0.728 (95% CI 0.722-0.734)', the bare figure without an interval, or 'n/a'."""
    auc = (metrics or {}).get("roc_auc")
    if not isinstance(auc, int | float):
        return "n/a"
    low, high = (metrics or {}).get("roc_auc_low"), (metrics or {}).get("roc_auc_high")
    if isinstance(low, int | float) and isinstance(high, int | float):
        return f"{auc:.3f} (95% CI {low:.3f}-{high:.3f})"
    return f"{auc:.3f}"


def describe_result(report: dict[str, Any] | None) -> list[str]:
    """Lines on a finished run's test ROC-AUC next to the tabular baseline (eval.json)."""
    if not report or not isinstance(report.get("model"), dict):
        return []
    model, base = report["model"], report.get("baseline")
    n = model.get("n")
    on = f" on the same {n:,} test rows" if isinstance(n, int) else ""
    if isinstance(base, dict):
        lines = [
            f"Test ROC-AUC {format_auc(model)} next to the tabular baseline's "
            f"{format_auc(base)}{on}."
        ]
    else:
        why = report.get("baseline_note") or "tabular baseline unavailable"
        lines = [f"Test ROC-AUC {format_auc(model)}{on}; {why}."]
    for d in report.get("differences") or []:
        if isinstance(d, dict) and (d.get("a"), d.get("b")) == ("model", "baseline"):
            lines.append(str(d.get("text") or ""))
    if model.get("note"):
        lines.append(str(model["note"]))
    if report.get("synthetic"):
        lines.append("Synthetic data: these figures say nothing about real no-shows.")
    return [line for line in lines if line]


def loss_reading(snap: dict[str, Any]) -> tuple[int | None, float] | None:
    """(step, loss) of the latest loss reading: the progress's, with the step it was read at
    when the history has it (a long run reads the loss every few steps)."""
    p = snap.get("progress") or {}
    if p.get("loss") is None:
        return None
    for point in reversed(snap.get("history") or []):
        if point.get("loss") is not None:
            return point.get("step"), float(point["loss"])
    return None, float(p["loss"])


def describe_status(snap: dict[str, Any], report: dict[str, Any] | None = None) -> str:
    """The job summary as HTML: state, step/total with a bar, loss, ETA, speed; once the run
    has ended its test ROC-AUC next to the baseline (`report`: its eval.json) and its folder."""
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
    reading = loss_reading(snap)
    if reading is not None:
        at, loss = reading
        stale = at is not None and step is not None and at != step
        pieces.append(f"loss {loss:.4f}" + (f" (step {at})" if stale else ""))
    if p.get("val_auc") is not None:
        pieces.append(f"validation AUC {float(p['val_auc']):.3f}")
    if p.get("samples_per_s") is not None:
        pieces.append(f"{float(p['samples_per_s']):.1f} statements/s")
    if snap.get("active") and p.get("eta_s") is not None:
        pieces.append(f"ETA {format_duration(p['eta_s'])}")
    pieces.append(f"elapsed {format_duration(snap.get('elapsed_s'))}")
    lines = [" · ".join(pieces)]
    if snap.get("error"):
        lines.append(f"Error: {snap['error']}")
    if not snap.get("active"):
        lines += describe_result(report)
        if snap.get("run_dir"):
            lines.append(f"Run folder: {snap['run_dir']}")
    box = {"completed": ok_box, "failed": error_box}.get(state, info_box)("\n".join(lines))
    if step is not None and total:
        pct = max(0.0, min(100.0, 100.0 * float(step) / float(total)))
        box += (
            '<div style="background:#e5e7eb;border-radius:6px;height:10px;margin-top:6px">'
            f'<div style="width:{pct:.1f}%;background:#3b82f6;height:10px;border-radius:6px">'
            "</div></div>"
        )
    return box


def describe_job_end(snap: dict[str, Any], report: dict[str, Any] | None = None) -> str:
    """The action box once the job it spoke of (started, cancelling) has ended, as HTML."""
    p = snap.get("progress") or {}
    step, total = p.get("step"), p.get("total_steps")
    at = f" at step {step} of {total}" if step is not None and total else ""
    state = snap.get("state")
    text = f"Run {snap.get('run_id')} {state}{at}."
    if state == "completed":
        result = describe_result(report)
        text += " " + (result[0] if result else "See the summary below.")
        return ok_box(text)
    if state == "failed":
        return error_box(text + (f" {snap['error']}" if snap.get("error") else ""))
    if state == "cancelled":
        text += " Its folder keeps the log and metrics so far."
    return info_box(text)


def runs_table(runs_dir: str | Path) -> pd.DataFrame:
    """Past runs (newest first) with the columns worth a glance; runs that failed before
    their first step (bad data, a refusal) are left out: they hold nothing to look at."""
    from noshow.training.runs import list_runs

    frame = list_runs(runs_dir)
    frame = frame[~frame["before_training"].astype(bool)]
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
    from noshow.training.runs import read_status

    status = read_status(run_dir)
    if status.get("wandb_url"):
        return f"**W&B:** [{status['wandb_url']}]({status['wandb_url']})"
    if status.get("wandb_dir"):
        return f"**W&B (offline):** `{status['wandb_dir']}` - sync with `wandb sync`"
    return "**W&B:** starting…"


def curves_frame(snap: dict[str, Any]) -> pd.DataFrame:
    """Metric lines for the curves: the run's metrics.jsonl (a loss reading every step for a
    run of up to 100 steps, see noshow.training.loop.log_every), else the in-memory history."""
    from noshow.training.runs import read_metrics

    if snap.get("run_dir"):
        metrics = read_metrics(snap["run_dir"])
        if not metrics.empty and "step" in metrics.columns:
            return metrics
    return pd.DataFrame.from_records(snap.get("history") or [])


def _points(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    if frame is None or frame.empty or column not in frame.columns or "step" not in frame:
        return pd.DataFrame(columns=["step", column])
    return frame[["step", column]].dropna().sort_values("step")


def training_curves_figure(
    frame: pd.DataFrame | None,
    total_steps: int | None = None,
    report: dict[str, Any] | None = None,
) -> Figure:
    """Training loss and validation ROC-AUC against the step, on axes that span the whole
    run (0 to `total_steps`) whatever the number of points, so one point reads as one point
    of a run, not a dot on an axis from 9.6 to 10.4. With the run's `report` (eval.json) the
    end-of-run validation AUC is the last point and the tabular baseline's is a line."""
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    loss_ax, auc_ax = fig.subplots(1, 2)
    loss = _points(frame, "loss")
    auc = _points(frame, "val_auc")
    validation = (report or {}).get("validation") or {}
    end_auc = (validation.get("model") or {}).get("roc_auc")
    base_auc = (validation.get("baseline") or {}).get("roc_auc")
    last_step = max([0, *loss["step"].tolist(), *auc["step"].tolist()])
    right = max(int(total_steps or 0), int(last_step), 1)
    if isinstance(end_auc, int | float):
        end_step = int(report.get("steps") or right) if report else right
        auc = pd.concat([auc, pd.DataFrame({"step": [end_step], "val_auc": [end_auc]})])
    for ax in (loss_ax, auc_ax):
        ax.set_xlim(0, right * 1.03 if right > 1 else 1.1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    if loss.empty:
        loss_ax.text(
            0.5, 0.5, "no loss reading yet", ha="center", va="center", transform=loss_ax.transAxes
        )
    else:
        marker = "o" if len(loss) < 60 else None
        loss_ax.plot(loss["step"], loss["loss"], marker=marker, markersize=3, label="training")
        top = float(loss["loss"].max())
        loss_ax.set_ylim(0, top * 1.15 if top > 0 else 1)
        loss_ax.legend(fontsize="small", loc="upper right")
    loss_ax.set(xlabel="Step", ylabel="Loss", title="Training loss")
    values = [v for v in auc["val_auc"].tolist() if isinstance(v, int | float)]
    if isinstance(base_auc, int | float):
        values.append(base_auc)
    auc_ax.axhline(0.5, color="grey", linestyle=":", linewidth=1, label="chance (0.5)")
    if isinstance(base_auc, int | float):
        auc_ax.axhline(
            base_auc,
            color="tab:orange",
            linestyle="--",
            linewidth=1.2,
            label=f"tabular baseline ({base_auc:.3f})",
        )
    if not auc.empty:
        best = float(auc["val_auc"].max())
        auc_ax.plot(auc["step"], auc["val_auc"], marker="o", label=f"adapter (best {best:.3f})")
    else:
        auc_ax.text(
            0.5, 0.62, "no validation yet", ha="center", va="center", transform=auc_ax.transAxes
        )
    # Enough room to read a difference, never less than 0.45-0.80, always inside 0-1.
    low = max(0.0, min([0.45, *(v - 0.03 for v in values)]))
    high = min(1.0, max([0.8, *(v + 0.03 for v in values)]))
    auc_ax.set_ylim(low, high)
    auc_ax.set(xlabel="Step", ylabel="ROC-AUC", title="Validation ROC-AUC")
    auc_ax.legend(fontsize="small", loc="best")
    return fig
