"""Shared training machinery for both approaches: data preparation, length-grouped batches,
the lean training loop (progress, cancel, evaluation, checkpoints, OOM back-off), the final
evaluation next to the tabular baseline, W&B, and the run folder's life cycle.

Each approach module (`generative.py`, `classifier.py`) is an explicit setup -> encode ->
train -> save sequence that calls these pieces; `train(config)` picks one by
`config.train.approach`. The app, `scripts/train.py` and the benchmarks all come here.

    from noshow.config import RunConfig, TrainConfig
    from noshow.training import train
    result = train(RunConfig(train=TrainConfig(approach="classifier", max_steps=20)), on_progress=print)
"""

from __future__ import annotations

import contextlib
import errno
import gc
import json
import math
import os
import random
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from noshow.config import ConfigError, RunConfig

ProgressFn = Callable[[dict[str, Any]], None]
StopFn = Callable[[], bool]

# Rows scored per forward pass at evaluation time (no gradients, so much larger than training).
EVAL_BATCH_TOKENS = 65_536
CPU_EVAL_BATCH_TOKENS = 1_536
# Mid-training validation uses at most this many rows so evaluation never dominates.
MID_EVAL_MAX_ROWS = 4_000
CHECKPOINT_EVERY_STEPS = 500
# Evaluation scores this many rows between cancel checks and status heartbeats.
SCORE_CHUNK_ROWS = 8_192


class TrainingCancelled(Exception):
    """Raised inside the loop when should_stop() turns true."""


class TrainingError(RuntimeError):
    """A training failure with a message meant for the user."""


@dataclass
class RunResult:
    """What a training run ended with."""

    run_dir: Path
    state: str
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    adapter_dir: Path | None = None


@dataclass
class Splits:
    """Train/validation/test frames (columns: record_id, statement, no_show, + features)."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    source: str
    is_synthetic: bool
    split_method: str
    notes: list[str] = field(default_factory=list)
    labels_used: dict[str, Any] | None = None


@dataclass
class Encoded:
    """Token ids per row plus what the loss needs; built once, before the first step."""

    input_ids: list[list[int]]
    labels: np.ndarray  # (N,) 0/1
    record_ids: np.ndarray  # (N,)
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self))


# ----------------------------------------------------------------------------- entry point


def train(
    config: RunConfig,
    *,
    run_dir: Path | str | None = None,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    resume: bool = False,
) -> RunResult:
    """Train the approach named in `config.train.approach`; see generative/classifier."""
    if config.train.approach == "generative":
        from noshow.generative import train_generative as fn
    else:
        from noshow.classifier import train_classifier as fn
    return fn(
        config, run_dir=run_dir, on_progress=on_progress, should_stop=should_stop, resume=resume
    )


# ----------------------------------------------------------------------------- devices


def pick_device() -> torch.device:
    """CUDA when present (cuda:LOCAL_RANK in a multi-process launch), else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    from noshow.distributed import is_distributed, local_rank

    if is_distributed():
        return torch.device("cuda", local_rank())  # one GPU per process
    return torch.device("cuda")


def autocast_context(device: torch.device):
    """bf16 autocast on CUDA (4-bit layers compute in bf16 anyway); plain fp32 on the CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def free_accelerator_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()


# ----------------------------------------------------------------------------- data


def prepare_splits(config: RunConfig, log: Callable[[str], None] = print) -> Splits:
    """Load, split, apply clinician labels and subsample, refusing data that cannot train."""
    from noshow.data import load_data, split_data

    dc = config.data
    loaded = load_data(dc.source)
    frame = loaded.frame
    notes = list(getattr(loaded.report, "notes", []) or [])
    method = dc.split
    if not loaded.has_features and method != "random":
        if "split" in frame.columns:
            method = "given"
            log("Statement/NoShow file with its own split column: using that split.")
        else:
            log(
                f"Statement/NoShow data has no dates or patient ids: the '{dc.split}' split "
                "falls back to a stratified random split."
            )
            method = "random"
    if method != "given":
        frame = split_data(frame, method, seed=dc.seed)
    labels_used = None
    if dc.use_clinician_labels:
        frame, labels_used = apply_clinician_labels(frame, log)
    parts = {}
    for name in ("train", "validation", "test"):
        part = frame[frame["split"] == name]
        limit = dc.max_train_rows if name == "train" else dc.max_eval_rows
        parts[name] = _stratified_sample(part, limit, dc.seed).reset_index(drop=True)
    train_part = parts["train"]
    if len(train_part) == 0:
        raise TrainingError(
            "The training split is empty after filtering: check the data and split."
        )
    if train_part["no_show"].nunique() < 2:
        raise TrainingError(
            "The training rows hold only one class "
            f"({'no-show' if train_part['no_show'].iloc[0] == 1 else 'shows up'}): "
            "the model cannot learn to tell them apart. Use more rows or another split."
        )
    for name in ("validation", "test"):
        if len(parts[name]) == 0:
            raise TrainingError(f"The {name} split is empty: use more data or another split.")
    if config.train.batch_size > len(train_part):
        raise ConfigError(
            f"batch size {config.train.batch_size} is larger than the {len(train_part)} "
            f"training rows: lower batch_size to {len(train_part)} or fewer."
        )
    return Splits(
        train=train_part,
        validation=parts["validation"],
        test=parts["test"],
        source=loaded.source,
        is_synthetic=loaded.is_synthetic,
        split_method=method,
        notes=notes,
        labels_used=labels_used,
    )


def apply_clinician_labels(
    frame: pd.DataFrame, log: Callable[[str], None] = print, store: Any = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Override the data set's labels with clinicians' consensus labels where they exist."""
    from noshow.labels import LabelStore, default_label_db, labels_fingerprint

    store = store or LabelStore(default_label_db())
    overrides = store.consensus_labels()
    frame = frame.copy()
    known = frame["record_id"].isin(list(overrides))
    before = frame.loc[known, "no_show"].copy()
    frame.loc[known, "no_show"] = frame.loc[known, "record_id"].map(overrides).astype(int)
    changed = int((before != frame.loc[known, "no_show"]).sum())
    used = {**labels_fingerprint(overrides), "applied": int(known.sum()), "changed": changed}
    log(
        f"Clinician labels: {used['applied']} records labelled, {changed} differ from the "
        f"data set (hash {used['hash'][:12]})."
    )
    return frame, used


def _stratified_sample(part: pd.DataFrame, limit: int | None, seed: int) -> pd.DataFrame:
    if limit is None or len(part) <= limit:
        return part
    frac = limit / len(part)
    sampled = part.groupby("no_show", group_keys=False).sample(frac=frac, random_state=seed)
    return sampled.sort_index()


# ----------------------------------------------------------------------------- batching


def length_grouped_batches(
    lengths: np.ndarray, batch_size: int, seed: int, drop_last: bool = False
) -> list[np.ndarray]:
    """Shuffle, then sort by length within chunks of 64 batches, so batches pad little but
    the order stays random; batch order is shuffled again. Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))
    chunk = batch_size * 64
    batches: list[np.ndarray] = []
    for start in range(0, len(order), chunk):
        idx = order[start : start + chunk]
        idx = idx[np.argsort(lengths[idx], kind="stable")]
        for b in range(0, len(idx), batch_size):
            batches.append(idx[b : b + batch_size])
    if drop_last and batches and len(batches[-1]) < batch_size and len(batches) > 1:
        batches = batches[:-1]
    rng.shuffle(batches)
    return batches


def eval_batch_tokens(device: torch.device) -> int:
    """Tokens per scoring batch: big on a GPU; on a CPU ~16 rows, which measured 1.6x faster
    than one big batch (cache-sized activations)."""
    return EVAL_BATCH_TOKENS if device.type == "cuda" else CPU_EVAL_BATCH_TOKENS


def eval_batches(
    lengths: np.ndarray, max_tokens: int = EVAL_BATCH_TOKENS, *, single_rows: bool = False
) -> Iterator[np.ndarray]:
    """Sorted by length, batches sized by a token budget: fast, deterministic scoring.
    `single_rows`: one row per batch, so a row scores bit-for-bit as when scored alone; bf16
    CPU weights need it (their matmul kernels round differently for different row counts,
    which moved P by up to 0.006 between a batch and a single call)."""
    order = np.argsort(lengths, kind="stable")
    if single_rows:
        yield from (order[i : i + 1] for i in range(len(order)))
        return
    start = 0
    while start < len(order):
        longest = int(lengths[order[min(len(order) - 1, start)]])
        size = max(1, max_tokens // max(longest, 1))
        # the longest row in this batch is the last one (sorted), so size by it
        end = min(len(order), start + size)
        while end - start > 1 and int(lengths[order[end - 1]]) * (end - start) > max_tokens:
            end -= 1
        yield order[start:end]
        start = end


def pad_batch(
    seqs: Sequence[Sequence[int]], pad_id: int, device: torch.device, left: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask, position_ids), each (B, T); positions count real tokens
    only, so left- and right-padded rows see the same positions as when scored alone."""
    longest = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), longest), dtype=torch.long)
    for i, s in enumerate(seqs):
        t = torch.as_tensor(s, dtype=torch.long)
        if left:
            ids[i, longest - len(s) :] = t
            mask[i, longest - len(s) :] = 1
        else:
            ids[i, : len(s)] = t
            mask[i, : len(s)] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    non_blocking = device.type == "cuda"
    return (
        ids.to(device, non_blocking=non_blocking),
        mask.to(device, non_blocking=non_blocking),
        positions.to(device, non_blocking=non_blocking),
    )


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B,) index of each row's last real token; works for left and right padding."""
    t = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (t * attention_mask).argmax(-1)


def subset_encoded(enc: Encoded, limit: int, seed: int) -> Encoded:
    """A fixed random subset (for mid-training validation)."""
    if len(enc) <= limit:
        return enc
    idx = np.sort(np.random.default_rng(seed).choice(len(enc), limit, replace=False))
    return take_rows(enc, idx)


# ----------------------------------------------------------------------------- LoRA


def wrap_with_lora(model: torch.nn.Module, config: RunConfig, task_type: str) -> torch.nn.Module:
    """Add LoRA adapters (peft) to every linear layer by default; the base stays frozen."""
    from peft import LoraConfig, get_peft_model

    lc = config.lora
    extra = {"modules_to_save": ["score"]} if task_type == "SEQ_CLS" else {}
    peft_config = LoraConfig(
        r=lc.r,
        lora_alpha=lc.alpha,
        lora_dropout=lc.dropout,
        target_modules=lc.target_modules,
        task_type=task_type,
        bias="none",
        **extra,
    )
    try:
        model = get_peft_model(model, peft_config)
    except ValueError as e:  # e.g. a target module the model does not have
        raise ConfigError(f"LoRA could not be attached: {e}") from e
    return model


def use_gradient_checkpointing(model: torch.nn.Module, config: RunConfig) -> bool:
    """Checkpointing trades ~30% more compute for memory: worth it only for big models."""
    mode = config.train.gradient_checkpointing
    n_params = sum(p.numel() for p in model.parameters())
    # 4-bit params count as packed pairs; 1.5e9 packed ~ a 3B model
    on = mode == "on" or (mode == "auto" and n_params > 1.5e9)
    if on:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return on


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


# ----------------------------------------------------------------------------- session


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
        from noshow import distributed

        self.config = config
        self.dist = distributed.init_group()  # None in a single process: no group at all
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
        self.loop: LoopState | None = None
        self.state = "running"
        self.error: str | None = None
        self.result_metrics: dict[str, Any] = {}
        self.adapter_dir: Path | None = None
        self.started = time.time()
        self.wandb_run = None
        self.log_lines: list[str] = []

    @staticmethod
    def _open_run_dir(config: RunConfig, run_dir: Path | str | None) -> Path:
        from noshow import runs

        if run_dir is None:
            return runs.create_run(config, config.train.output_dir)
        run_dir = Path(run_dir)
        if not (run_dir / "config.json").exists():
            run_dir = runs.create_run(config, run_dir.parent, run_id=run_dir.name)
        return run_dir

    def _share_run_dir(self, config: RunConfig, run_dir: Path | str | None) -> Path:
        """Rank 0 creates (or opens) the run folder; every rank gets its path, or its error."""
        from noshow.runs import RunError

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
            raise RunError(outcome[1])
        return Path(outcome[1])

    # -- context
    def __enter__(self) -> TrainingSession:
        from noshow import runs

        if self.is_writer:
            runs.write_status(self.run_dir, "running", started_at=_now_iso(), pid=os.getpid())
            self._start_wandb()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        from noshow import runs

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
                        runs.redact_secrets("".join(traceback.format_exception(exc_type, exc, tb)))
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
            runs.write_status(
                self.run_dir,
                self.state,
                error=self.error,
                finished_at=_now_iso(),
                elapsed_s=round(time.time() - self.started, 1),
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
        from noshow.runs import redact_secrets

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
        from noshow.distributed import CANCEL_FILE

        return bool(self.should_stop()) or (self.run_dir / CANCEL_FILE).exists()

    def record_metrics(self, record: dict[str, Any]) -> None:
        from noshow import runs

        if not self.is_writer:
            return
        runs.append_metrics(self.run_dir, record)
        if self.wandb_run is not None:
            with contextlib.suppress(Exception):
                self.wandb_run.log(
                    {k: v for k, v in record.items() if isinstance(v, (int, float))},
                    step=int(record.get("step", 0)),
                )

    def record_splits(self, splits: Splits) -> None:
        """Log the data used; store clinician-label overrides (count + hash) in config.json."""
        from noshow import runs

        if splits.labels_used:
            self.config.labels_used = splits.labels_used
            if self.is_writer:
                runs.write_config(self.run_dir, self.config)
        for note in splits.notes:
            self.log(note)
        self.log(
            f"Data: {splits.source} ({splits.split_method} split): train {len(splits.train)}, "
            f"validation {len(splits.validation)}, test {len(splits.test)}"
            + (" - SYNTHETIC data" if splits.is_synthetic else "")
        )

    def heartbeat(self, **extra: Any) -> None:
        from noshow import runs

        if self.is_writer:
            runs.write_status(self.run_dir, "running", **extra)

    # -- W&B
    def _start_wandb(self) -> None:
        if not self.config.train.wandb or not self.is_writer:
            return
        from noshow import runs

        try:
            import wandb

            mode = "online" if _wandb_has_key() else "offline"
            self.wandb_run = wandb.init(
                project=os.environ.get("WANDB_PROJECT", "noshow"),
                name=self.run_dir.name,
                dir=str(self.run_dir),
                config=runs.redact_secrets(self.config.to_dict()),
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
    from noshow.data import DataError
    from noshow.models import ModelError

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


# ----------------------------------------------------------------------------- the loop


@dataclass
class LoopState:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    micro_batch: int = 0
    best_val_auc: float | None = None
    evals_without_gain: int = 0
    samples_seen: int = 0
    tokens_seen: int = 0


def total_steps_for(config: RunConfig, n_train: int) -> int:
    t = config.train
    per_epoch = math.ceil(n_train / t.batch_size)
    return t.max_steps if t.max_steps else max(1, math.ceil(per_epoch * t.epochs))


def lr_lambda(total_steps: int, warmup: int) -> Callable[[int], float]:
    warmup = min(warmup, max(total_steps // 10, 0))

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return f


def make_optimizer(model: torch.nn.Module, config: RunConfig, device: torch.device):
    params = [p for p in model.parameters() if p.requires_grad]
    kwargs: dict[str, Any] = {"lr": config.train.lr, "weight_decay": config.train.weight_decay}
    if device.type == "cuda":
        kwargs["fused"] = True  # one kernel for all LoRA tensors instead of one per tensor
    return torch.optim.AdamW(params, **kwargs)


LossFn = Callable[[torch.nn.Module, Encoded, np.ndarray, torch.device], tuple[torch.Tensor, int]]


def fit(
    session: TrainingSession,
    model: torch.nn.Module,
    encoded: Encoded,
    loss_fn: LossFn,
    score_fn: Callable[[Encoded], np.ndarray],
    val_encoded: Encoded | None,
    device: torch.device,
) -> LoopState:
    """The lean loop: length-grouped batches, fused AdamW, warm-up + cosine, one host sync
    every `log_every` steps, cancel checked every step, micro-batches halved on OOM.

    In a multi-process run (`session.dist`) each rank trains on its shard of every batch and
    the gradients are summed in one all_reduce per step (see noshow/distributed.py)."""
    from noshow.distributed import dump_rank_state

    try:
        return _fit_loop(session, model, encoded, loss_fn, score_fn, val_encoded, device)
    finally:
        # NOSHOW_DEBUG_RANK_STATE only (tests compare ranks), also after a cancel
        dump_rank_state(session.dist, model, session.loop.step if session.loop else 0)


def _fit_loop(session, model, encoded, loss_fn, score_fn, val_encoded, device) -> LoopState:
    from noshow import runs
    from noshow.distributed import StepFlags
    from noshow.evaluate import compute_metrics

    cfg = session.config.train
    group = session.dist
    total = total_steps_for(session.config, len(encoded))
    optimizer = make_optimizer(model, session.config, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(total, cfg.warmup_steps))
    if group is None:
        state = LoopState(micro_batch=cfg.batch_size)
    else:
        # each rank's share of a batch; halving on OOM starts from there
        state = LoopState(micro_batch=math.ceil(cfg.batch_size / group.world_size))
        params = [p for p in model.parameters() if p.requires_grad]
        group.broadcast_parameters(params)  # every rank starts from rank 0's weights
        torch.manual_seed(cfg.seed + group.rank)  # but draws its own dropout masks
        flags = StepFlags(group.device)
    lengths = encoded.lengths
    session.loop = state

    if session.resume:
        state = _load_checkpoint(session, model, optimizer, scheduler, state)
        session.loop = state

    model.train()
    log_every = 10
    running = torch.zeros((), device=device)
    running_n = 0
    t_first: float | None = None
    t0 = time.time()
    samples_at_t0 = state.samples_seen
    while state.step < total:
        batches = length_grouped_batches(lengths, cfg.batch_size, cfg.seed + state.epoch)
        start_batch = state.batch_in_epoch
        for bi in range(start_batch, len(batches)):
            if state.step >= total:
                break
            idx = batches[bi]
            if group is None:
                session.check_stop()
                loss_value = _optimizer_step(
                    model, encoded, idx, loss_fn, optimizer, state, device, session
                )
            else:
                _check_step_flags(session, flags)  # the previous step's votes: one step late
                loss_value = _distributed_step(
                    model, encoded, idx, loss_fn, optimizer, state, device, session, params, flags
                )
                after = state.step + 1
                if (
                    after == total
                    or (cfg.eval_every and after % cfg.eval_every == 0)
                    or after % CHECKPOINT_EVERY_STEPS == 0
                ):
                    # at once before evaluation, a checkpoint or the end: a rank that failed
                    # in this step must not leave the others waiting in the next collective
                    _check_step_flags(session, flags)
            scheduler.step()
            state.step += 1
            state.batch_in_epoch = bi + 1
            state.samples_seen += len(idx)
            state.tokens_seen += int(lengths[idx].sum())
            running += loss_value
            running_n += 1
            if t_first is None:
                t_first = time.time() - session.started
                session.log(f"First step done {t_first:.1f}s after start.")
            elapsed = max(time.time() - t0, 1e-6)
            rate = (state.samples_seen - samples_at_t0) / elapsed
            progress = {
                "phase": "training",
                "step": state.step,
                "total_steps": total,
                "epoch": state.epoch + (bi + 1) / len(batches),
                "samples_per_s": rate,
                "eta_s": (total - state.step) * cfg.batch_size / max(rate, 1e-6),
                "elapsed_s": time.time() - session.started,
                "lr": scheduler.get_last_lr()[0],
            }
            if state.step % log_every == 0 or state.step == total or state.step <= 3:
                loss = (running / max(running_n, 1)).item()  # the only host sync in the loop
                running.zero_()
                running_n = 0
                if not math.isfinite(loss):
                    session.failure_shared = True  # the same summed loss on every rank
                    raise TrainingError(
                        f"The loss became {loss} at step {state.step}: lower the learning rate "
                        f"(now {cfg.lr})."
                    )
                progress["loss"] = loss
                session.record_metrics(
                    {
                        "step": state.step,
                        "epoch": round(progress["epoch"], 4),
                        "loss": loss,
                        "lr": progress["lr"],
                        "samples_per_s": round(rate, 2),
                        "tokens_per_s": round(state.tokens_seen / elapsed, 1),
                        "time_to_first_step_s": round(t_first, 2),
                    }
                )
                session.heartbeat(step=state.step, total_steps=total)
            session.emit(**progress)
            if cfg.eval_every and state.step % cfg.eval_every == 0 and state.step < total:
                stop_early = _mid_eval(
                    session, model, score_fn, val_encoded, state, compute_metrics
                )
                _save_checkpoint(session, model, optimizer, scheduler, state, runs)
                if stop_early:
                    session.log(
                        f"Early stopping: no better validation AUC in "
                        f"{cfg.early_stopping_patience} evaluations."
                    )
                    return state
            elif state.step % CHECKPOINT_EVERY_STEPS == 0 and state.step < total:
                _save_checkpoint(session, model, optimizer, scheduler, state, runs)
        else:
            state.epoch += 1
            state.batch_in_epoch = 0
            continue
    return state


def _accumulate(model, encoded, rows, batch_rows, loss_fn, state, device) -> torch.Tensor:
    """Backward over `rows` in micro-batches, each row's loss weighted by 1/batch_rows (the
    whole step's batch), so the gradients add up to the batch mean; returns that loss."""
    total = torch.zeros((), device=device)
    for start in range(0, len(rows), state.micro_batch):
        part = rows[start : start + state.micro_batch]
        loss, n = loss_fn(model, encoded, part, device)
        (loss * (n / batch_rows)).backward()
        total += loss.detach() * (n / batch_rows)
    return total


def _optimizer_step(
    model, encoded, idx, loss_fn, optimizer, state, device, session
) -> torch.Tensor:
    """One optimizer step over `idx`, split into micro-batches; on OOM halve and retry."""
    while True:
        try:
            optimizer.zero_grad(set_to_none=True)
            total = _accumulate(model, encoded, idx, len(idx), loss_fn, state, device)
            torch.nn.utils.clip_grad_norm_(
                (p for p in model.parameters() if p.requires_grad), max_norm=1.0
            )
            optimizer.step()
            return total
        except Exception as e:
            if not is_oom(e) or state.micro_batch <= 1:
                raise
            optimizer.zero_grad(set_to_none=True)
            free_accelerator_memory()
            state.micro_batch = max(1, state.micro_batch // 2)
            session.log(
                f"Out of memory: micro-batch lowered to {state.micro_batch} (gradient accumulation)."
            )


def _distributed_step(
    model, encoded, idx, loss_fn, optimizer, state, device, session, params, flags
) -> torch.Tensor:
    """One optimizer step of a multi-process run over global batch `idx`: this rank's shard
    in micro-batches (halved on OOM, locally: nothing collective runs in backward), then one
    all_reduce(SUM) of every gradient with the loss, cancel votes and failures alongside.

    Each row's loss is weighted by 1/len(idx), the global batch, so the summed gradient is
    the single-process one. A rank that fails still joins the all_reduce (with zero
    gradients and its failure counted) before raising, so no rank waits for a missing peer.
    Returns the global batch's mean loss (on the device; no host sync)."""
    group = session.dist
    mine = group.shard(idx)
    failure: Exception | None = None
    while True:
        try:
            optimizer.zero_grad(set_to_none=True)
            total = _accumulate(model, encoded, mine, len(idx), loss_fn, state, device)
            break
        except Exception as e:
            optimizer.zero_grad(set_to_none=True)
            if is_oom(e) and state.micro_batch > 1:
                free_accelerator_memory()
                state.micro_batch = max(1, state.micro_batch // 2)
                session.warn(
                    f"Out of memory: micro-batch lowered to {state.micro_batch} "
                    "(gradient accumulation)."
                )
                continue
            failure = e
            total = torch.zeros((), device=device)
            break
    failed = failure is not None
    reduced = group.all_reduce_gradients(
        params,
        [total, float(session.stop_vote()), float(failed), float(failed and is_oom(failure))],
    )
    flags.record(reduced[1:], state.step + 1)
    if failure is not None:
        session.failure_shared = True  # the others learn of it from this step's flags
        raise failure
    torch.nn.utils.clip_grad_norm_(params, max_norm=1.0)
    optimizer.step()
    return reduced[0]


def _check_step_flags(session: TrainingSession, flags) -> None:
    """Act on the last all_reduce's votes, alike on every rank: another rank failed -> fail
    with its kind of error; any rank asked to stop -> TrainingCancelled."""
    got = flags.read()
    if got is None:
        return
    stop, failed, oom = got
    if failed:
        session.failure_shared = True
        world = session.dist.world_size
        if oom:
            raise torch.cuda.OutOfMemoryError(
                f"CUDA out of memory in {oom} of {world} processes at step {flags.step}"
            )
        raise TrainingError(
            f"Training failed in {failed} of {world} processes at step {flags.step}; "
            f"its error is in {session.run_dir.name}/launcher.log or the launcher's output."
        )
    if stop:
        raise TrainingCancelled()


def take_rows(enc: Encoded, idx: np.ndarray) -> Encoded:
    return Encoded([enc.input_ids[i] for i in idx], enc.labels[idx], enc.record_ids[idx])


def score_with_checks(
    session: TrainingSession, score_fn: Callable[[Encoded], np.ndarray], enc: Encoded, what: str
) -> np.ndarray:
    """Score in chunks so cancel is honoured and the status heartbeat stays fresh while a
    big split (35k test rows on an 8B model) is scored. In a multi-process run each rank
    scores rows rank::world_size and every rank gets all scores back."""
    if session.dist is not None:
        return _score_sharded(session, score_fn, enc, what)
    chunk = SCORE_CHUNK_ROWS
    if len(enc) <= chunk:
        session.check_stop()
        return score_fn(enc)
    parts = []
    for start in range(0, len(enc), chunk):
        session.check_stop()
        idx = np.arange(start, min(start + chunk, len(enc)))
        parts.append(score_fn(take_rows(enc, idx)))
        session.emit(phase="evaluating", message=f"Scoring {what}: {idx[-1] + 1}/{len(enc)} rows")
        session.heartbeat()
    return np.concatenate(parts)


def _score_sharded(
    session: TrainingSession, score_fn: Callable[[Encoded], np.ndarray], enc: Encoded, what: str
) -> np.ndarray:
    group = session.dist
    world = group.world_size
    mine = np.arange(group.rank, len(enc), world)
    chunk = SCORE_CHUNK_ROWS
    # the same number of chunks (and cancel votes) on every rank, whatever its shard's size
    n_chunks = max(1, math.ceil(math.ceil(len(enc) / world) / chunk))
    parts = []
    for c in range(n_chunks):
        session.check_stop()
        idx = mine[c * chunk : (c + 1) * chunk]
        parts.append(score_fn(take_rows(enc, idx)) if len(idx) else np.zeros(0, np.float32))
        if n_chunks > 1:
            done = min(len(enc), (c + 1) * chunk * world)
            session.emit(phase="evaluating", message=f"Scoring {what}: ~{done}/{len(enc)} rows")
            session.heartbeat()
    gathered = group.all_gather_object(np.concatenate(parts))
    out = np.empty(len(enc), dtype=np.float32)
    for r, p in enumerate(gathered):
        out[r::world] = p
    return out


def _mid_eval(session, model, score_fn, val_encoded, state, compute_metrics) -> bool:
    if val_encoded is None or len(val_encoded) == 0:
        return False
    session.emit(phase="evaluating", step=state.step, message="Evaluating on validation rows")
    model.eval()
    p = score_with_checks(session, score_fn, val_encoded, "validation")
    model.train()
    m = compute_metrics(val_encoded.labels, p, 0.5)
    auc = m.get("roc_auc")
    session.record_metrics({"step": state.step, "val_auc": auc, "val_brier": m.get("brier")})
    session.emit(phase="training", step=state.step, val_auc=auc)
    session.log(f"Step {state.step}: validation ROC-AUC {auc if auc is None else round(auc, 4)}")
    patience = session.config.train.early_stopping_patience
    if auc is not None and (state.best_val_auc is None or auc > state.best_val_auc + 1e-4):
        state.best_val_auc = auc
        state.evals_without_gain = 0
    else:
        state.evals_without_gain += 1
    return bool(patience) and state.evals_without_gain >= patience


def _save_checkpoint(session, model, optimizer, scheduler, state, runs) -> None:
    """Resumable checkpoint: trainable weights, optimizer, scheduler, loop position (rank 0
    writes it; every rank holds the same state)."""
    if not session.is_writer:
        return
    root = runs.checkpoint_dir(session.run_dir)
    final = root / f"step-{state.step}"
    staging = root / f".step-{state.step}.partial"
    if staging.exists():
        import shutil

        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    torch.save(
        {
            "trainable": {k: v.cpu() for k, v in trainable_state(model).items()},
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
        },
        staging / "state.pt",
    )
    (staging / "loop.json").write_text(json.dumps(state.__dict__))
    os.replace(staging, final)


def _load_checkpoint(session, model, optimizer, scheduler, state: LoopState) -> LoopState:
    from noshow import runs

    ckpt = runs.find_checkpoint(session.run_dir)
    if ckpt is None:
        session.log("No checkpoint to resume from: starting from step 0.")
        return state
    blob = torch.load(ckpt / "state.pt", map_location="cpu", weights_only=False)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in blob["trainable"].items():
            params[name].copy_(value.to(params[name].device))
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    loop = LoopState(**json.loads((ckpt / "loop.json").read_text()))
    loop.micro_batch = state.micro_batch
    session.log(f"Resumed from {ckpt.name} (step {loop.step}).")
    return loop


# ----------------------------------------------------------------------------- final evaluation


def evaluate_and_save(
    session: TrainingSession,
    splits: Splits,
    val_encoded: Encoded,
    test_encoded: Encoded,
    score_fn: Callable[[Encoded], np.ndarray],
    save_adapter: Callable[[Path, float], None],
    loop: LoopState,
) -> dict[str, Any]:
    """Score validation and test, pick the threshold on validation, compare with the tabular
    baseline fitted on the same rows, then write eval.json, predictions and the adapter."""
    from noshow import runs
    from noshow.evaluate import (
        BaselineError,
        baseline_predict,
        build_report,
        fit_tabular_baseline,
    )

    session.check_stop()
    session.emit(phase="evaluating", message="Scoring validation and test rows")
    t0 = time.time()
    p_val = score_with_checks(session, score_fn, val_encoded, "validation")
    p_test = score_with_checks(session, score_fn, test_encoded, "test")
    score_s = time.time() - t0
    if not session.is_writer:
        # The other ranks of a multi-process run only help score; they meet rank 0 at its
        # two cancel checks below (collectives: keep the counts equal when editing).
        session.check_stop()
        session.check_stop()
        return {}
    baseline = None
    baseline_note = None
    try:
        b_model = fit_tabular_baseline(splits.train, seed=session.config.data.seed)
        baseline = (
            baseline_predict(b_model, splits.validation),
            baseline_predict(b_model, splits.test),
        )
    except BaselineError as e:  # Statement/NoShow data has no tabular features
        baseline_note = f"tabular baseline unavailable: {e}"
        session.log(baseline_note)
    report = build_report(val_encoded.labels, p_val, test_encoded.labels, p_test, baseline=baseline)
    report.update(
        {
            "split": splits.split_method,
            "data_source": splits.source,
            "synthetic": splits.is_synthetic,
            "rows": {
                "train": len(splits.train),
                "validation": len(splits.validation),
                "test": len(splits.test),
            },
            "steps": loop.step,
            "samples_seen": loop.samples_seen,
            "scoring_rows_per_s": round((len(p_val) + len(p_test)) / max(score_s, 1e-6), 1),
            "elapsed_s": round(time.time() - session.started, 1),
        }
    )
    if baseline_note:
        report["baseline_note"] = baseline_note
    threshold = float(report["threshold"])
    session.check_stop()
    session.emit(phase="saving", message="Saving the adapter")
    staging = runs.adapter_staging_dir(session.run_dir)
    save_adapter(staging, threshold)
    preds = pd.DataFrame(
        {
            "record_id": np.concatenate([val_encoded.record_ids, test_encoded.record_ids]),
            "split": ["validation"] * len(p_val) + ["test"] * len(p_test),
            "label": np.concatenate([val_encoded.labels, test_encoded.labels]).astype(int),
            "p_no_show": np.concatenate([p_val, p_test]).astype(float),
        }
    )
    if baseline is not None:
        preds["p_baseline"] = np.concatenate(baseline).astype(float)
    runs.write_predictions(session.run_dir, preds)
    runs.write_eval(session.run_dir, report)
    session.check_stop()
    session.adapter_dir = runs.finalize_adapter(session.run_dir)
    session.result_metrics = report
    m, b = report["model"], report.get("baseline")
    session.log(
        f"Test ROC-AUC {m.get('roc_auc')} (tabular baseline {b.get('roc_auc') if b else 'n/a'}); "
        f"adapter saved to {session.adapter_dir}"
    )
    return report


def write_adapter_metadata(folder: Path, **meta: Any) -> None:
    """noshow.json beside the PEFT files: approach, base model, threshold, template version."""
    from noshow.statements import TEMPLATE_VERSION

    meta = {"template_version": TEMPLATE_VERSION, "created_at": _now_iso(), **meta}
    (folder / "noshow.json").write_text(json.dumps(meta, indent=2))


def class_weight_for(train: pd.DataFrame, config: RunConfig) -> float | None:
    """Weight of the no-show class (negatives / positives) when class weighting is on."""
    if not config.train.class_weighting:
        return None
    pos = float(train["no_show"].mean())
    return (1 - pos) / max(pos, 1e-6)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------- preflight

# Measured statements/s of the fast path on an H200 (BENCHMARKS.md), used only for time
# estimates: one SmolLM2 run at batch 64 (190/s), at 256 (469/s) and at 128 with four runs
# sharing the GPU (~270/s each); in between, rate ~ batch^0.65.
_RATE_GPU_SMALL_AT_64 = 190.0
_RATE_GPU_8B = 60.0
_RATE_CPU_SMALL = 8.0
# Model shapes for the memory estimate: (hidden, intermediate, layers).
_SHAPE_SMALL = (576, 1536, 30)  # SmolLM2-135M
_SHAPE_8B = (4096, 14336, 32)  # Llama 3.1 8B
# Tokens of a typical statement as each approach feeds it (the generative prompt adds the
# chat template and the question); measured on the real data, ~67 and ~110.
_TOKENS = {"classifier": 72, "generative": 120}


def _activation_bytes_per_token(shape: tuple[int, int, int], checkpointing: bool) -> float:
    """fp32 activations kept for the backward pass: about 8 hidden-sized and 4 intermediate-
    sized tensors per token and layer (1.2-1.3 MB per token for SmolLM2, which matches the
    H200 peaks: 2.8 GB at batch 32, 5.4 GB at 64, 20.5 GB at 256 for the classifier, 8.0 GB
    at 64 for the generative); with checkpointing only each layer's input plus one layer."""
    hidden, intermediate, layers = shape
    per_layer = 4.0 * (8 * hidden + 4 * intermediate)
    return 4.0 * hidden * layers + per_layer if checkpointing else per_layer * layers


def estimate_resources(config: RunConfig, n_train_rows: int) -> dict[str, Any]:
    """Memory and time estimate before a run, and whether it fits this machine. Meant to err
    high: tests/test_training.py checks it against the peaks measured on an H200."""
    from noshow.models import PRESETS

    t = config.train
    name = t.model
    n_params = 8.0e9 if ("8b" in name.lower() or "8B" in name) else 0.135e9
    preset = PRESETS.get(name)
    if preset is not None and "8" in preset.name:
        n_params = 8.0e9
    cuda = torch.cuda.is_available()
    quant = t.quantize if t.quantize != "auto" else ("4bit" if cuda else "none")
    bytes_per_param = 0.55 if quant == "4bit" else (2.0 if cuda else 4.0)
    weights_gb = n_params * bytes_per_param / 1e9
    big = n_params > 3e9
    shape = _SHAPE_8B if big else _SHAPE_SMALL
    checkpointing = t.gradient_checkpointing == "on" or (t.gradient_checkpointing == "auto" and big)
    tokens = min(t.max_length, _TOKENS.get(t.approach, 120))
    act_gb = t.batch_size * tokens * _activation_bytes_per_token(shape, checkpointing) / 1e9
    # LoRA r on every linear layer: weights, gradients and two AdamW moments in fp32.
    hidden, intermediate, layers = shape
    per_layer = 2 * hidden + 2 * hidden + 2 * (hidden + hidden // 3) + 3 * (hidden + intermediate)
    lora_params = config.lora.r * layers * per_layer  # q, o, k, v, gate/up/down
    need_gb = weights_gb + act_gb + lora_params * 16 / 1e9 + 0.5
    steps = total_steps_for(config, max(n_train_rows, 1))
    if cuda:
        free, _total = torch.cuda.mem_get_info()
        have_gb = free / 1e9
        rate = _RATE_GPU_8B if big else _RATE_GPU_SMALL_AT_64 * (t.batch_size / 64) ** 0.65
        where = torch.cuda.get_device_name(0)
    else:
        try:
            import psutil

            have_gb = psutil.virtual_memory().available / 1e9
        except ImportError:
            have_gb = 16.0
        rate = _RATE_CPU_SMALL / (60 if big else 1)
        where = "CPU"
    minutes = steps * t.batch_size / rate / 60
    fits = need_gb < 0.9 * have_gb
    reason = ""
    if not fits:
        reason = (
            f"needs about {need_gb:.1f} GB but {where} has {have_gb:.1f} GB free: "
            "lower the batch size or use 4-bit quantization on a GPU."
        )
    elif quant == "4bit" and not cuda:
        reason = "4-bit on the CPU works but is very slow; use quantize 'none' on the CPU."
    elif big and not cuda:
        fits = False
        reason = "an 8B model cannot be fine-tuned on this CPU in useful time; use a GPU."
    return {
        "device": where,
        "quantize": quant,
        "gpu_mem_gb" if cuda else "mem_gb": round(need_gb, 2),
        "available_gb": round(have_gb, 1),
        "steps": steps,
        "minutes": round(minutes, 1),
        "fits": fits,
        "reason": reason,
    }
