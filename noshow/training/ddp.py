"""The multi-process step through torch DistributedDataParallel (`data_parallel="ddp"`), beside
the hand-written one of noshow/training/loop.py (`data_parallel="flat"`, the default: one
all_reduce of the flat gradient buffer per step). The same launchers run both:

    NCCL_NVLS_ENABLE=0 torchrun --standalone --nproc_per_node 4 scripts/train.py --data-parallel ddp
    NCCL_NVLS_ENABLE=0 accelerate launch --num_processes 4 scripts/train.py --data-parallel ddp

Both stay until the GPU rows of scripts/bench_scaling.py decide between them (issue 26; see
BENCHMARKS.md, "Two GPUs against one"): the hand-written path is kept only if it wins by a
clear margin.

How a step maps onto DDP (the step is the flat path's `loop._distributed_step`, given a
`DDPStep` for what differs; every rank builds the same global batches and takes its shard):

- `LossModule` makes the approach's `batch_loss(model, batch)` a module's forward: our losses
  call the decoder and head directly, and DDP's reducer only arms itself in its own forward;
- the shard runs in micro-batches, all but the last under `no_sync()`; the last backward's
  hooks start DDP's bucket all_reduces while the rest of that backward still runs;
- DDP averages over the ranks, but a row weighs 1 / global batch so that the ranks' gradients
  *sum* to the one-process gradient: each rank's weights are multiplied by world_size, which
  is exact for 2, 4 and 8 ranks (a power of two scales floats without rounding);
- `gradient_as_bucket_view=True`: the gradients are views into DDP's buckets (no copy in or
  out); `BucketGrads` zeroes and clips them bucket by bucket, as FlatGrads does its one buffer;
- the step's loss, cancel votes and failures go in one more all_reduce of 4 floats after
  backward, read one step late as in the flat path;
- a rank without rows (a global batch smaller than world_size), or one that failed before its
  synchronised backward, runs a *zero step*: a zero loss over every trainable weight, whose
  hooks join the peers' bucket all_reduces with zeros; then the failure is counted in the
  flags and every rank stops at the same step;
- `init_sync=False`, no buffer broadcast in forward: every rank loads the same base from the
  same files, the loop broadcasts rank 0's trainable weights once (as for the flat path), and
  the model's buffers (rotary frequencies) never change.

What DDP cannot do that the flat path does: a rank that fails (or runs out of memory) inside
its *synchronised* backward cannot rejoin, since its reducer is mid-reduction (any later forward
raises "Expected to have finished reduction in the prior iteration") and the peers wait in
bucket all_reduces it will not issue. That rank raises at once; its process ends and the
launcher ends the others (torchrun stops every worker when one fails; the app's launcher then
marks the run failed). Out of memory in any forward or in a no_sync backward is still retried
with half the micro-batch, as in the flat path.

CUDA graphs: PyTorch's recipe for capturing DDP's backward (CUDA semantics notes, "Usage with
DistributedDataParallel", NCCL >= 2.9.6): TORCH_NCCL_ASYNC_ERROR_HANDLING=0 before the process
group (`distributed.init_group(graphs_with_ddp=True)`), DDP built on the capture stream, and at
least 11 synchronised eager steps before the first capture (StepRunner does the rest).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from noshow.config import TrainConfig
from noshow.modeling.batching import Batch
from noshow.training.step import capture_stream

# PyTorch's recipe: DDP collects runtime statistics (host reads of CUDA events) in its first 10
# synchronised iterations, which a capture refuses.
EAGER_STEPS_BEFORE_CAPTURE = 11
# ... and again every 100 iterations by default; a capture never falls on one with this rate.
LOGGING_SAMPLE_RATE = 2**30
GRAPH_ENGINES = ("auto", "cuda-graphs", "compile+cuda-graphs")


def graphs_with_ddp(train: TrainConfig) -> bool:
    """True when a multi-process run of `train` may capture DDP steps in CUDA graphs (then the
    process group starts with NCCL's async error handling off)."""
    return train.data_parallel == "ddp" and train.engine in GRAPH_ENGINES


class LossModule(torch.nn.Module):
    """`batch_loss(model, batch)` as a module's forward, for DDP to wrap. Called without a
    batch, the zero loss of every trainable weight (a rank's zero step)."""

    def __init__(self, model: torch.nn.Module, batch_loss: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        self.batch_loss = batch_loss
        self.trainable = [p for p in model.parameters() if p.requires_grad]

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        last_index: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if input_ids is None:
            return torch.stack([p.sum() for p in self.trainable]).sum() * 0.0
        return self.batch_loss(self.model, Batch(input_ids, last_index, labels, weight))


def wrap_model(
    model: torch.nn.Module,
    batch_loss: Callable[..., torch.Tensor],
    device: torch.device,
    capture: bool = False,
) -> torch.nn.parallel.DistributedDataParallel:
    """DDP around `LossModule(model, batch_loss)` in the current process group. `capture`: built
    on the capture stream (the recipe for CUDA graphs of DDP's backward)."""
    from torch.nn.parallel import DistributedDataParallel

    module = LossModule(model, batch_loss)
    for p in module.trainable:
        if p.grad is None:  # DDP makes existing gradients views of its buckets at once
            p.grad = torch.zeros_like(p)
    kwargs: dict[str, Any] = {
        "gradient_as_bucket_view": True,
        "init_sync": False,
        "forward_sync_buffers": False,  # torch 2.13's name for broadcast_buffers
    }
    if device.type == "cuda":
        kwargs["device_ids"] = [device.index]
    side = capture_stream() if capture else None
    if side is not None:
        side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side) if side is not None else contextlib.nullcontext():
        ddp = DistributedDataParallel(module, **kwargs)
    if side is not None:
        torch.cuda.current_stream().wait_stream(side)
        with contextlib.suppress(Exception):  # a prototype interface of DDP
            ddp._set_ddp_runtime_logging_sample_rate(LOGGING_SAMPLE_RATE)
    return ddp


class BucketGrads:
    """The trainable gradients where DDP keeps them (`gradient_as_bucket_view=True`: views into
    its communication buckets, each one flat fp32 tensor): FlatGrads's zero and clip_, bucket by
    bucket. The buckets are found from the gradients' storages, again after DDP rebuilds them
    (once, in the second step's forward, in the order the first backward produced them)."""

    def __init__(self, params: list[torch.nn.Parameter], names: list[str] | None = None) -> None:
        self.params = params
        self.names = names or [f"weight {i}" for i in range(len(params))]
        self._key: int | None = None
        self._buckets: list[torch.Tensor] = []

    def buckets(self) -> list[torch.Tensor]:
        # A rebuild allocates every bucket anew while the old ones are still alive (the grads
        # hold them), so the first gradient's address always moves when one happens.
        key = self.params[0].grad.data_ptr()
        if key != self._key:
            storages = {}
            for p in self.params:
                if p.grad.dtype != torch.float32:
                    raise TypeError(f"trainable weights must be fp32, got {p.grad.dtype}")
                storage = p.grad.untyped_storage()
                storages.setdefault(storage.data_ptr(), storage)
            self._buckets = [
                self.params[0].grad.new_empty(0).set_(s, 0, (s.nbytes() // 4,))
                for s in storages.values()
            ]
            self._key = key
        return self._buckets

    def zero(self) -> None:
        for bucket in self.buckets():
            bucket.zero_()

    def clip_(self, max_norm: float) -> torch.Tensor:
        """Scale the gradients to a total L2 norm of at most `max_norm`; returns the norm
        before clipping (a device tensor: no host read)."""
        buckets = self.buckets()
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(b) for b in buckets]))
        scale = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
        for bucket in buckets:
            bucket.mul_(scale)
        return norm

    def snapshot(self) -> list[torch.Tensor]:
        return [b.clone() for b in self.buckets()]

    def restore(self, saved: list[torch.Tensor]) -> None:
        for bucket, value in zip(self.buckets(), saved, strict=True):
            bucket.copy_(value)


class DDPStep:
    """What a multi-process step takes from DDP (the step itself is the flat path's,
    `loop._distributed_step(..., ddp=this)`): the wrapped model and its `batch_loss`, the
    gradients in its buckets, micro-batches under no_sync() but the last, the zero step, the
    flags' own small buffer, and whether a failure could still rejoin the peers."""

    def __init__(
        self,
        model: torch.nn.Module,
        batch_loss: Callable[..., torch.Tensor],
        group: Any,
        engine: str,
        flag_slots: int,
        names: list[str] | None = None,
    ) -> None:
        capture = "cuda-graphs" in engine and group.device.type == "cuda"
        self.ddp = wrap_model(model, batch_loss, group.device, capture=capture)
        self.module: LossModule = self.ddp.module
        self.grads = BucketGrads(self.module.trainable, names)
        self.eager_before_capture = EAGER_STEPS_BEFORE_CAPTURE if capture else 0
        # the step's loss, stop votes and failures, summed once per step beside DDP's buckets
        self.flags = torch.zeros(flag_slots, dtype=torch.float32, device=group.device)
        # True once a synchronised forward returned: DDP's reducer now waits for this
        # backward's hooks, and a failure from here on cannot rejoin the peers
        self.armed = False
        self.ddp.register_forward_hook(self._after_forward)

    def _after_forward(self, ddp: Any, args: Any, output: Any) -> None:
        self.armed = bool(ddp.require_backward_grad_sync) and torch.is_grad_enabled()

    def batch_loss(self, _model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        """What the StepRunner calls: the loss through DDP's forward."""
        return self.ddp(batch.input_ids, batch.last_index, batch.labels, batch.weight)

    def accumulate(self, step_fn, rows: np.ndarray, weights: np.ndarray, state) -> Any:
        """Forward + backward over `rows` in micro-batches, all but the last under no_sync()
        (their gradients add up locally; the last backward reduces the sum). None for no
        rows."""
        starts = list(range(0, len(rows), state.micro_batch))
        total = None
        for i, start in enumerate(starts):
            part = slice(start, start + state.micro_batch)
            last = i == len(starts) - 1
            self.armed = False
            with contextlib.nullcontext() if last else self.ddp.no_sync():
                loss = step_fn(rows[part], weights[part])
            total = loss if total is None else total + loss
        return total

    def zero_step(self) -> None:
        """Join the peers' bucket all_reduces with zero gradients (no rows here, or a failure
        before the synchronised backward)."""
        self.grads.zero()
        self.ddp(None).backward()  # an argument: DDP moves its inputs to the device first
