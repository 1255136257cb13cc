"""Run folders: one `runs/<run_id>/` per training run, read by the app, the CLI and the tests.

A run folder holds everything needed to show a run after a restart:

    config.json          the RunConfig (secrets scrubbed), written once at creation
    status.json          state + timestamps + pid/host + error + extras (step, wandb_url, ...)
    metrics.jsonl        one JSON object per line (step, loss, lr, eval metrics, ...)
    checkpoints/step-N/  resumable checkpoints (written elsewhere, then renamed into place)
    adapter.partial/     the adapter while it is being written (never reported as finished)
    adapter/             the finished adapter (renamed from adapter.partial/ when complete)
    eval.json            the evaluation report (see noshow.evaluation.report.build_report)
    predictions.parquet  record_id, split, label, p_no_show

Every file is written to a temporary file and renamed (os.replace), so a reader never sees a
half-written file under the final name; a run folder that cannot be set up completely (disk
full) is removed again. A run whose status says `running` but whose process is gone reads as
`interrupted`. Secrets never reach these files (`noshow.system.redact`): credential-like
keys are dropped from config.json, and the values of HF_TOKEN, WANDB_API_KEY and the
NOSHOW_AUTH password (and anything shaped like a Hugging Face token) are blanked in
config.json and in status.json's text.

    from noshow.training.runs import create_run, write_status, append_metrics, list_runs
    run_dir = create_run(config)                 # runs/20261128-071502-classifier-...
    write_status(run_dir, "running", step=0, total_steps=100)
    append_metrics(run_dir, {"step": 1, "loss": 0.61})
    list_runs("runs")                            # one row per run, newest first
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import secrets
import shutil
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from noshow.system.files import pid_alive, process_start, write_atomic
from noshow.system.redact import drop_secret_keys, redact_secrets

STATES = ("queued", "running", "completed", "failed", "cancelled", "interrupted")
RUN_ACTIVE_STATES = ("queued", "running")
FINISHED_STATES = ("completed", "failed", "cancelled", "interrupted")
PREDICTION_COLUMNS = ("record_id", "split", "label", "p_no_show")
STALE_AFTER_S = 600.0

CONFIG_FILE = "config.json"
STATUS_FILE = "status.json"
METRICS_FILE = "metrics.jsonl"
EVAL_FILE = "eval.json"
PREDICTIONS_FILE = "predictions.parquet"
ADAPTER_DIR = "adapter"
ADAPTER_STAGING_DIR = "adapter.partial"
CHECKPOINTS_DIR = "checkpoints"

LIST_COLUMNS = [
    "run_id",
    "approach",
    "model",
    "state",
    "created",
    "steps",
    "test_roc_auc",
    "baseline_roc_auc",
    "adapter",
    "error",
    "path",
    "before_training",
]

_RUN_ID = re.compile(r"^\d{8}-\d{6}-")
_CHECKPOINT = re.compile(r"^step-(\d+)$")

# One writer thread per run is the norm, but the app's start-up sweep and a training thread
# may touch the same status.json; the lock keeps read-merge-write sequences whole.
_status_lock = threading.Lock()


@dataclass
class RunResult:
    """What a training run ended with (its folder, final state, metrics, error, adapter)."""

    run_dir: Path
    state: str
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    adapter_dir: Path | None = None


class RunError(RuntimeError):
    """A run folder cannot be created, read or updated; the message says how to fix it."""


# ---------------------------------------------------------------------------------------------
# ids and creation


def _slug(text: str, max_len: int = 40) -> str:
    slug = re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-.")
    slug = re.sub(r"-{2,}", "-", slug)[:max_len].strip("-.")
    return slug or "model"


def new_run_id(approach: str, model: str) -> str:
    """Return a sortable, filesystem-safe id such as `20261128-071502-classifier-smollm2-135m-instruct-3fa2`.

    The time is UTC so ids sort in creation order across time-zone and DST changes. Hub ids
    and paths keep only their last component (`meta-llama/Llama-3.1-8B` -> `llama-3.1-8b`).
    """
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    name = re.split(r"[/\\]+", str(model).strip().rstrip("/\\"))[-1]
    return f"{stamp}-{_slug(str(approach), 20)}-{_slug(name)}-{secrets.token_hex(2)}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _to_json_safe(value: Any) -> Any:
    """numpy/pandas scalars to Python; NaN/inf to None so the files are strict JSON."""
    if isinstance(value, Mapping):
        return {str(k): _to_json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_to_json_safe(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, datetime | pd.Timestamp):
        return value.isoformat()
    return value


def _write_json(path: Path, data: Any) -> None:
    text = json.dumps(_to_json_safe(data), indent=2, allow_nan=False, sort_keys=False)
    write_atomic(path, lambda f: f.write(text + "\n"))


def _read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def create_run(
    config: Any, output_dir: str | Path | None = None, run_id: str | None = None
) -> Path:
    """Create `output_dir/run_id/` with config.json and status.json ("queued"); return its path.

    `config` is a RunConfig (or a plain dict). `output_dir` defaults to
    `config.train.output_dir`; `run_id` to `new_run_id(approach, model)`. Keys that look like
    credentials (token, key, secret, password) never reach config.json.
    """
    data = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    train = data.get("train") or {}
    if output_dir is None:
        output_dir = train.get("output_dir") or "runs"
    if run_id is None:
        run_id = new_run_id(train.get("approach", "run"), train.get("model", "model"))
    if not run_id or run_id in (".", "..") or re.search(r"[/\\\x00]", run_id):
        raise RunError(
            f"run id {run_id!r} is not a plain folder name; use letters, digits, '-' and '.'."
        )
    run_dir = Path(output_dir) / run_id
    try:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        run_dir.mkdir()
    except FileExistsError:
        raise RunError(
            f"run folder {run_dir} already exists; choose another --output-dir or run id"
        ) from None
    except OSError as e:
        raise RunError(
            f"cannot create run folder {run_dir}: {e.strerror or e}; check --output-dir."
        ) from e
    try:
        _write_json(run_dir / CONFIG_FILE, drop_secret_keys(data))
        write_status(run_dir, "queued", created_at=_now())
    except BaseException as e:
        # A folder without config/status would list as a broken run: take it away again.
        shutil.rmtree(run_dir, ignore_errors=True)
        if isinstance(e, OSError):
            raise RunError(
                f"cannot write the new run's files in {run_dir}: {e.strerror or e}"
                + (" (the disk is full; free some space)" if e.errno == errno.ENOSPC else "")
                + "."
            ) from e
        raise
    return run_dir


def write_config(run_dir: str | Path, config: Any) -> None:
    """Rewrite config.json atomically (training adds what it used, e.g. clinician labels)."""
    data = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    _write_json(Path(run_dir) / CONFIG_FILE, drop_secret_keys(data))


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """Return config.json as a dict (use RunConfig.from_dict to rebuild the dataclasses)."""
    path = Path(run_dir) / CONFIG_FILE
    try:
        return _read_json(path)
    except FileNotFoundError:
        raise RunError(f"{path} is missing; this folder is not a complete run.") from None
    except (OSError, ValueError) as e:
        raise RunError(f"cannot read {path}: {e}") from e


# ---------------------------------------------------------------------------------------------
# status


def write_status(
    run_dir: str | Path, state: str, *, error: str | None = None, **extra: Any
) -> dict:
    """Merge `state`, `error` and `extra` into status.json (atomically); return the new status.

    Keys: state, updated_at, started_at, finished_at, pid, hostname, error, plus extras
    (step, total_steps, wandb_url, ...), which persist across calls. `error` applies to this
    state only (None clears it). While queued/running, pid and hostname are this process's
    unless passed in `extra`; a later finished state keeps them for the record.
    """
    if state not in STATES:
        raise RunError(f"unknown run state {state!r}; use one of {', '.join(STATES)}.")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"run folder {run_dir} does not exist; create it with create_run().")
    path = run_dir / STATUS_FILE
    with _status_lock:
        try:
            previous = _read_json(path)
            if not isinstance(previous, dict):
                previous = {}
        except (OSError, ValueError):
            previous = {}
        status = {**previous, **redact_secrets(extra)}
        now = _now()
        status["state"] = state
        status["updated_at"] = now
        status["error"] = redact_secrets(error)
        status.setdefault("started_at", None)
        status.setdefault("finished_at", None)
        if state in RUN_ACTIVE_STATES:
            pid = int(extra.get("pid", os.getpid()))
            status["pid"] = pid
            status["hostname"] = extra.get("hostname", socket.gethostname())
            status["pid_start"] = extra.get("pid_start", process_start(pid))
            status["finished_at"] = None
            if state == "running" and not status.get("started_at"):
                status["started_at"] = now
        else:
            status.setdefault("pid", None)
            status.setdefault("hostname", None)
            status["finished_at"] = now
        _write_json(path, status)
    return status


def read_status(run_dir: str | Path, stale_after_s: float = STALE_AFTER_S) -> dict[str, Any]:
    """Return status.json as a dict, never raising.

    A queued/running run whose process is gone from this host reads as "interrupted" (with
    `recorded_state` set to what the file says); for a run from another host, whose pid
    cannot be checked, the same happens when `updated_at` is older than `stale_after_s`. The
    file itself is not changed (see mark_interrupted_runs). A missing or unreadable file gives
    state "unknown" with the reason in `error`.
    """
    path = Path(run_dir) / STATUS_FILE
    try:
        status = _read_json(path)
        if not isinstance(status, dict) or status.get("state") not in STATES:
            raise ValueError(f"no valid 'state' in {path}")
    except FileNotFoundError:
        return {"state": "unknown", "error": f"{path} is missing"}
    except (OSError, ValueError) as e:
        return {"state": "unknown", "error": f"cannot read {path}: {e}"}

    if status["state"] not in RUN_ACTIVE_STATES:
        return status
    alive: bool | None = None
    pid = status.get("pid")
    if isinstance(pid, int) and status.get("hostname") == socket.gethostname():
        alive = pid_alive(pid, status.get("pid_start"))
    if alive is None:
        updated = _parse_time(status.get("updated_at"))
        if updated is not None:
            age = (datetime.now(UTC) - updated).total_seconds()
            alive = age <= stale_after_s
    if alive is False:
        host = status.get("hostname") or "an unknown host"
        status = {
            **status,
            "recorded_state": status["state"],
            "state": "interrupted",
            "error": status.get("error")
            or f"the training process (pid {pid} on {host}) stopped without finishing; "
            "resume from the last checkpoint or start a new run.",
        }
    return status


def mark_interrupted_runs(
    output_dir: str | Path, stale_after_s: float = STALE_AFTER_S
) -> list[str]:
    """Rewrite status.json of runs left queued/running by a dead process; return their ids.

    Call once at app start-up, so the files agree with what read_status shows.
    """
    marked = []
    for run_dir in _run_folders(Path(output_dir)):
        status = read_status(run_dir, stale_after_s)
        if status.get("state") == "interrupted" and status.get("recorded_state"):
            write_status(run_dir, "interrupted", error=status.get("error"))
            marked.append(run_dir.name)
    return marked


# ---------------------------------------------------------------------------------------------
# metrics


def append_metrics(run_dir: str | Path, record: Mapping[str, Any]) -> None:
    """Append `record` as one JSON line to metrics.jsonl (adds `time` when missing).

    The line is written with one call and flushed, so a concurrent reader sees whole lines
    or, at worst, a truncated last line, which read_metrics skips. No fsync: a killed
    process loses nothing already flushed, and an fsync per step would slow training on
    network disks; only a machine crash can lose the last lines.
    """
    record = dict(record)
    record.setdefault("time", _now())
    line = json.dumps(_to_json_safe(record), allow_nan=False) + "\n"
    with open(Path(run_dir) / METRICS_FILE, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()


def read_metrics(run_dir: str | Path) -> pd.DataFrame:
    """Return metrics.jsonl as a DataFrame (empty when absent); unreadable lines are skipped."""
    path = Path(run_dir) / METRICS_FILE
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return pd.DataFrame()
    except OSError:
        return pd.DataFrame()
    records = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue  # a line still being written by the trainer
        if isinstance(obj, dict):
            records.append(obj)
    return pd.DataFrame.from_records(records)


# ---------------------------------------------------------------------------------------------
# adapter and checkpoints


def adapter_staging_dir(run_dir: str | Path) -> Path:
    """Return an empty `adapter.partial/` to save the adapter into (emptied if it exists)."""
    staging = Path(run_dir) / ADAPTER_STAGING_DIR
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    return staging


def finalize_adapter(run_dir: str | Path) -> Path:
    """Rename `adapter.partial/` to `adapter/` (replacing an older one); return the new path."""
    run_dir = Path(run_dir)
    staging = run_dir / ADAPTER_STAGING_DIR
    if not staging.is_dir() or not any(staging.iterdir()):
        raise RunError(
            f"{staging} is missing or empty; save the adapter into adapter_staging_dir() "
            "before finalize_adapter()."
        )
    final = run_dir / ADAPTER_DIR
    old = run_dir / f".{ADAPTER_DIR}.old"
    if final.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)  # a directory cannot be renamed over a non-empty one
    os.replace(staging, final)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)
    return final


def adapter_dir(run_dir: str | Path) -> Path | None:
    """Return `adapter/` of a completed run, else None (never the partial one)."""
    final = Path(run_dir) / ADAPTER_DIR
    if read_status(run_dir).get("state") != "completed":
        return None
    if not final.is_dir() or not any(final.iterdir()):
        return None
    return final


def checkpoint_dir(run_dir: str | Path) -> Path:
    """Return `checkpoints/` (created). Save each checkpoint under another name first, e.g.
    `step-N.partial/`, and rename it to `step-N/` when complete."""
    path = Path(run_dir) / CHECKPOINTS_DIR
    path.mkdir(parents=True, exist_ok=True)
    return path


def find_checkpoint(run_dir: str | Path) -> Path | None:
    """Return the complete `checkpoints/step-N/` with the largest N, or None."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    best: tuple[int, Path] | None = None
    try:
        entries = list(root.iterdir())
    except OSError:
        return None
    for entry in entries:
        match = _CHECKPOINT.match(entry.name)
        if not match or not entry.is_dir() or not any(entry.iterdir()):
            continue
        step = int(match.group(1))
        if best is None or step > best[0]:
            best = (step, entry)
    return best[1] if best else None


# ---------------------------------------------------------------------------------------------
# evaluation and predictions


def write_eval(run_dir: str | Path, eval_dict: Mapping[str, Any]) -> Path:
    """Write eval.json atomically (the dict from noshow.evaluation.report.build_report, plus extras)."""
    path = Path(run_dir) / EVAL_FILE
    _write_json(path, dict(eval_dict))
    return path


def read_eval(run_dir: str | Path) -> dict[str, Any] | None:
    """Return eval.json as a dict, or None when the run has none yet."""
    path = Path(run_dir) / EVAL_FILE
    try:
        return _read_json(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise RunError(f"cannot read {path}: {e}") from e


def write_predictions(run_dir: str | Path, df: pd.DataFrame) -> Path:
    """Write predictions.parquet atomically; needs record_id, split, label, p_no_show."""
    missing = [c for c in PREDICTION_COLUMNS if c not in df.columns]
    if missing:
        raise RunError(
            f"predictions lack column(s) {missing}; provide {', '.join(PREDICTION_COLUMNS)}."
        )
    path = Path(run_dir) / PREDICTIONS_FILE
    table = df.reset_index(drop=True)
    write_atomic(path, lambda f: table.to_parquet(f, index=False), binary=True)
    return path


def read_predictions(run_dir: str | Path) -> pd.DataFrame | None:
    """Return predictions.parquet as a DataFrame, or None when the run has none yet."""
    path = Path(run_dir) / PREDICTIONS_FILE
    if not path.exists():
        return None
    try:
        return pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise RunError(f"cannot read {path}: {e}") from e


# ---------------------------------------------------------------------------------------------
# listing

_RUN_MARKERS = (CONFIG_FILE, STATUS_FILE, METRICS_FILE, ADAPTER_DIR, ADAPTER_STAGING_DIR)


def _run_folders(output_dir: Path) -> list[Path]:
    try:
        entries = list(output_dir.iterdir())
    except OSError:
        return []
    return [
        e
        for e in entries
        if e.is_dir()
        and not e.name.startswith(".")
        and (_RUN_ID.match(e.name) or any((e / m).exists() for m in _RUN_MARKERS))
    ]


def _auc(section: Any) -> float | None:
    if isinstance(section, Mapping):
        value = section.get("roc_auc")
        if isinstance(value, int | float):
            return float(value)
    return None


def _summarize(run_dir: Path) -> dict[str, Any]:
    status = read_status(run_dir)
    errors = [status["error"]] if status.get("error") else []
    try:
        train = read_config(run_dir).get("train") or {}
    except RunError as e:
        train = {}
        errors.append(str(e))
    try:
        report = read_eval(run_dir) or {}
    except RunError as e:
        report = {}
        errors.append(str(e))
    created = _parse_time(status.get("created_at"))
    if created is None:
        try:
            created = datetime.fromtimestamp(run_dir.stat().st_mtime, UTC)
        except OSError:
            created = None
    step = status.get("step")
    return {
        "run_id": run_dir.name,
        "approach": train.get("approach"),
        "model": train.get("model"),
        "state": status.get("state", "unknown"),
        "created": pd.Timestamp(created) if created else pd.NaT,
        "steps": int(step) if isinstance(step, int | float) else None,
        "test_roc_auc": _auc(report.get("model")),
        "baseline_roc_auc": _auc(report.get("baseline")),
        "adapter": adapter_dir(run_dir) is not None,
        "error": "; ".join(errors) or None,
        "path": str(run_dir),
        "before_training": bool(status.get("before_training")),  # failed before its first step
    }


def list_runs(output_dir: str | Path) -> pd.DataFrame:
    """Return one row per run folder (columns LIST_COLUMNS), newest first.

    A damaged folder gives a row with state "unknown" and the reason in `error`.
    """
    rows = [_summarize(d) for d in _run_folders(Path(output_dir))]
    if not rows:
        return pd.DataFrame(columns=LIST_COLUMNS)
    frame = pd.DataFrame(rows, columns=LIST_COLUMNS)
    frame = frame.sort_values(["created", "run_id"], ascending=False, na_position="last")
    return frame.reset_index(drop=True)


def write_adapter_metadata(folder: Path, **meta: Any) -> None:
    """noshow.json beside the PEFT files: approach, base model, threshold, template version."""
    from noshow.data.statements import TEMPLATE_VERSION

    meta = {"template_version": TEMPLATE_VERSION, "created_at": _now(), **meta}
    (folder / "noshow.json").write_text(json.dumps(meta, indent=2))
