"""JobManager: one background job at a time, progress, cancel, failures, thread safety.

Uses a fake train function with the real signature and real run folders (noshow.training.runs);
each test finishes in well under a second.

    .venv/bin/python -m pytest -q tests/test_jobs.py
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from noshow.config import RunConfig, TrainConfig
from noshow.training.jobs import JobBusyError, JobManager


def make_fake_train(steps: int = 5, step_s: float = 0.01, gate: threading.Event | None = None):
    """A train function that reports `steps` progress points, honouring should_stop."""

    def fake_train(config, *, run_dir=None, on_progress=None, should_stop=None):
        for step in range(1, steps + 1):
            if gate is not None:
                gate.wait(5)
            if should_stop and should_stop():
                return SimpleNamespace(run_dir=run_dir, state="cancelled", metrics={}, error=None)
            time.sleep(step_s)
            if on_progress:
                on_progress(
                    {
                        "phase": "training",
                        "step": step,
                        "total_steps": steps,
                        "loss": 1.0 / step,
                        "message": f"step {step}",
                    }
                )
        return SimpleNamespace(run_dir=run_dir, state="completed", metrics={"auc": 0.7}, error=None)

    return fake_train


def quick_config() -> RunConfig:
    return RunConfig(train=TrainConfig(max_steps=5, batch_size=4))


def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


def test_start_reports_progress_and_completes(tmp_path):
    jobs = JobManager(train_fn=make_fake_train(steps=5), runs_dir=tmp_path)
    job_id = jobs.start(quick_config())
    assert (tmp_path / job_id).is_dir()  # the folder exists before training starts
    assert jobs.wait(5)
    snap = jobs.snapshot()
    assert snap["run_id"] == job_id
    assert snap["state"] == "completed"
    assert snap["active"] is False
    assert snap["progress"]["step"] == 5
    assert [p["step"] for p in snap["history"]] == [1, 2, 3, 4, 5]
    assert "step 5" in snap["log"]
    assert snap["error"] is None


def test_run_is_created_in_the_managers_runs_dir(tmp_path):
    seen = {}

    def fake_train(config, *, run_dir=None, on_progress=None, should_stop=None):
        seen["output_dir"] = config.train.output_dir
        seen["run_dir"] = Path(run_dir)
        return SimpleNamespace(state="completed", error=None)

    jobs = JobManager(train_fn=fake_train, runs_dir=tmp_path / "runs")
    job_id = jobs.start(quick_config())
    jobs.wait(5)
    assert seen["output_dir"] == str(tmp_path / "runs")
    assert seen["run_dir"] == tmp_path / "runs" / job_id


def test_second_start_while_running_is_refused_naming_the_running_job(tmp_path):
    gate = threading.Event()
    jobs = JobManager(train_fn=make_fake_train(steps=2, gate=gate), runs_dir=tmp_path)
    job_id = jobs.start(quick_config())
    with pytest.raises(JobBusyError, match=job_id):
        jobs.start(quick_config())
    gate.set()
    assert jobs.wait(5)
    assert jobs.snapshot()["state"] == "completed"


def test_cancel_stops_the_job_within_one_step(tmp_path):
    """The step that runs when the cancel arrives is the last one: the training function's
    next stop check sees the request and no further step starts."""
    seen: dict[str, int] = {}
    fake = make_fake_train(steps=1000, step_s=0.2)  # a thread switch never spans a step

    def train_fn(config, *, run_dir=None, on_progress=None, should_stop=None):
        def watched_stop() -> bool:
            stop = should_stop()
            if stop and "stop_seen_after" not in seen:
                seen["stop_seen_after"] = jobs.snapshot()["progress"].get("step", 0)
            return stop

        return fake(config, run_dir=run_dir, on_progress=on_progress, should_stop=watched_stop)

    jobs = JobManager(train_fn=train_fn, runs_dir=tmp_path)
    job_id = jobs.start(quick_config())
    wait_until(lambda: jobs.snapshot()["progress"].get("step", 0) >= 3)
    step_at_cancel = jobs.snapshot()["progress"]["step"]
    assert jobs.cancel(job_id) is True
    assert jobs.wait(30)  # the thread ends after cleanup (gc in a big test process)
    snap = jobs.snapshot()
    assert snap["state"] == "cancelled"
    # at most the step in flight finished after the request; nothing ran after the check
    assert snap["progress"]["step"] <= step_at_cancel + 1
    assert seen["stop_seen_after"] == snap["progress"]["step"]
    assert any("Cancel requested" in line for line in snap["log"])


def test_cancel_with_another_job_id_is_ignored(tmp_path):
    gate = threading.Event()
    jobs = JobManager(train_fn=make_fake_train(steps=2, gate=gate), runs_dir=tmp_path)
    jobs.start(quick_config())
    assert jobs.cancel("not-this-run") is False
    gate.set()
    jobs.wait(5)
    assert jobs.snapshot()["state"] == "completed"


def test_cancel_without_a_running_job_returns_false(tmp_path):
    assert JobManager(train_fn=make_fake_train(), runs_dir=tmp_path).cancel() is False


def test_exception_in_training_marks_failed_and_manager_starts_again(tmp_path):
    calls = []

    def flaky_train(config, *, run_dir=None, on_progress=None, should_stop=None):
        calls.append(run_dir)
        if len(calls) == 1:
            raise RuntimeError("CUDA out of memory (fake)")
        return SimpleNamespace(state="completed", error=None)

    jobs = JobManager(train_fn=flaky_train, runs_dir=tmp_path)
    first = jobs.start(quick_config())
    jobs.wait(5)
    snap = jobs.snapshot()
    assert snap["state"] == "failed"
    assert "CUDA out of memory (fake)" in snap["error"]
    from noshow.training.runs import read_status

    assert read_status(tmp_path / first)["state"] == "failed"

    second = jobs.start(quick_config())
    jobs.wait(5)
    assert second != first
    assert jobs.snapshot()["state"] == "completed"


def test_failed_result_from_train_keeps_its_error(tmp_path):
    def failing_train(config, *, run_dir=None, on_progress=None, should_stop=None):
        return SimpleNamespace(state="failed", error="Hub not reachable: set HF_TOKEN")

    jobs = JobManager(train_fn=failing_train, runs_dir=tmp_path)
    jobs.start(quick_config())
    jobs.wait(5)
    snap = jobs.snapshot()
    assert (snap["state"], snap["error"]) == ("failed", "Hub not reachable: set HF_TOKEN")


def test_snapshot_before_any_job_is_idle(tmp_path):
    snap = JobManager(train_fn=make_fake_train(), runs_dir=tmp_path).snapshot()
    assert snap["state"] == "idle" and snap["run_id"] is None and snap["active"] is False


def test_snapshot_after_completion_still_shows_the_last_job(tmp_path):
    jobs = JobManager(train_fn=make_fake_train(steps=3), runs_dir=tmp_path)
    job_id = jobs.start(quick_config())
    jobs.wait(5)
    time.sleep(0.05)
    snap = jobs.snapshot()
    assert snap["run_id"] == job_id and snap["state"] == "completed"
    assert snap["finished_at"] is not None and snap["elapsed_s"] > 0


def test_concurrent_starts_from_ten_threads_accept_exactly_one(tmp_path):
    gate = threading.Event()
    jobs = JobManager(train_fn=make_fake_train(steps=1, gate=gate), runs_dir=tmp_path)
    barrier = threading.Barrier(10)
    accepted, refused = [], []

    def try_start():
        barrier.wait()
        try:
            accepted.append(jobs.start(quick_config()))
        except JobBusyError:
            refused.append(1)

    threads = [threading.Thread(target=try_start) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    gate.set()
    jobs.wait(5)
    assert len(accepted) == 1 and len(refused) == 9
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == accepted


def test_start_refuses_a_non_config(tmp_path):
    with pytest.raises(TypeError, match="RunConfig"):
        JobManager(train_fn=make_fake_train(), runs_dir=tmp_path).start({"train": {}})
