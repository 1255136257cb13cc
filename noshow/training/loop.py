"""The lean training loop: length-grouped batches, fused AdamW (CUDA), warm-up + cosine,
one host sync every `log_every(total)` steps, cancel checked every step, micro-batches halved on
out-of-memory, mid-training validation with early stopping, resumable checkpoints.

In a multi-process run (`session.dist`) each rank trains on its shard of every batch and the
gradients are summed in one all_reduce per step (see noshow/training/distributed.py), or through
torch DDP with `data_parallel="ddp"` (noshow/training/ddp.py).

    from noshow.training.loop import fit
    state = fit(session, model, train_enc, bound.loss, bound.score, mid_val, device)
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from noshow.config import RunConfig
from noshow.modeling.batching import Encoded, length_grouped_batches, make_batch
from noshow.modeling.lora import checkpointing_on, trainable_state
from noshow.system.devices import free_accelerator_memory, is_oom
from noshow.training import runs
from noshow.training.finite import GradientWatch, check_finite_requested, describe_non_finite
from noshow.training.session import TrainingCancelled, TrainingError, TrainingSession
from noshow.training.step import FlatGrads, StepRunner, choose_engine

CHECKPOINT_EVERY_STEPS = 500
# Mid-training validation uses at most this many rows so evaluation never dominates.
MID_EVAL_MAX_ROWS = 4_000
LOG_EVERY = 10


def log_every(total_steps: int) -> int:
    """Steps between loss readings (each one a host sync): every step for a short run, so
    its curve has a point per step; every LOG_EVERY steps for a long one."""
    return 1 if total_steps <= 100 else LOG_EVERY


# The flat gradient buffer's last slots in a multi-process run: the step's loss, the cancel
# votes, the failures and the out-of-memory failures, summed in the gradients' all_reduce.
STEP_FLAG_SLOTS = 4


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


def make_optimizer(params: list[torch.nn.Parameter], config: RunConfig, device: torch.device):
    kwargs: dict[str, Any] = {"lr": config.train.lr, "weight_decay": config.train.weight_decay}
    if device.type == "cuda":
        kwargs["fused"] = True  # one kernel for all LoRA tensors instead of one per tensor
    return torch.optim.AdamW(params, **kwargs)


# (rows of the step, their loss weights) -> the detached weighted loss, after backward
StepFn = Callable[[np.ndarray, np.ndarray], torch.Tensor]


def fit(
    session: TrainingSession,
    model: torch.nn.Module,
    encoded: Encoded,
    bound: Any,
    val_encoded: Encoded | None,
    device: torch.device,
) -> LoopState:
    """The lean loop: length-grouped batches, fused AdamW, warm-up + cosine, one host sync
    every `log_every` steps, cancel checked every step, micro-batches halved on OOM.

    `bound` is the approach bound to this model (`batch_loss`, `row_weights`, `pad_id`,
    `score`). The forward/backward runs with the engine of `config.train.engine`
    (noshow/training/step.py). In a multi-process run (`session.dist`) each rank trains on its
    shard of every batch and the gradients are summed in one all_reduce per step."""
    from noshow.training.distributed import dump_rank_state

    try:
        return _fit_loop(session, model, encoded, bound, val_encoded, device)
    finally:
        # NOSHOW_DEBUG_RANK_STATE only (tests compare ranks), also after a cancel
        dump_rank_state(session.dist, model, session.loop.step if session.loop else 0)


def make_step_fn(
    runner: StepRunner, bound: Any, encoded: Encoded, state: LoopState, device: torch.device
) -> StepFn:
    """Rows of one step -> fixed-shape batches (the runner's length multiple; every
    micro-batch padded to the micro-batch's rows) -> forward + backward."""

    def step_fn(rows: np.ndarray, weights: np.ndarray) -> torch.Tensor:
        batch = make_batch(
            encoded,
            rows,
            bound.pad_id,
            device,
            weights,
            rows=state.micro_batch if runner.length_multiple > 1 else None,
            multiple=runner.length_multiple,
        )
        return runner(batch)

    return step_fn


def _fit_loop(session, model, encoded, bound, val_encoded, device) -> LoopState:
    from noshow.evaluation.metrics import compute_metrics
    from noshow.training.distributed import StepFlags

    cfg = session.config.train
    group = session.dist
    total = total_steps_for(session.config, len(encoded))
    params = [p for p in model.parameters() if p.requires_grad]
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    checkpointing = checkpointing_on(model)
    engine = choose_engine(cfg.engine, device, checkpointing)
    watch = None
    if check_finite_requested():
        engine = "eager"  # a captured or compiled step cannot stop to look at each module
        watch = GradientWatch(model)
        session.log("NOSHOW_CHECK_FINITE: every gradient is checked after each backward.")
    ddp_step = None
    if group is not None and cfg.data_parallel == "ddp":
        from noshow.training.ddp import DDPStep

        # the library's step beside the hand-written one below, until BENCHMARKS.md's scaling
        # rows decide between them (issue 26)
        ddp_step = DDPStep(model, bound.batch_loss, group, engine, STEP_FLAG_SLOTS, names)
        grads = ddp_step.grads
        runner = StepRunner(
            model,
            ddp_step.batch_loss,
            engine,
            grads,
            log=session.warn,
            ddp=ddp_step.ddp,
            eager_before_capture=ddp_step.eager_before_capture,
        )
    else:
        extra = STEP_FLAG_SLOTS if group is not None else 0
        grads = FlatGrads(params, extra_slots=extra, names=names)
        runner = StepRunner(model, bound.batch_loss, engine, grads, log=session.warn)
    optimizer = make_optimizer(params, session.config, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(total, cfg.warmup_steps))
    if group is None:
        state = LoopState(micro_batch=cfg.batch_size)
    else:
        # each rank's share of a batch; halving on OOM starts from there
        state = LoopState(micro_batch=math.ceil(cfg.batch_size / group.world_size))
        group.broadcast_parameters(params)  # every rank starts from rank 0's weights
        torch.manual_seed(cfg.seed + group.rank)  # but draws its own dropout masks
        flags = StepFlags(group.device)
    lengths = encoded.lengths
    weights_all = bound.row_weights(encoded.labels)
    session.loop = state
    every = log_every(total)
    step_fn = make_step_fn(runner, bound, encoded, state, device)

    if session.resume:
        state = _load_checkpoint(session, model, optimizer, scheduler, state)
        session.loop = state
        step_fn = make_step_fn(runner, bound, encoded, state, device)

    model.train()
    running = torch.zeros((), device=device)
    running_n = 0
    t_first: float | None = None
    t0 = time.time()
    samples_at_t0 = state.samples_seen
    # model and data are ready; the preflight times the first step from here
    session.emit(phase="ready", total_steps=total)
    parallel = f", {group.world_size} processes ({cfg.data_parallel})" if group else ""
    session.log(f"Training starts: {total} steps, engine {engine}{parallel}.")
    while state.step < total:
        batches = length_grouped_batches(lengths, cfg.batch_size, cfg.seed + state.epoch)
        start_batch = state.batch_in_epoch
        for bi in range(start_batch, len(batches)):
            if state.step >= total:
                break
            idx = batches[bi]
            weights = weights_all[idx] / weights_all[idx].sum()  # the step's mean, on the host
            if group is None:
                session.check_stop()
                loss_value = _optimizer_step(
                    step_fn, idx, weights, optimizer, grads, state, session, watch
                )
            else:
                _check_step_flags(session, flags)  # the previous step's votes: one step late
                loss_value = _distributed_step(
                    step_fn, idx, weights, optimizer, grads, state, session, flags, ddp_step
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
            if state.step % every == 0 or state.step == total or state.step <= 3:
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
                    session, model, bound.score, val_encoded, state, compute_metrics
                )
                _save_checkpoint(session, model, optimizer, scheduler, state)
                if stop_early:
                    session.log(
                        f"Early stopping: no better validation AUC in "
                        f"{cfg.early_stopping_patience} evaluations."
                    )
                    return state
            elif state.step % CHECKPOINT_EVERY_STEPS == 0 and state.step < total:
                _save_checkpoint(session, model, optimizer, scheduler, state)
        else:
            state.epoch += 1
            state.batch_in_epoch = 0
            continue
    return state


def _accumulate(step_fn: StepFn, rows: np.ndarray, weights: np.ndarray, state) -> torch.Tensor:
    """Forward + backward over `rows` in micro-batches; `weights` (the rows' shares of the
    whole step) make the micro-batches' gradients add up to the step's mean. Returns the
    step's loss (detached, on the device)."""
    total = None
    for start in range(0, max(len(rows), 1), state.micro_batch):
        part = slice(start, start + state.micro_batch)
        if len(rows[part]) == 0:
            break
        loss = step_fn(rows[part], weights[part])
        total = loss if total is None else total + loss
    return total


def _optimizer_step(
    step_fn, idx, weights, optimizer, grads, state, session, watch=None
) -> torch.Tensor:
    """One optimizer step over `idx`, split into micro-batches; on OOM halve and retry.
    With a `GradientWatch` (NOSHOW_CHECK_FINITE=1), a non-finite loss or gradient stops the
    run with a message naming where the backward first went wrong."""
    while True:
        try:
            grads.zero()
            if watch is not None:
                watch.reset()
            total = _accumulate(step_fn, idx, weights, state)
            if watch is not None:
                problem = describe_non_finite(
                    state.step + 1, total, grads.names, grads.params, watch
                )
                if problem:
                    raise TrainingError(problem)
            grads.clip_(1.0)
            optimizer.step()
            return total
        except Exception as e:
            if not is_oom(e) or state.micro_batch <= 1:
                raise
            grads.zero()
            free_accelerator_memory()
            state.micro_batch = max(1, state.micro_batch // 2)
            session.log(
                f"Out of memory: micro-batch lowered to {state.micro_batch} (gradient accumulation)."
            )


def _distributed_step(step_fn, idx, weights, optimizer, grads, state, session, flags, ddp=None):
    """One optimizer step of a multi-process run over global batch `idx`: this rank's shard
    in micro-batches (halved on OOM, locally: nothing collective runs in backward), then one
    all_reduce(SUM) of the flat gradient buffer with the loss, cancel votes and failures in
    its last slots.

    `weights` are the rows' shares of the global batch, so the summed gradient is the
    single-process one. A rank that fails still joins the all_reduce (with zero gradients and
    its failure counted) before raising, so no rank waits for a missing peer. Returns the
    global batch's loss (on the device; no host sync).

    With `ddp` (a noshow.training.ddp.DDPStep) the gradients are reduced by DDP in the
    shard's last backward instead, and only the step's flags by the all_reduce here; a rank
    without rows or that failed before that backward joins DDP's collectives with a zero step,
    and a failure inside it is raised at once (nothing can rejoin; see ddp.py)."""
    group = session.dist
    positions = group.shard(np.arange(len(idx)))
    mine, my_weights = idx[positions], weights[positions]
    if ddp is not None:  # DDP averages the ranks' gradients: world_size x the shares sums them
        my_weights = my_weights * np.float32(group.world_size)
    accumulate = _accumulate if ddp is None else ddp.accumulate
    failure: Exception | None = None
    total = None
    while True:
        try:
            grads.zero()
            if len(mine) or ddp is not None:
                total = accumulate(step_fn, mine, my_weights, state)
            break
        except Exception as e:
            if ddp is not None and ddp.armed:
                raise  # inside DDP's synchronised backward: no way to rejoin the peers
            grads.zero()
            if is_oom(e) and state.micro_batch > 1:
                free_accelerator_memory()
                state.micro_batch = max(1, state.micro_batch // 2)
                session.warn(
                    f"Out of memory: micro-batch lowered to {state.micro_batch} "
                    "(gradient accumulation)."
                )
                continue
            failure = e
            grads.zero()
            break
    if ddp is not None and total is None:
        ddp.zero_step()
    failed = failure is not None
    extras = grads.extras if ddp is None else ddp.flags  # [loss, stop vote, failed, by OOM]
    extras.zero_()
    if total is not None:
        extras[0].copy_(total)
    # fills, not host-to-device copies: nothing waits here
    extras[1].fill_(float(session.stop_vote()))
    extras[2].fill_(float(failed))
    extras[3].fill_(float(failed and is_oom(failure)))
    reduced = group.all_reduce_flat(grads.buffer if ddp is None else ddp.flags)
    flags.record(reduced[-STEP_FLAG_SLOTS + 1 :], state.step + 1)
    if failure is not None:
        session.failure_shared = True  # the others learn of it from this step's flags
        raise failure
    grads.clip_(1.0)
    optimizer.step()
    loss = reduced[-STEP_FLAG_SLOTS]
    return loss if ddp is None else loss / group.world_size  # (a new tensor: `flags` is reused)


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


def _mid_eval(session, model, score_fn, val_encoded, state, compute_metrics) -> bool:
    if val_encoded is None or len(val_encoded) == 0:
        return False
    session.emit(phase="evaluating", step=state.step, message="Evaluating on validation rows")
    model.eval()
    p = session.score(score_fn, val_encoded, "validation")
    model.train()
    m = compute_metrics(val_encoded.labels, p, 0.5)
    auc = m.get("roc_auc")
    session.record_metrics({"step": state.step, "val_auc": auc, "val_brier": m.get("brier")})
    session.emit(phase="training", step=state.step, val_auc=auc)
    session.log(f"Step {state.step}: validation ROC-AUC {'n/a' if auc is None else f'{auc:.3f}'}")
    patience = session.config.train.early_stopping_patience
    if auc is not None and (state.best_val_auc is None or auc > state.best_val_auc + 1e-4):
        state.best_val_auc = auc
        state.evals_without_gain = 0
    else:
        state.evals_without_gain += 1
    return bool(patience) and state.evals_without_gain >= patience


def _save_checkpoint(session, model, optimizer, scheduler, state) -> None:
    """Resumable checkpoint: trainable weights, optimizer, scheduler, loop position (rank 0
    writes it; every rank holds the same state)."""
    if not session.is_writer:
        return
    root = runs.checkpoint_dir(session.run_dir)
    final = root / f"step-{state.step}"
    staging = root / f".step-{state.step}.partial"
    if staging.exists():
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
