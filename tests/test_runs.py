"""Run folders: creation, status life cycle, interrupted runs, metrics lines, adapter and
checkpoint staging, listing. Run with `.venv/bin/python -m pytest -q tests/test_runs.py`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from noshow.config import RunConfig, TrainConfig
from noshow.training.runs import (
    RunError,
    adapter_dir,
    adapter_staging_dir,
    append_metrics,
    checkpoint_dir,
    create_run,
    finalize_adapter,
    find_checkpoint,
    list_runs,
    mark_interrupted_runs,
    new_run_id,
    read_eval,
    read_metrics,
    read_predictions,
    read_status,
    write_eval,
    write_predictions,
    write_status,
)


@pytest.fixture
def output_dir(tmp_path) -> Path:
    return tmp_path / "runs"


@pytest.fixture
def config(output_dir) -> RunConfig:
    return RunConfig(train=TrainConfig(approach="classifier", output_dir=str(output_dir)))


@pytest.fixture
def run_dir(config) -> Path:
    return create_run(config)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped, so nothing holds this pid any more
    return proc.pid


def _save_adapter(run_dir: Path) -> None:
    staging = adapter_staging_dir(run_dir)
    (staging / "adapter_config.json").write_text("{}")
    (staging / "adapter_model.safetensors").write_bytes(b"weights")


def test_run_id_is_sortable_and_slugs_hub_ids_and_paths():
    hub = new_run_id("classifier", "meta-llama/Llama-3.1-8B-Instruct")
    assert re.fullmatch(r"\d{8}-\d{6}-classifier-llama-3\.1-8b-instruct-[0-9a-f]{4}", hub)
    path = new_run_id("generative", "/home/me/My Models/Smol LM (v2)/")
    assert re.fullmatch(r"\d{8}-\d{6}-generative-smol-lm-v2-[0-9a-f]{4}", path)
    windows = new_run_id("classifier", r"C:\models\tiny")
    assert re.fullmatch(r"\d{8}-\d{6}-classifier-tiny-[0-9a-f]{4}", windows)
    assert re.fullmatch(
        r"\d{8}-\d{6}-classifier-model-[0-9a-f]{4}", new_run_id("classifier", "///")
    )


def test_create_run_writes_config_and_queued_status_in_config_output_dir(config, output_dir):
    run_dir = create_run(config)
    assert run_dir.parent == output_dir
    assert "-classifier-smollm2-135m-instruct-" in run_dir.name
    saved = json.loads((run_dir / "config.json").read_text())
    assert RunConfig.from_dict(saved) == config
    status = read_status(run_dir)
    assert status["state"] == "queued"
    assert status["pid"] == os.getpid()
    assert status["finished_at"] is None


def test_create_run_refuses_existing_folder(config, output_dir):
    create_run(config, run_id="fixed")
    with pytest.raises(RunError, match="already exists; choose another --output-dir or run id"):
        create_run(config, run_id="fixed")


def test_create_run_refuses_run_id_with_path_separator(config):
    with pytest.raises(RunError, match="plain folder name"):
        create_run(config, run_id="../escape")


def test_config_json_never_holds_secrets(tmp_path):
    config = {
        "train": {
            "approach": "classifier",
            "model": "m",
            "hf_token": "hf_abcdefghijklmnopqrstuvwx",
        },
        "wandb": {"api_key": "0123", "project": "noshow", "Password": "pw", "client_secret": "s"},
        "data": {"source": "https://example.org/x.csv?t=hf_abcdefghijklmnopqrstuvwx"},
    }
    run_dir = create_run(config, output_dir=tmp_path)
    text = (run_dir / "config.json").read_text()
    saved = json.loads(text)
    assert "hf_abcdefghijklmnopqrstuvwx" not in text
    assert saved["wandb"] == {"project": "noshow"}
    assert saved["train"] == {"approach": "classifier", "model": "m"}
    assert saved["data"]["source"] == "https://example.org/x.csv?t=hf_<redacted>"


def test_status_moves_through_running_to_completed_and_keeps_extras(run_dir):
    running = write_status(run_dir, "running", step=0, total_steps=10, wandb_url="http://wandb/x")
    assert running["started_at"] is not None
    write_status(run_dir, "running", step=5)
    status = read_status(run_dir)
    assert (status["state"], status["step"], status["total_steps"]) == ("running", 5, 10)
    assert status["wandb_url"] == "http://wandb/x"
    assert status["started_at"] == running["started_at"]
    write_status(run_dir, "completed", step=10)
    status = read_status(run_dir)
    assert status["state"] == "completed"
    assert status["finished_at"] is not None
    assert status["error"] is None
    assert status["pid"] == os.getpid()
    assert not list(run_dir.glob("*.tmp")) and not list(run_dir.glob(".*.tmp"))


def test_failed_status_records_error_and_resume_clears_it(run_dir):
    write_status(run_dir, "failed", error="CUDA out of memory: lower --batch-size")
    assert read_status(run_dir)["error"] == "CUDA out of memory: lower --batch-size"
    write_status(run_dir, "running")
    status = read_status(run_dir)
    assert status["error"] is None and status["finished_at"] is None


def test_write_status_refuses_unknown_state(run_dir):
    with pytest.raises(RunError, match="unknown run state 'done'"):
        write_status(run_dir, "done")


def test_running_status_of_dead_process_reads_as_interrupted_without_rewriting(run_dir):
    write_status(run_dir, "running", pid=_dead_pid(), step=3)
    status = read_status(run_dir)
    assert status["state"] == "interrupted"
    assert status["recorded_state"] == "running"
    assert "stopped without finishing" in status["error"]
    assert json.loads((run_dir / "status.json").read_text())["state"] == "running"


def test_running_status_of_live_process_reads_as_running(run_dir):
    write_status(run_dir, "running")  # this test process is alive
    assert read_status(run_dir)["state"] == "running"


def test_reused_pid_reads_as_interrupted(run_dir):
    # Our own pid, but recorded with another start time: the process that wrote it is gone.
    status = write_status(run_dir, "running")
    if status["pid_start"] is None:
        pytest.skip("no /proc on this system; the start-time check cannot run")
    write_status(run_dir, "running", pid_start=status["pid_start"] + 1)
    assert read_status(run_dir)["state"] == "interrupted"


def test_other_host_run_is_judged_by_heartbeat_age(run_dir):
    write_status(run_dir, "running", hostname="some-other-host", pid=1)
    assert read_status(run_dir)["state"] == "running"
    path = run_dir / "status.json"
    status = json.loads(path.read_text())
    status["updated_at"] = (datetime.now(UTC) - timedelta(minutes=11)).isoformat()
    path.write_text(json.dumps(status))
    assert read_status(run_dir)["state"] == "interrupted"
    assert read_status(run_dir, stale_after_s=3600)["state"] == "running"


def test_mark_interrupted_runs_rewrites_only_dead_runs(config, output_dir):
    dead = create_run(config, run_id="dead")
    live = create_run(config, run_id="live")
    done = create_run(config, run_id="done")
    write_status(dead, "running", pid=_dead_pid())
    write_status(live, "running")
    write_status(done, "completed")
    assert mark_interrupted_runs(output_dir) == ["dead"]
    saved = json.loads((dead / "status.json").read_text())
    assert saved["state"] == "interrupted" and saved["finished_at"] is not None
    assert read_status(live)["state"] == "running"
    assert read_status(done)["state"] == "completed"


def test_missing_or_corrupt_status_reads_as_unknown(tmp_path):
    assert read_status(tmp_path)["state"] == "unknown"
    assert "missing" in read_status(tmp_path)["error"]
    (tmp_path / "status.json").write_text('{"state": "runn')
    status = read_status(tmp_path)
    assert status["state"] == "unknown" and "cannot read" in status["error"]


def test_metrics_round_trip_and_truncated_last_line_is_skipped(run_dir):
    append_metrics(run_dir, {"step": 1, "loss": 0.7})
    append_metrics(run_dir, {"step": 2, "loss": 0.6, "eval_roc_auc": 0.71})
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "loss": 0.5')  # the trainer is mid-write
    df = read_metrics(run_dir)
    assert df["step"].tolist() == [1, 2]
    assert df["loss"].tolist() == [0.7, 0.6]
    assert df["eval_roc_auc"].iloc[1] == 0.71
    assert "time" in df.columns


def test_metrics_of_new_run_is_an_empty_frame(run_dir):
    assert read_metrics(run_dir).empty


def test_partial_adapter_is_never_reported(run_dir):
    _save_adapter(run_dir)
    write_status(run_dir, "completed")
    assert adapter_dir(run_dir) is None  # staged but not finalized
    final = finalize_adapter(run_dir)
    assert adapter_dir(run_dir) == final == run_dir / "adapter"
    assert not (run_dir / "adapter.partial").exists()


def test_finalized_adapter_of_failed_run_is_not_reported(run_dir):
    _save_adapter(run_dir)
    finalize_adapter(run_dir)
    write_status(run_dir, "failed", error="evaluation crashed")
    assert adapter_dir(run_dir) is None


def test_staging_dir_is_emptied_and_finalize_refuses_empty_staging(run_dir):
    _save_adapter(run_dir)
    staging = adapter_staging_dir(run_dir)
    assert list(staging.iterdir()) == []
    with pytest.raises(RunError, match="missing or empty"):
        finalize_adapter(run_dir)


def test_finalize_adapter_replaces_an_older_adapter(run_dir):
    _save_adapter(run_dir)
    finalize_adapter(run_dir)
    staging = adapter_staging_dir(run_dir)
    (staging / "adapter_config.json").write_text('{"new": true}')
    final = finalize_adapter(run_dir)
    assert [p.name for p in final.iterdir()] == ["adapter_config.json"]
    assert json.loads((final / "adapter_config.json").read_text()) == {"new": True}


def test_checkpoint_discovery_ignores_partial_and_empty_checkpoints(run_dir):
    assert find_checkpoint(run_dir) is None
    root = checkpoint_dir(run_dir)
    for name in ("step-10", "step-200", "step-300.partial", "step-400", "checkpoint-500"):
        (root / name).mkdir()
    for name in ("step-10", "step-200", "step-300.partial", "checkpoint-500"):
        (root / name / "state.pt").write_bytes(b"x")
    # step-400 is empty (rename happened but nothing in it): not complete either.
    assert find_checkpoint(run_dir) == root / "step-200"


def test_eval_and_predictions_round_trip(run_dir):
    assert read_eval(run_dir) is None and read_predictions(run_dir) is None
    import numpy as np

    write_eval(run_dir, {"model": {"roc_auc": np.float64(0.74), "note": None, "x": float("nan")}})
    assert read_eval(run_dir) == {"model": {"roc_auc": 0.74, "note": None, "x": None}}
    preds = pd.DataFrame(
        {"record_id": [5, 6], "split": ["test", "test"], "label": [0, 1], "p_no_show": [0.1, 0.9]}
    )
    write_predictions(run_dir, preds)
    pd.testing.assert_frame_equal(read_predictions(run_dir), preds)


def test_write_predictions_refuses_missing_columns(run_dir):
    with pytest.raises(RunError, match=r"\['p_no_show'\]"):
        write_predictions(
            run_dir, pd.DataFrame({"record_id": [1], "split": ["test"], "label": [0]})
        )
    assert not (run_dir / "predictions.parquet").exists()


def test_list_runs_shows_each_run_newest_first_and_tolerates_broken_folders(config, output_dir):
    older = create_run(config, run_id="20260101-000000-classifier-a-0001")
    newer = create_run(config, run_id="20260102-000000-generative-b-0002")
    write_status(older, "running", step=4)
    _save_adapter(older)
    finalize_adapter(older)
    write_eval(older, {"model": {"roc_auc": 0.75}, "baseline": {"roc_auc": 0.72}})
    write_status(older, "completed", step=8)
    # Created later on disk but with an older timestamp: order comes from created_at.
    status = json.loads((newer / "status.json").read_text())
    status["created_at"] = "2026-01-02T00:00:00+00:00"
    (newer / "status.json").write_text(json.dumps(status))
    status = json.loads((older / "status.json").read_text())
    status["created_at"] = "2026-01-01T00:00:00+00:00"
    (older / "status.json").write_text(json.dumps(status))
    broken = output_dir / "20260103-000000-classifier-c-0003"
    broken.mkdir()
    (broken / "status.json").write_text("not json")
    (output_dir / "notes").mkdir()  # not a run: no run files, no run-id name

    runs = list_runs(output_dir)
    assert runs["run_id"].tolist() == [broken.name, newer.name, older.name]
    row = runs.set_index("run_id").loc[older.name]
    assert (row["approach"], row["model"], row["state"]) == (
        "classifier",
        "smollm2-135m-instruct",
        "completed",
    )
    assert (row["steps"], row["test_roc_auc"], row["baseline_roc_auc"]) == (8, 0.75, 0.72)
    assert bool(row["adapter"]) is True
    assert runs.set_index("run_id").loc[newer.name, "state"] == "queued"
    bad = runs.set_index("run_id").loc[broken.name]
    assert bad["state"] == "unknown" and "cannot read" in bad["error"]


def test_list_runs_of_missing_folder_is_empty(tmp_path):
    runs = list_runs(tmp_path / "nothing")
    assert runs.empty and "state" in runs.columns
