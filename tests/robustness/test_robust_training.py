"""Training faults, as tables, on a tiny random Llama (2 layers, hidden 16) and the bundled
synthetic data: invalid configurations, out of memory, a NaN loss, missing model or data,
cancel at every phase, disk full while saving, the process killed mid-run (then resumed),
and two starts at once. Every case ends with the same check: the run folder says what
happened (status.json), nothing in it looks like a finished adapter unless the run
completed, and no temporary file is left behind.

    .venv/bin/python -m pytest -q tests/robustness/test_robust_training.py
"""

from __future__ import annotations

import errno
import importlib.util
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from robust_helpers import REPO, half_written

from noshow.config import ConfigError, DataConfig, LoraSettings, RunConfig, TrainConfig
from noshow.modeling.approaches.classifier import classifier_batch_loss as _real_batch_loss
from noshow.training import runs
from noshow.training.recipe import train

# Staging names that never count as finished (noshow.training.runs); everything else half-written fails.
STAGING = {"adapter.partial"}


def tiny_config(model_dir: Path, output_dir: Path, approach: str = "classifier", **train_kw):
    data_kw = {k: train_kw.pop(k) for k in ("source", "max_train_rows") if k in train_kw}
    return RunConfig(
        data=DataConfig(
            **{"source": "synthetic", "max_train_rows": 64, "max_eval_rows": 64, **data_kw}
        ),
        lora=LoraSettings(r=4, alpha=8, dropout=0.0),
        train=TrainConfig(
            **{
                "approach": approach,
                "model": str(model_dir),
                "quantize": "none",
                "max_steps": 3,
                "batch_size": 16,
                "lr": 1e-3,
                "output_dir": str(output_dir),
                **train_kw,
            }
        ),
    )


def assert_run_left_consistent(run_dir: Path, state: str, error: str | None = None) -> None:
    """status.json tells the truth, the runs table agrees, and only a completed run offers an
    adapter that scripts, the Compare tab and list_runs would use."""
    from noshow.inference.predict import PredictError, resolve_adapter_dir

    status = runs.read_status(run_dir)
    assert status["state"] == state, status
    if error is not None:
        assert error in (status.get("error") or ""), status
    row = runs.list_runs(run_dir.parent).set_index("run_id").loc[run_dir.name]
    assert row["state"] == state
    assert bool(row["adapter"]) == (state == "completed")
    if state == "completed":
        assert runs.adapter_dir(run_dir) is not None
    else:
        assert not (run_dir / runs.ADAPTER_DIR).exists()
        assert runs.adapter_dir(run_dir) is None
        with pytest.raises(PredictError):
            resolve_adapter_dir(run_dir)
    leftovers = [p for p in half_written(run_dir, allowed=STAGING) if ".partial" not in p]
    assert leftovers == [], leftovers  # temporary files are always removed
    for partial in (run_dir / runs.CHECKPOINTS_DIR).glob(".step-*.partial"):
        assert runs.find_checkpoint(run_dir) != partial  # never offered for resuming
    if state in ("cancelled", "failed"):  # a run that ended by itself cleans up after itself
        assert not (run_dir / runs.ADAPTER_STAGING_DIR).exists()
        assert not list((run_dir / runs.CHECKPOINTS_DIR).glob(".step-*.partial"))


# ----------------------------------------------------------------------------- configuration

INVALID_CONFIGS = {
    "learning rate 0": (
        lambda: TrainConfig(lr=0),
        "lr must be a number above 0 and below 1 (the default is 0.001); got 0.",
    ),
    "learning rate 5": (lambda: TrainConfig(lr=5), "lr must be a number above 0 and below 1"),
    "batch size 0": (
        lambda: TrainConfig(batch_size=0),
        "batch_size must be a whole number of at least 1 (the default is 256); got 0.",
    ),
    "batch size 2.5": (
        lambda: TrainConfig(batch_size=2.5),
        "batch_size must be a whole number of at least 1 (the default is 256); got 2.5.",
    ),
    "unknown approach": (lambda: TrainConfig(approach="regression"), "approach must be"),
    "8-bit quantization": (lambda: TrainConfig(quantize="8bit"), "quantize must be one of"),
    "max length 8": (
        lambda: TrainConfig(max_length=8),
        "max_length must be a whole number of at least 32",
    ),
    "negative max steps": (
        lambda: TrainConfig(max_steps=-1),
        "max_steps must be None (= run epochs) or a whole number of at least 1; got -1.",
    ),
    "zero epochs": (lambda: TrainConfig(epochs=0), "epochs must be a number above 0"),
    "empty model name": (lambda: TrainConfig(model="  "), "model must name a preset"),
    "weekly split": (lambda: DataConfig(split="weekly"), "split must be one of time"),
    "zero training rows": (lambda: DataConfig(max_train_rows=0), "max_train_rows must be"),
    "LoRA r 0": (lambda: LoraSettings(r=0), "lora_r must be a whole number of at least 1"),
    "LoRA dropout 1": (
        lambda: LoraSettings(dropout=1.0),
        "lora_dropout must be a number of at least 0 and below 1",
    ),
    "unknown LoRA module": (lambda: LoraSettings(target_modules=["attn"]), "Unknown target"),
    "unknown key in a saved config": (
        lambda: RunConfig.from_dict({"train": {"learning_rate": 1e-3}}),
        "Invalid run configuration",
    ),
}


@pytest.mark.parametrize("name", list(INVALID_CONFIGS))
def test_invalid_config_is_refused_with_a_fix_before_anything_is_written(name, tmp_path):
    build, message = INVALID_CONFIGS[name]
    with pytest.raises(ConfigError) as err:
        build()
    assert message in str(err.value)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- failures


def _oom(*args, **kwargs):
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def _nan_loss(model, batch):
    return _real_batch_loss(model, batch) * float("nan")


def _disk_full(what: str):
    def fail(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), what)

    return fail


def _disk_full_after_a_partial_file(self, folder, *args, **kwargs):
    (Path(folder) / "adapter_model.safetensors").write_bytes(b"\x00" * 1000)  # half of it
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder))


FAILURES = {
    "out of memory in every step": (
        {},
        lambda mp: mp.setattr("noshow.modeling.approaches.classifier.classifier_batch_loss", _oom),
        "Out of GPU memory (batch size 16, max length 256, quantize none). Lower --batch-size",
    ),
    "loss becomes NaN": (
        {},
        lambda mp: mp.setattr(
            "noshow.modeling.approaches.classifier.classifier_batch_loss", _nan_loss
        ),
        "The loss became nan at step 1: lower the learning rate",
    ),
    "disk full while saving the adapter": (
        {},
        lambda mp: mp.setattr("peft.PeftModel.save_pretrained", _disk_full_after_a_partial_file),
        "No space left on device",
    ),
    "disk full while saving a checkpoint": (
        {"eval_every": 1},
        lambda mp: mp.setattr(torch, "save", _disk_full("checkpoints/.step-1.partial/state.pt")),
        "No space left on device",
    ),
    "model folder that does not exist": (
        {"model": "/nonexistent/llama"},
        lambda mp: None,
        "/nonexistent/llama",
    ),
    "data file that does not exist": (
        {"source": "/nonexistent/appointments.csv"},
        lambda mp: None,
        "/nonexistent/appointments.csv does not exist",
    ),
    "batch larger than the training rows": (
        {"batch_size": 128},
        lambda mp: None,
        "batch size 128 is larger than the 64 training rows: lower batch_size",
    ),
}


@pytest.mark.parametrize("name", list(FAILURES))
def test_failure_ends_the_run_failed_with_a_clear_message(
    name, tiny_model_dir, tmp_path, monkeypatch
):
    overrides, patch, message = FAILURES[name]
    patch(monkeypatch)
    result = train(tiny_config(tiny_model_dir, tmp_path, **overrides))
    assert result.state == "failed"
    assert message in result.error, result.error
    assert "Traceback" not in result.error  # the traceback goes to error.log only
    assert (result.run_dir / "error.log").is_file()
    assert_run_left_consistent(result.run_dir, "failed", message)


# ----------------------------------------------------------------------------- cancel

PHASES = ["loading", "training", "evaluating", "saving"]


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("approach", ["classifier", "generative"])
def test_cancel_at_each_phase_stops_cleanly(phase, approach, tiny_model_dir, tmp_path):
    """should_stop turns true once the loop has reported `phase` (for 'training': after the
    first step)."""
    seen: list[str] = []
    started = time.time()
    result = train(
        tiny_config(tiny_model_dir, tmp_path, approach),
        on_progress=lambda p: seen.append(p.get("phase")),
        should_stop=lambda: phase in seen,
    )
    assert time.time() - started < 120  # a hang guard
    assert result.state == "cancelled", (result.state, result.error)
    assert phase in seen and seen[-1] == "done"
    assert_run_left_consistent(result.run_dir, "cancelled")
    steps = runs.read_metrics(result.run_dir)
    last_step = 0 if steps.empty else int(steps["step"].max())
    assert last_step == {"loading": 0, "training": 1}.get(phase, 3)
    assert (result.run_dir / runs.EVAL_FILE).exists() == (phase == "saving")


# ----------------------------------------------------------------------------- killed mid-run

CHILD = textwrap.dedent(
    """
    import runpy, sys, time
    import noshow.training.loop as t

    def hang_after(original, marker, when=lambda *a: True):
        def wrapper(*args, **kwargs):
            out = original(*args, **kwargs)
            if when(*args):
                print(marker, flush=True)
                time.sleep(600)  # the test kills the process here
            return out
        return wrapper

    if sys.argv[1] == "checkpoint":
        t._save_checkpoint = hang_after(t._save_checkpoint, "CHECKPOINT")
    else:
        t.TrainingSession.record_metrics = hang_after(
            t.TrainingSession.record_metrics, "STEP", lambda self, record: "loss" in record
        )
    sys.argv = ["scripts/train.py", *sys.argv[2:]]
    runpy.run_path("scripts/train.py", run_name="__main__")
    """
)


def _train_args(model_dir: Path, output_dir: Path) -> list[str]:
    return [
        "--approach", "classifier", "--model", str(model_dir), "--data", "synthetic",
        "--max-train-rows", "128", "--max-eval-rows", "64", "--batch-size", "8",
        "--max-steps", "6", "--eval-every", "2", "--lr", "1e-3", "--lora-r", "4",
        "--quantize", "none", "--output-dir", str(output_dir),
        "--yes",  # evaluated on 64 rows: the CLI asks first otherwise
    ]  # fmt: skip


def train_script():
    spec = importlib.util.spec_from_file_location("noshow_train_script", REPO / "scripts/train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}


@pytest.mark.parametrize("when", ["checkpoint", "step"], ids=["first checkpoint", "first step"])
def test_killed_process_reads_interrupted_and_resumes_to_completion(when, tiny_model_dir, tmp_path):
    out = tmp_path / "runs"
    child_log = open(tmp_path / "child.log", "wb")  # noqa: SIM115 - closed below
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, when, *_train_args(tiny_model_dir, out)],
        cwd=REPO,
        env=_child_env(),
        stdout=subprocess.PIPE,
        stderr=child_log,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in child.stdout], daemon=True).start()
    marker = {"checkpoint": "CHECKPOINT", "step": "STEP"}[when]
    try:
        deadline = time.time() + 180
        while True:
            assert time.time() < deadline, (tmp_path / "child.log").read_text()[-3000:]
            try:
                if lines.get(timeout=1).strip() == marker:
                    break
            except queue.Empty:
                assert child.poll() is None, (tmp_path / "child.log").read_text()[-3000:]
        os.kill(child.pid, signal.SIGKILL)  # kill -9: no cleanup code runs
    finally:
        child.kill()
        child.wait(30)
        child_log.close()

    (run_dir,) = list(out.iterdir())
    assert runs.read_status(run_dir)["state"] == "interrupted"
    assert runs.mark_interrupted_runs(out) == [run_dir.name]  # what the app does at start-up
    assert_run_left_consistent(run_dir, "interrupted", "stopped without finishing")
    has_checkpoint = runs.find_checkpoint(run_dir) is not None
    assert has_checkpoint == (when == "checkpoint")

    # scripts/train.py --resume RUN_DIR, run in this process (a second interpreter start
    # would add 10 s and test nothing more).
    assert train_script().main(["--resume", str(run_dir)]) == 0
    assert_run_left_consistent(run_dir, "completed")
    log = (run_dir / "train.log").read_text()
    assert ("Resumed from step-2" in log) == has_checkpoint
    assert ("No checkpoint to resume from" in log) == (not has_checkpoint)
    steps = runs.read_metrics(run_dir)["step"].dropna()
    assert steps.max() == 6


# ----------------------------------------------------------------------------- the job manager


def test_second_start_is_refused_naming_the_running_job(tiny_model_dir, tmp_path):
    from noshow.training.jobs import JobBusyError, JobManager

    jobs = JobManager(runs_dir=tmp_path)
    first = jobs.start(tiny_config(tiny_model_dir, tmp_path, max_steps=200))
    try:
        with pytest.raises(JobBusyError, match=f"already running \\(run {first}\\)"):
            jobs.start(tiny_config(tiny_model_dir, tmp_path))
    finally:
        jobs.cancel()
        assert jobs.wait(120)
    assert [p.name for p in tmp_path.iterdir()] == [first]  # the refused start left nothing
    assert jobs.snapshot()["state"] in ("cancelled", "completed")


def test_two_starts_at_the_same_moment_accept_exactly_one(tiny_model_dir, tmp_path):
    from noshow.training.jobs import JobBusyError, JobManager

    jobs = JobManager(runs_dir=tmp_path)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def start() -> None:
        barrier.wait()
        try:
            outcomes.append("started " + jobs.start(tiny_config(tiny_model_dir, tmp_path)))
        except JobBusyError as e:
            outcomes.append(str(e))

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    jobs.cancel()
    assert jobs.wait(120)
    started = [o.removeprefix("started ") for o in outcomes if o.startswith("started ")]
    assert len(started) == 1, outcomes
    refused = next(o for o in outcomes if not o.startswith("started "))
    assert f"already running (run {started[0]})" in refused
    assert [p.name for p in tmp_path.iterdir()] == started


def test_disk_full_when_creating_the_run_folder_leaves_no_folder(
    tiny_model_dir, tmp_path, monkeypatch
):
    from noshow.training.jobs import JobError, JobManager

    jobs = JobManager(runs_dir=tmp_path)
    monkeypatch.setattr(runs, "_write_json", _disk_full("config.json"))
    with pytest.raises(JobError, match="the disk is full; free some space"):
        jobs.start(tiny_config(tiny_model_dir, tmp_path))
    assert list(tmp_path.iterdir()) == []  # no half-made run folder in the runs table
    assert not jobs.is_busy()
    monkeypatch.undo()
    run_id = jobs.start(tiny_config(tiny_model_dir, tmp_path))  # and it starts again
    assert jobs.wait(120)
    assert jobs.snapshot()["state"] == "completed", jobs.snapshot()["error"]
    assert_run_left_consistent(tmp_path / run_id, "completed")


def test_a_failed_job_reports_its_message_and_the_manager_starts_again(
    tiny_model_dir, tmp_path, monkeypatch
):
    from noshow.training.jobs import JobManager

    jobs = JobManager(runs_dir=tmp_path)
    monkeypatch.setattr("noshow.modeling.approaches.classifier.classifier_batch_loss", _oom)
    failed = jobs.start(tiny_config(tiny_model_dir, tmp_path))
    assert jobs.wait(120)
    snap = jobs.snapshot()
    assert snap["state"] == "failed" and "Out of GPU memory" in snap["error"]
    assert_run_left_consistent(tmp_path / failed, "failed", "Out of GPU memory")
    monkeypatch.undo()
    again = jobs.start(tiny_config(tiny_model_dir, tmp_path))
    assert jobs.wait(120) and jobs.snapshot()["state"] == "completed"
    assert again != failed
    assert np.isfinite(runs.read_eval(tmp_path / again)["model"]["roc_auc"])
