"""Data-parallel training over several processes, one per GPU, for the lean loop in
`noshow.training.loop.fit`, plus the app's launcher for such runs.

Both launchers set WORLD_SIZE / RANK / LOCAL_RANK; `scripts/train.py` needs nothing else:

    NCCL_NVLS_ENABLE=0 torchrun --standalone --nproc_per_node 4 scripts/train.py --approach classifier
    NCCL_NVLS_ENABLE=0 accelerate launch --num_processes 4 scripts/train.py --approach classifier

Without WORLD_SIZE (or with WORLD_SIZE=1) nothing here runs: no process group, the
single-process loop unchanged. With it:

- each process loads the base (4-bit on CUDA) on cuda:LOCAL_RANK; the process group is
  nccl on CUDA, gloo on the CPU;
- every process builds the same length-grouped batches (same seed) and takes rows
  rank::world_size of each (strided, so every rank gets short and long rows alike);
- a row's loss is weighted by 1 / global batch on every rank, so the *sum* over ranks of the
  local gradients is the single-process gradient of the same global batch; one flattened
  all_reduce(SUM) per optimizer step carries every trainable gradient (LoRA + head) and, in
  the same buffer, the step's loss, the cancel votes and a failure count. That is one
  collective and, one step later, one wait on its flags: no other host sync per step;
- rank 0 alone writes the run folder (created there, its path broadcast to the others),
  metrics, status, checkpoints, adapter and W&B; the others only compute;
- evaluation rows are scored on shards and all-gathered, so every rank holds every score:
  rank 0 computes the metrics, and mid-training early stopping decides alike everywhere;
- cancel: the caller's should_stop() and a `cancel` file in the run folder (what the app
  writes) are voted on in the step's all_reduce; every rank stops at the same step.

That is the hand-written path (`data_parallel="flat"`, the default). torch DDP is the other
(`--data-parallel ddp`, noshow/training/ddp.py): the loss wrapped in a module for DDP's
forward, micro-batches under no_sync() but the last, a collective per gradient bucket started
during backward. Which one stays is for the GPU rows of scripts/bench_scaling.py to decide
(BENCHMARKS.md); LoRA gradients (1 MB for 135M, ~170 MB for 8B at r16) fit one flattened
all_reduce well, DDP overlaps its buckets with the backward.

OOM back-off stays per process: the gradients are reduced once, after the local
micro-batches, and nothing collective runs inside backward, so ranks may take different
numbers of backward passes without a deadlock and the summed gradient is the same. A rank
that fails inside a step still joins that step's all_reduce with its failure counted, so
every rank stops with the same error instead of waiting for a peer that is gone.

This module imports torch only inside functions, so the app can ask `visible_gpu_count()`
without loading it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from noshow.system.paths import REPO

if TYPE_CHECKING:
    import numpy as np
    import torch

    from noshow.config import RunConfig
    from noshow.training.runs import RunResult

TRAIN_SCRIPT = REPO / "scripts" / "train.py"
# Written into the run folder to stop every rank of a multi-process run (the app does this).
CANCEL_FILE = "cancel"
# scripts/train.py --progress-json prints one progress dict per line after this prefix.
PROGRESS_PREFIX = "NOSHOW_PROGRESS "
# Debug: each rank saves its trainable state here as rank<N>.pt at the end of fit (tests).
DEBUG_STATE_ENV = "NOSHOW_DEBUG_RANK_STATE"
# Output of the launcher (torchrun and every rank), in the run folder, secrets redacted.
LAUNCHER_LOG = "launcher.log"
# A cancelled multi-process run gets this long to stop on its own before SIGTERM.
CANCEL_GRACE_S = 60.0
# Long enough for rank 0 to fit the tabular baseline and save the adapter while the others
# wait at the next collective; a dead peer ends the run much sooner through the launcher.
GROUP_TIMEOUT_S = 1800.0


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0") or 0)


def is_distributed() -> bool:
    """True inside a torchrun / accelerate launch of more than one process."""
    return world_size() > 1


def visible_gpu_count() -> int:
    """CUDA devices this process may use. The app asks at start-up, so torch is imported
    only where the NVIDIA driver lists several GPUs (narrowed by CUDA_VISIBLE_DEVICES);
    torch then gives the exact count (through NVML, without starting CUDA)."""
    if "torch" not in sys.modules:
        gpus = Path("/proc/driver/nvidia/gpus")
        try:
            n = len(list(gpus.iterdir())) if gpus.is_dir() else 0
        except OSError:
            n = 0
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is not None:
            wanted = [v for v in visible.split(",") if v.strip() and not v.strip().startswith("-")]
            n = min(n, len(wanted))
        if n <= 1:
            return n
    try:
        import torch

        return int(torch.cuda.device_count())
    except Exception:  # noqa: BLE001 - a broken CUDA setup counts as no GPU
        return 0


# ----------------------------------------------------------------------------- the group


@dataclass
class Group:
    """This process's place in a data-parallel run, and the few collectives training uses."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    """Where collective buffers live: cuda:LOCAL_RANK for nccl, the CPU for gloo."""
    created: bool = False
    """True when init_group started the process group (then `finish` ends it)."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, idx: np.ndarray) -> np.ndarray:
        """This rank's rows of a global batch: every world_size-th row from its rank, so a
        length-sorted batch gives each rank the same mix of short and long rows."""
        return idx[self.rank :: self.world_size]

    def any(self, flag: bool) -> bool:
        """True on every rank when any rank passes True (a small all_reduce)."""
        import torch
        import torch.distributed as dist

        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t)
        return bool(t.item() > 0)

    def broadcast_object(self, obj: Any = None) -> Any:
        """Rank 0's `obj` on every rank."""
        import torch.distributed as dist

        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather_object(self, obj: Any) -> list[Any]:
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_parameters(self, params: Sequence[torch.Tensor]) -> None:
        """Copy rank 0's values into every rank's `params` (one flattened broadcast)."""
        import torch
        import torch.distributed as dist

        if not params:
            return
        with torch.no_grad():
            flat = torch.cat(
                [p.detach().reshape(-1).to(self.device, torch.float32) for p in params]
            )
            dist.broadcast(flat, src=0)
            offset = 0
            for p in params:
                n = p.numel()
                p.copy_(flat[offset : offset + n].view_as(p).to(p.dtype))
                offset += n

    def all_reduce_flat(self, buffer: torch.Tensor) -> torch.Tensor:
        """Sum `buffer` (the flat gradients and the step's flags, noshow.training.step.FlatGrads)
        over the ranks in place, in one collective; returns it."""
        import torch.distributed as dist

        dist.all_reduce(buffer)
        return buffer

    def finish(self, barrier: bool) -> None:
        """Leave the run: with `barrier`, wait until every rank got here (so rank 0's final
        status is written before the launcher sees any process exit), then end the process
        group if we started it."""
        import torch.distributed as dist

        if not dist.is_initialized():
            return
        if barrier:
            with contextlib.suppress(Exception):
                dist.barrier()
        if self.created:
            with contextlib.suppress(Exception):
                dist.destroy_process_group()


def init_group(timeout_s: float = GROUP_TIMEOUT_S, graphs_with_ddp: bool = False) -> Group | None:
    """Join the process group that torchrun / accelerate described in the environment (nccl
    on CUDA, gloo on the CPU) and pin this process to cuda:LOCAL_RANK. None (and nothing
    done) outside a multi-process launch. `graphs_with_ddp`: DDP's backward may be captured
    in CUDA graphs, so NCCL's async error handling is off (PyTorch's recipe; a dead peer then
    ends the run through the launcher, not through NCCL's watchdog)."""
    if not is_distributed():
        return None
    if graphs_with_ddp:
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "0")
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    lr = local_rank()
    if torch.cuda.is_available():
        if lr >= torch.cuda.device_count():
            raise RuntimeError(
                f"LOCAL_RANK {lr} but only {torch.cuda.device_count()} CUDA device(s) are "
                "visible: launch at most one process per GPU (--nproc_per_node)."
            )
        torch.cuda.set_device(lr)
        device = torch.device("cuda", lr)
        backend = "nccl"
    else:
        device = torch.device("cpu")
        backend = "gloo"
    created = False
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
        created = True
    return Group(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=lr,
        device=device,
        created=created,
    )


class StepFlags:
    """The summed cancel votes and failure counts of one step's all_reduce, read one step
    later: on CUDA they are copied to pinned memory behind an event, so waiting for them
    waits for that all_reduce only, not for the optimizer step queued after it."""

    def __init__(self, device: torch.device) -> None:
        import torch

        self.cuda = device.type == "cuda"
        self.host = torch.zeros(3, dtype=torch.float32, pin_memory=self.cuda)
        self.event = torch.cuda.Event() if self.cuda else None
        self.pending = False
        self.step = 0

    def record(self, reduced: torch.Tensor, step: int) -> None:
        """`reduced` = (stop votes, failed ranks, ranks out of memory) on the device."""
        self.host.copy_(reduced, non_blocking=self.cuda)
        if self.event is not None:
            self.event.record()
        self.pending = True
        self.step = step

    def read(self) -> tuple[int, int, int] | None:
        """(stop votes, failed, out of memory) of the last recorded step, once; else None."""
        if not self.pending:
            return None
        if self.event is not None:
            self.event.synchronize()
        self.pending = False
        stop, failed, oom = (int(round(v)) for v in self.host.tolist())
        return stop, failed, oom


def dump_rank_state(group: Group | None, model: torch.nn.Module, step: int) -> None:
    """With NOSHOW_DEBUG_RANK_STATE=<folder>, save this rank's trainable weights and step as
    <folder>/rank<N>.pt (tests compare the ranks; nothing happens without the variable)."""
    folder = os.environ.get(DEBUG_STATE_ENV)
    if not folder:
        return
    import torch

    r = group.rank if group is not None else 0
    w = group.world_size if group is not None else 1
    state = {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}
    Path(folder).mkdir(parents=True, exist_ok=True)
    torch.save(
        {"rank": r, "world_size": w, "step": step, "trainable": state},
        Path(folder) / f"rank{r}.pt",
    )


# ----------------------------------------------------------------------------- the app's launcher


def torchrun_command(run_dir: Path | str, nproc: int, python: str | None = None) -> list[str]:
    """`torchrun --standalone --nproc_per_node N scripts/train.py --run-dir RUN --progress-json
    --yes` (the app's Start has asked about a long or thinly evaluated run already)."""
    return [
        python or sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={int(nproc)}",
        str(TRAIN_SCRIPT),
        "--run-dir",
        str(run_dir),
        "--progress-json",
        "--yes",
    ]


def request_cancel(run_dir: Path | str) -> None:
    """Ask every rank of a multi-process run in `run_dir` to stop at its next step."""
    (Path(run_dir) / CANCEL_FILE).write_text(f"{time.time()}\n")


def launch_training(
    config: RunConfig,
    *,
    run_dir: Path | str,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    nproc: int = 2,
    poll_s: float = 0.2,
    cancel_grace_s: float = CANCEL_GRACE_S,
) -> RunResult:
    """Train `config` in the pre-made `run_dir` with `nproc` processes (one per GPU) under
    torchrun, as a managed subprocess; the same signature as `noshow.training.recipe.train` plus
    `nproc`, so the JobManager runs it in its thread.

    Rank 0's progress dicts come back over stdout (scripts/train.py --progress-json) and go
    to `on_progress` unchanged, so the app shows what a single-process run shows; all other
    output goes to the run folder's launcher.log. `should_stop()` turning true writes the
    cancel file every rank votes on; a run that has not stopped `cancel_grace_s` later gets
    SIGTERM (then SIGKILL) to its whole process group. A run that ends without a final
    status (a rank crashed, the launcher was killed) is marked failed or cancelled here.
    """
    from noshow.system.redact import redact_secrets
    from noshow.training import runs
    from noshow.training.runs import RunResult

    run_dir = Path(run_dir)
    if not (run_dir / runs.CONFIG_FILE).exists():
        runs.write_config(run_dir, config)
    should_stop = should_stop or (lambda: False)
    env = dict(os.environ)
    env.setdefault("NCCL_NVLS_ENABLE", "0")  # NVLink multicast off (see the README)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    tail: deque[str] = deque(maxlen=40)
    log_path = run_dir / LAUNCHER_LOG

    proc = subprocess.Popen(
        torchrun_command(run_dir, nproc),
        cwd=str(REPO),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        start_new_session=True,  # its own process group: cancel can end every rank at once
    )

    def pump() -> None:
        assert proc.stdout is not None
        with open(log_path, "a", encoding="utf-8") as log:
            for line in proc.stdout:
                if line.startswith(PROGRESS_PREFIX):
                    try:
                        update = json.loads(line[len(PROGRESS_PREFIX) :])
                    except ValueError:
                        update = None
                    if isinstance(update, dict) and on_progress is not None:
                        with contextlib.suppress(Exception):
                            on_progress(update)
                    continue
                text = redact_secrets(line.rstrip("\n"))
                tail.append(text)
                log.write(text + "\n")
                log.flush()

    reader = threading.Thread(target=pump, name="noshow-launcher-output", daemon=True)
    reader.start()
    cancel_at: float | None = None
    signalled = 0
    while proc.poll() is None:
        if cancel_at is None and should_stop():
            cancel_at = time.time()
            with contextlib.suppress(OSError):
                request_cancel(run_dir)
        if cancel_at is not None:
            waited = time.time() - cancel_at
            if waited > cancel_grace_s and signalled == 0:
                _signal_group(proc, signal.SIGTERM)
                signalled = 1
            elif waited > cancel_grace_s + 15 and signalled == 1:
                _signal_group(proc, signal.SIGKILL)
                signalled = 2
        time.sleep(poll_s)
    reader.join(timeout=10)
    cancelled = cancel_at is not None

    status = runs.read_status(run_dir)
    state = status.get("state")
    error = status.get("error")
    if state not in runs.FINISHED_STATES or state == "interrupted":
        # No rank 0 left to write the ending: say what happened from the launcher's side.
        if cancelled:
            state, error = "cancelled", None
        else:
            state = "failed"
            error = _last_error(tail) or f"torchrun exited with code {proc.returncode}"
        with contextlib.suppress(Exception):
            runs.write_status(run_dir, state, error=error)
    metrics = runs.read_eval(run_dir) or {}
    return RunResult(
        run_dir=run_dir,
        state=str(state),
        metrics=metrics if state == "completed" else {},
        error=error,
        adapter_dir=runs.adapter_dir(run_dir),
    )


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _last_error(lines: Sequence[str]) -> str | None:
    """The last line of the launcher's output that names an error, for the run's status."""
    for line in reversed(lines):
        text = line.strip()
        if text and ("Error" in text or "error:" in text or "Exception" in text):
            return text[-500:]
    return None
