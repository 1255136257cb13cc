"""One background training job at a time: start, watch, cancel.

The app never trains inside a Gradio handler (Gradio stops generator handlers when the
browser disconnects, and a page reload would lose the job). Instead a `JobManager` owns a
single background thread per process, which is one job per GPU: a second `start` while a
job runs raises `JobBusyError` naming the running run. The page polls `snapshot()` on a
timer, so a reload or a second browser re-attaches to the same job.

    from noshow.config import RunConfig, TrainConfig
    from noshow.training.jobs import JobManager

    jobs = JobManager(runs_dir="runs")
    job_id = jobs.start(RunConfig(train=TrainConfig(max_steps=20)))
    jobs.snapshot()["progress"]      # latest progress dict from the training loop
    jobs.cancel()                    # the loop stops within one step
    jobs.wait()                      # block until the thread ends (scripts and tests)

Everything `snapshot()` hands to the UI (config, log lines, error) has its secrets redacted
(`noshow.system.redact.redact_secrets`: HF/W&B tokens, the login password), whatever training logged.

`train_fn` defaults to `noshow.training.recipe.train` (imported on first use so the app starts
without loading torch); tests pass a fake with the same signature. `start(config, gpus=n)`
with n > 1 runs `launch_fn` instead (default `noshow.training.distributed.launch_training`: torchrun
with n processes on scripts/train.py in the same pre-made run folder, its progress relayed
to this job, cancel through the run folder's cancel file).
"""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from noshow.config import RunConfig
from noshow.system.devices import free_accelerator_memory

TrainFn = Callable[..., Any]

LOG_TAIL_LINES = 50
# Enough points for smooth curves over a long run without growing without bound.
MAX_HISTORY_POINTS = 5000
# States of a job in this process (not of a run folder: see runs.RUN_ACTIVE_STATES).
JOB_ACTIVE_STATES = ("starting", "running", "cancelling")


class JobBusyError(RuntimeError):
    """A job is already running; the message names its run id."""


class JobError(RuntimeError):
    """A job could not be started (e.g. its run folder could not be created)."""


@dataclasses.dataclass
class _Job:
    job_id: str
    run_dir: Path
    config: RunConfig
    state: str = "starting"
    progress: dict[str, Any] = dataclasses.field(default_factory=dict)
    log: deque[str] = dataclasses.field(default_factory=lambda: deque(maxlen=LOG_TAIL_LINES))
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    started_at: float = dataclasses.field(default_factory=time.time)
    finished_at: float | None = None
    error: str | None = None
    cancel_event: threading.Event = dataclasses.field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    gpus: int = 1


def _default_train_fn(*args: Any, **kwargs: Any) -> Any:
    # Imported on first use: the training stack pulls in torch/transformers (seconds).
    from noshow.training.recipe import train

    return train(*args, **kwargs)


def _default_launch_fn(*args: Any, **kwargs: Any) -> Any:
    from noshow.training.distributed import launch_training

    return launch_training(*args, **kwargs)


def _default_create_run(config: RunConfig, output_dir: str | Path) -> Path:
    from noshow.training.runs import create_run

    return Path(create_run(config, output_dir))


def _write_failed_status(run_dir: Path, error: str) -> None:
    # The training code normally records its own failure; this covers exceptions that
    # escaped it, so the run folder never claims to be still running.
    try:
        from noshow.training.runs import write_status

        write_status(run_dir, "failed", error=error)
    except Exception:  # noqa: BLE001 - the in-memory record still has the error
        pass


class JobManager:
    """Owns one background training thread; thread-safe; keeps the last job for display."""

    def __init__(
        self,
        train_fn: TrainFn | None = None,
        runs_dir: str | Path = "runs",
        *,
        create_run_fn: Callable[[RunConfig, str | Path], Path] | None = None,
        launch_fn: TrainFn | None = None,
    ) -> None:
        self.train_fn: TrainFn = train_fn or _default_train_fn
        self.launch_fn: TrainFn = launch_fn or _default_launch_fn
        self.runs_dir = Path(runs_dir)
        self._create_run = create_run_fn or _default_create_run
        self._lock = threading.Lock()
        self._job: _Job | None = None

    # -- control ---------------------------------------------------------------------------

    def start(self, config: RunConfig, gpus: int = 1) -> str:
        """Create the run folder, start training in the background and return the job id.

        The job id is the run folder's name (the run id). Raises `JobBusyError` while another
        job is active and `JobError` when the run folder cannot be created. `gpus` > 1 trains
        data-parallel in a torchrun subprocess (`launch_fn`) instead of this process.
        """
        if not isinstance(config, RunConfig):
            raise TypeError(f"start() needs a RunConfig, got {type(config).__name__}.")
        if int(gpus) != gpus or gpus < 1:
            raise ValueError(f"gpus must be a whole number of at least 1, got {gpus!r}.")
        # Runs always land where the UI lists them.
        config = dataclasses.replace(
            config, train=dataclasses.replace(config.train, output_dir=str(self.runs_dir))
        )
        with self._lock:
            if self._job is not None and self._job.state in JOB_ACTIVE_STATES:
                raise JobBusyError(
                    f"A training job is already running (run {self._job.job_id}). "
                    "Cancel it or wait for it to finish before starting another."
                )
            try:
                run_dir = Path(self._create_run(config, self.runs_dir))
            except Exception as e:  # noqa: BLE001 - reported to the user with the reason
                raise JobError(f"Could not create a run folder in {self.runs_dir}: {e}") from e
            job = _Job(job_id=run_dir.name, run_dir=run_dir, config=config, gpus=int(gpus))
            where = f" ({job.gpus} GPUs, torchrun)" if job.gpus > 1 else ""
            job.log.append(f"{_clock()} Run {job.job_id} created in {run_dir}{where}")
            job.thread = threading.Thread(
                target=self._run, args=(job,), name=f"noshow-train-{job.job_id}", daemon=True
            )
            self._job = job
            job.thread.start()
        return job.job_id

    def cancel(self, job_id: str | None = None) -> bool:
        """Ask the running job (or `job_id`, if it is the running one) to stop.

        Returns True when a running job was asked to stop; the training loop polls the flag
        every step, so it stops within one step.
        """
        with self._lock:
            job = self._job
            if job is None or job.state not in JOB_ACTIVE_STATES:
                return False
            if job_id is not None and job_id != job.job_id:
                return False
            if not job.cancel_event.is_set():
                job.cancel_event.set()
                job.state = "cancelling"
                job.log.append(f"{_clock()} Cancel requested; stopping after the current step")
            return True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the current job's thread ends; True if no job is running afterwards."""
        with self._lock:
            thread = self._job.thread if self._job else None
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    # -- inspection ------------------------------------------------------------------------

    def is_busy(self) -> bool:
        with self._lock:
            return self._job is not None and self._job.state in JOB_ACTIVE_STATES

    def snapshot(self) -> dict[str, Any]:
        """The current or last job as plain data (safe to hand to the UI).

        Keys: job_id, run_id, run_dir, state ("idle" when no job has run yet; else
        "starting" | "running" | "cancelling" | "completed" | "failed" | "cancelled"),
        active (bool), progress (latest progress dict), log (last lines), history
        (progress points for curves), started_at, finished_at, elapsed_s, error, config,
        gpus (processes of a torchrun job; 1 = this process).
        """
        with self._lock:
            job = self._job
            if job is None:
                return {
                    "job_id": None,
                    "run_id": None,
                    "run_dir": None,
                    "state": "idle",
                    "active": False,
                    "progress": {},
                    "log": [],
                    "history": [],
                    "started_at": None,
                    "finished_at": None,
                    "elapsed_s": 0.0,
                    "error": None,
                    "config": None,
                    "gpus": 1,
                }
            end = job.finished_at or time.time()
            return _redact(
                {
                    "job_id": job.job_id,
                    "run_id": job.job_id,
                    "run_dir": str(job.run_dir),
                    "state": job.state,
                    "active": job.state in JOB_ACTIVE_STATES,
                    "progress": copy.deepcopy(job.progress),
                    "log": list(job.log),
                    "history": copy.deepcopy(job.history),
                    "started_at": job.started_at,
                    "finished_at": job.finished_at,
                    "elapsed_s": end - job.started_at,
                    "error": job.error,
                    "config": job.config.to_dict(),
                    "gpus": job.gpus,
                }
            )

    # -- the thread ------------------------------------------------------------------------

    def _run(self, job: _Job) -> None:
        def on_progress(update: dict[str, Any]) -> None:
            self._record_progress(job, update)

        with self._lock:
            if job.state == "starting":
                job.state = "running"
        try:
            if job.gpus > 1:
                result = self.launch_fn(
                    job.config,
                    run_dir=job.run_dir,
                    on_progress=on_progress,
                    should_stop=job.cancel_event.is_set,
                    nproc=job.gpus,
                )
            else:
                result = self.train_fn(
                    job.config,
                    run_dir=job.run_dir,
                    on_progress=on_progress,
                    should_stop=job.cancel_event.is_set,
                )
            state = str(getattr(result, "state", "completed") or "completed")
            error = getattr(result, "error", None)
        except Exception as e:  # noqa: BLE001 - the manager must keep serving
            state = "failed"
            error = f"{type(e).__name__}: {e}"
            _write_failed_status(job.run_dir, error)
            tb = traceback.format_exc(limit=8)
            with self._lock:
                for line in tb.rstrip().splitlines()[-6:]:
                    job.log.append(line)
        finally:
            # Drop references to model tensors held by frames before emptying the cache.
            free_accelerator_memory()
        if state == "completed" and job.cancel_event.is_set():
            state = "cancelled"
        with self._lock:
            job.state = state
            job.error = str(error) if error else None
            job.finished_at = time.time()
            msg = f"{_clock()} Run {job.job_id} {state}"
            job.log.append(msg + (f": {job.error}" if job.error else ""))

    def _record_progress(self, job: _Job, update: dict[str, Any]) -> None:
        if not isinstance(update, dict):
            return
        with self._lock:
            job.progress = {**job.progress, **update}
            message = update.get("message")
            if message:
                for line in str(message).splitlines():
                    job.log.append(line)
            point = {
                k: update[k]
                for k in ("step", "epoch", "loss", "lr", "val_auc", "elapsed_s", "phase")
                if k in update and update[k] is not None
            }
            if "step" in point and ("loss" in point or "val_auc" in point):
                job.history.append(point)
                if len(job.history) > MAX_HISTORY_POINTS:
                    # Halve the resolution: curves keep their shape, memory stays bounded.
                    job.history = job.history[::2]


def _redact(snapshot: dict[str, Any]) -> dict[str, Any]:
    from noshow.system.redact import redact_secrets

    for key in ("log", "error", "config", "progress"):
        snapshot[key] = redact_secrets(snapshot[key])
    return snapshot


def _clock() -> str:
    return time.strftime("%H:%M:%S")
