"""One training run's life cycle: its run folder, status and log, progress reports, the
cancel check, W&B, and turning a failure into a message a user can act on.

    with TrainingSession(config, run_dir, on_progress, should_stop) as session:
        session.log("...")           # train.log + progress message
        session.check_stop()         # raises TrainingCancelled when asked to stop
    result = session.result()        # runs.RunResult: completed / cancelled / failed

In a multi-process launch (WORLD_SIZE > 1) rank 0 alone writes; see noshow/training/distributed.py.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from noshow.config import ConfigError, RunConfig
from noshow.modeling.batching import Encoded, take_rows
from noshow.system.devices import free_accelerator_memory, is_oom
from noshow.system.redact import redact_secrets
from noshow.training import runs
from noshow.training.runs import RunResult

ProgressFn = Callable[[dict[str, Any]], None]
StopFn = Callable[[], bool]

# Evaluation scores this many rows between cancel checks and status heartbeats.
SCORE_CHUNK_ROWS = 8_192


class TrainingCancelled(Exception):
    """Raised inside the loop when should_stop() turns true."""


class TrainingError(RuntimeError):
    """A training failure with a message meant for the user."""


class TrainingSession:
    """One run's life cycle: run folder, status, progress, cancel, W&B, failure handling.

    Use as a context manager; the body raises TrainingCancelled on cancel. On exit the
    status reads completed/cancelled/failed, W&B is finished and accelerator memory freed.

    In a multi-process launch (WORLD_SIZE > 1) the session joins the process group
    (`self.dist`); rank 0 alone creates and writes the run folder, status, metrics, logs and
    W&B (`self.is_writer`), the other ranks get its path by broadcast, and `check_stop()`
    becomes a vote every rank takes at the same point.
    """

    def __init__(
        self,
        config: RunConfig,
        run_dir: Path | str | None,
        on_progress: ProgressFn | None,
        should_stop: StopFn | None,
        resume: bool = False,
    ) -> None:
        from noshow.training import distributed
        from noshow.training.ddp import graphs_with_ddp

        self.config = config
        # None in a single process: no group at all
        self.dist = distributed.init_group(graphs_with_ddp=graphs_with_ddp(config.train))
        self.is_writer = self.dist is None or self.dist.is_main
        self.on_progress = on_progress if self.is_writer else None
        self.should_stop = should_stop or (lambda: False)
        self.resume = resume
        if self.dist is None:
            self.run_dir = self._open_run_dir(config, run_dir)
        else:
            self.run_dir = self._share_run_dir(config, run_dir)
        # Set when every rank fails at the same point (a failure voted on in a step's
        # all_reduce, a non-finite loss): they may then meet at the final barrier.
        self.failure_shared = False
        self.loop: Any = None  # the loop's LoopState once fit() starts (for checkpoints)
        # False until the recipe reaches its first step: a run that fails before it (bad
        # data, a model that will not load, a refusal) is marked so (`before_training` in
        # status.json) and kept out of the app's Runs table; the CLI removes its folder.
        self.training_started = False
        self.state = "running"
        self.error: str | None = None
        self.result_metrics: dict[str, Any] = {}
        self.adapter_dir: Path | None = None
        self.started = time.time()
        self.wandb_run = None
        self.log_lines: list[str] = []

    @staticmethod
    def _open_run_dir(config: RunConfig, run_dir: Path | str | None) -> Path:
        if run_dir is None:
            return runs.create_run(config, config.train.output_dir)
        run_dir = Path(run_dir)
        if not (run_dir / "config.json").exists():
            run_dir = runs.create_run(config, run_dir.parent, run_id=run_dir.name)
        return run_dir

    def _share_run_dir(self, config: RunConfig, run_dir: Path | str | None) -> Path:
        """Rank 0 creates (or opens) the run folder; every rank gets its path, or its error."""
        outcome: tuple[str, str] | None = None
        failure: Exception | None = None
        if self.is_writer:
            try:
                outcome = ("ok", str(self._open_run_dir(config, run_dir)))
            except Exception as e:  # noqa: BLE001 - the other ranks must hear of it too
                failure, outcome = e, ("error", str(e))
        outcome = self.dist.broadcast_object(outcome)
        if failure is not None:
            raise failure
        if outcome[0] == "error":
            raise runs.RunError(outcome[1])
        return Path(outcome[1])

    # -- context
    def __enter__(self) -> TrainingSession:
        if self.is_writer:
            runs.write_status(self.run_dir, "running", started_at=_now_iso(), pid=os.getpid())
            self._start_wandb()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None:
            self.state = "completed"
        elif isinstance(exc, TrainingCancelled):
            self.state = "cancelled"
            self.log("Cancelled: stopped at the next step; no adapter was registered.")
        else:
            self.state = "failed"
            self.error = describe_failure(exc, self.config)
            self.log(f"Failed: {self.error}")
            if self.is_writer:
                # the full traceback goes to the run folder, never to the UI
                with contextlib.suppress(OSError):
                    (self.run_dir / "error.log").write_text(
                        redact_secrets("".join(traceback.format_exception(exc_type, exc, tb)))
                    )
            else:  # only rank 0 writes the run folder: the launcher's output keeps this one
                print(f"[rank {self.dist.rank}] Failed: {self.error}", file=sys.stderr)
                traceback.print_exception(exc_type, exc, tb, file=sys.stderr)
        free_accelerator_memory()
        if self.is_writer and self.state != "completed":
            # nothing half-written stays behind (it never looked finished, but it takes space)
            shutil.rmtree(self.run_dir / runs.ADAPTER_STAGING_DIR, ignore_errors=True)
            for partial in (self.run_dir / runs.CHECKPOINTS_DIR).glob(".step-*.partial"):
                shutil.rmtree(partial, ignore_errors=True)
        if self.is_writer:
            unstarted = {"before_training": True} if self.state == "failed" else {}
            runs.write_status(
                self.run_dir,
                self.state,
                error=self.error,
                finished_at=_now_iso(),
                elapsed_s=round(time.time() - self.started, 1),
                **(unstarted if not self.training_started else {}),
            )
            self._finish_wandb()
            self.emit(phase="done", state=self.state, error=self.error)
        if self.dist is not None:
            # Every rank reaches this point alike unless one failed alone; then the launcher
            # ends the others, and a barrier would only make them wait for it.
            self.dist.finish(barrier=self.state != "failed" or self.failure_shared)
        # Failures become a 'failed' RunResult (the app keeps serving); Ctrl-C still propagates.
        return exc is None or isinstance(exc, Exception)

    def result(self) -> RunResult:
        return RunResult(
            run_dir=self.run_dir,
            state=self.state,
            metrics=self.result_metrics,
            error=self.error,
            adapter_dir=self.adapter_dir,
        )

    # -- reporting
    def log(self, message: str) -> None:
        if not self.is_writer:
            return
        line = redact_secrets(f"[{time.strftime('%H:%M:%S')}] {message}")
        self.log_lines.append(line)
        with contextlib.suppress(OSError), open(self.run_dir / "train.log", "a") as f:
            f.write(line + "\n")
        self.emit(message=message)

    def emit(self, **progress: Any) -> None:
        if self.on_progress is not None:
            with contextlib.suppress(Exception):  # a broken UI callback must not kill training
                self.on_progress({"run_id": self.run_dir.name, **progress})

    def warn(self, message: str) -> None:
        """log() on rank 0; the other ranks say it on stderr (the launcher's output)."""
        if self.is_writer:
            self.log(message)
        else:
            print(f"[rank {self.dist.rank}] {message}", file=sys.stderr, flush=True)

    def check_stop(self) -> None:
        if self.dist is None:
            if self.should_stop():
                raise TrainingCancelled()
            return
        if self.dist.any(self.stop_vote()):  # a collective: every rank calls it alike
            raise TrainingCancelled()

    def stop_vote(self) -> bool:
        """This rank's wish to stop in a multi-process run: should_stop() or the cancel file."""
        from noshow.training.distributed import CANCEL_FILE

        return bool(self.should_stop()) or (self.run_dir / CANCEL_FILE).exists()

    def record_metrics(self, record: dict[str, Any]) -> None:
        if not self.is_writer:
            return
        runs.append_metrics(self.run_dir, record)
        if self.wandb_run is not None:
            with contextlib.suppress(Exception):
                self.wandb_run.log(
                    {k: v for k, v in record.items() if isinstance(v, (int, float))},
                    step=int(record.get("step", 0)),
                )

    def heartbeat(self, **extra: Any) -> None:
        if self.is_writer:
            runs.write_status(self.run_dir, "running", **extra)

    # -- scoring
    def score(
        self, score_fn: Callable[[Encoded], np.ndarray], enc: Encoded, what: str
    ) -> np.ndarray:
        """Score in chunks so cancel is honoured and the status heartbeat stays fresh while a
        big split (35k test rows on an 8B model) is scored. In a multi-process run each rank
        scores rows rank::world_size and every rank gets all scores back."""
        if self.dist is not None:
            return self._score_sharded(score_fn, enc, what)
        chunk = SCORE_CHUNK_ROWS
        if len(enc) <= chunk:
            self.check_stop()
            return score_fn(enc)
        parts = []
        for start in range(0, len(enc), chunk):
            self.check_stop()
            idx = np.arange(start, min(start + chunk, len(enc)))
            parts.append(score_fn(take_rows(enc, idx)))
            self.emit(phase="evaluating", message=f"Scoring {what}: {idx[-1] + 1}/{len(enc)} rows")
            self.heartbeat()
        return np.concatenate(parts)

    def _score_sharded(
        self, score_fn: Callable[[Encoded], np.ndarray], enc: Encoded, what: str
    ) -> np.ndarray:
        group = self.dist
        world = group.world_size
        mine = np.arange(group.rank, len(enc), world)
        chunk = SCORE_CHUNK_ROWS
        # the same number of chunks (and cancel votes) on every rank, whatever its shard's size
        n_chunks = max(1, math.ceil(math.ceil(len(enc) / world) / chunk))
        parts = []
        for c in range(n_chunks):
            self.check_stop()
            idx = mine[c * chunk : (c + 1) * chunk]
            parts.append(score_fn(take_rows(enc, idx)) if len(idx) else np.zeros(0, np.float32))
            if n_chunks > 1:
                done = min(len(enc), (c + 1) * chunk * world)
                self.emit(phase="evaluating", message=f"Scoring {what}: ~{done}/{len(enc)} rows")
                self.heartbeat()
        gathered = group.all_gather_object(np.concatenate(parts))
        out = np.empty(len(enc), dtype=np.float32)
        for r, p in enumerate(gathered):
            out[r::world] = p
        return out

    # -- W&B
    def _start_wandb(self) -> None:
        if not self.config.train.wandb or not self.is_writer:
            return
        try:
            import wandb

            mode = "online" if _wandb_has_key() else "offline"
            self.wandb_run = wandb.init(
                project=os.environ.get("WANDB_PROJECT", "noshow"),
                name=self.run_dir.name,
                dir=str(self.run_dir),
                config=redact_secrets(self.config.to_dict()),
                mode=mode,
                reinit="create_new",
            )
            url = getattr(self.wandb_run, "url", None) if mode == "online" else None
            where = url or str(Path(self.wandb_run.dir).parent)
            runs.write_status(
                self.run_dir, "running", wandb_url=url, wandb_mode=mode, wandb_dir=where
            )
            self.log(f"W&B ({mode}): {where}")
        except Exception as e:  # W&B trouble must not stop training
            self.wandb_run = None
            self.log(f"W&B disabled: {e}")

    def _finish_wandb(self) -> None:
        if self.wandb_run is not None:
            with contextlib.suppress(Exception):
                if self.result_metrics:
                    self.wandb_run.summary.update(_flatten(self.result_metrics))
                self.wandb_run.finish(exit_code=0 if self.state == "completed" else 1)
            self.wandb_run = None


def _wandb_has_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path.home() / ".netrc"
    return netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "/"))
        elif isinstance(v, (int, float, str)) or v is None:
            out[key] = v
    return out


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def describe_failure(exc: BaseException, config: RunConfig) -> str:
    """A message a user can act on; the traceback stays in error.log."""
    if is_oom(exc):
        t = config.train
        return (
            f"Out of GPU memory (batch size {t.batch_size}, max length {t.max_length}, "
            f"quantize {t.quantize}). Lower --batch-size or --max-length, or use --quantize 4bit."
        )
    from noshow.data.clean import DataError
    from noshow.modeling.presets import ModelError

    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        where = f" while writing {exc.filename}" if exc.filename else ""
        return (
            f"No space left on device{where}: the disk is full. Free some space, then start "
            "the run again or continue it with scripts/train.py --resume <run folder>."
        )
    if isinstance(exc, (TrainingError, ConfigError, DataError, ModelError)):
        return str(exc)  # already written for the user
    name = type(exc).__name__
    return f"{name}: {exc}" if str(exc) else name
