"""One training step without the fixed host cost: how the forward and backward of a batch
are run (the engine), and the gradients in one flat buffer.

Why: a step of the 135M model is a few milliseconds of GPU arithmetic but ~2,000 kernel
launches, each behind Python in peft's LoRA layers and transformers' Llama code (~0.4 s of
host time per step measured on an H200), so the GPU mostly waited. Engines:

- "eager": PyTorch as written (the CPU's engine; the reference the others must match).
- "cuda-graphs": each batch shape's forward + backward is captured once in a CUDA graph and
  replayed: one launch per step instead of thousands, no Python in between. Batches are
  padded to a few fixed shapes (rows to the batch size, lengths to a multiple of 16) so a
  handful of graphs serve a whole run; they share one memory pool.
- "compile": the decoder layers compiled with torch.compile, one layer at a time (regional
  compilation: every layer has the same code, so one compiled graph serves all of them and
  the cold start stays short); fuses the elementwise work between the matrix products.
- "compile+cuda-graphs": both: fused kernels, replayed without Python.

Anything an engine cannot do here (capture refused by a library, a compiler error) falls
back to "eager" with one log line: a run never fails for the sake of speed.

Under torch DDP (`data_parallel="ddp"`, noshow/training/ddp.py) the graphs follow PyTorch's
recipe for capturing a DDP step (CUDA semantics notes, "Usage with DistributedDataParallel"):
DDP built on the capture stream, at least 11 synchronised eager steps before the first
capture, and a capture's warm-up under `no_sync()`, so no rank runs a collective that its
peers (replaying, or capturing another shape) do not; the synchronised capture records DDP's
bucket all_reduces into the graph, and each replay runs them once on every rank.

Gradients of the trainable weights (LoRA, the classifier head) are views into one flat
fp32 buffer (`FlatGrads`): zeroed in one kernel, clipped in two (norm, scale; no host
read), all-reduced as one tensor under torchrun, and fixed in memory as a CUDA graph needs.

    runner = StepRunner(model, bound.batch_loss, "cuda-graphs", log=session.log)
    grads = FlatGrads(params)
    grads.zero(); loss = runner(batch); grads.clip_(1.0); optimizer.step()
"""

from __future__ import annotations

import contextlib
import os
import typing
from collections.abc import Callable
from typing import Any

import torch

from noshow.config import Engine
from noshow.modeling.batching import Batch

ENGINES = typing.get_args(Engine)
# Sequence lengths are padded to a multiple of this for the graph and compile engines.
LENGTH_MULTIPLE = 16
WARMUP_RUNS = 2  # eager runs of a new shape before its capture (cuBLAS, autograd, allocator)
# A capture is attempted only with this many times the step's activations free (the
# backward's temporaries come on top of them).
CAPTURE_MEMORY_MARGIN = 1.5


def choose_engine(engine: str, device: torch.device, checkpointing: bool) -> str:
    """Settle "auto": eager on the CPU; on CUDA CUDA graphs (measured fastest, see
    BENCHMARKS.md) unless gradient checkpointing is on (its recomputation reads RNG state
    on the host, which a capture refuses), then compile."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}.")
    if device.type != "cuda":
        return "eager"  # graphs are CUDA-only; compile on a CPU costs more than it saves
    if engine == "auto":
        return "compile" if checkpointing else "cuda-graphs"
    if checkpointing and "cuda-graphs" in engine:
        return "compile" if "compile" in engine else "eager"
    return engine


class FlatGrads:
    """The trainable weights' gradients as views into one fp32 buffer."""

    def __init__(
        self,
        params: list[torch.nn.Parameter],
        extra_slots: int = 0,
        names: list[str] | None = None,
    ) -> None:
        """`extra_slots` floats follow the gradients in the buffer (`extras`): what a
        multi-process step sums alongside them in the same all_reduce. `names` label the
        weights in messages."""
        self.params = params
        self.names = names or [f"weight {i}" for i in range(len(params))]
        total = sum(p.numel() for p in params)
        self.buffer = torch.zeros(total + extra_slots, dtype=torch.float32, device=params[0].device)
        self.grads = self.buffer[:total]
        self.extras = self.buffer[total:]
        offset = 0
        for p in params:
            if p.dtype != torch.float32:
                raise TypeError(f"trainable weights must be fp32 for FlatGrads, got {p.dtype}")
            # backward adds into an existing .grad in place, so these views stay the grads
            p.grad = self.buffer[offset : offset + p.numel()].view_as(p)
            offset += p.numel()

    def zero(self) -> None:
        self.buffer.zero_()

    def clip_(self, max_norm: float) -> torch.Tensor:
        """Scale the gradients to a total L2 norm of at most `max_norm`; returns the norm
        before clipping (a device tensor: no host read)."""
        norm = torch.linalg.vector_norm(self.grads)
        self.grads.mul_(torch.clamp(max_norm / (norm + 1e-6), max=1.0))
        return norm

    def snapshot(self) -> torch.Tensor:
        return self.buffer.clone()

    def restore(self, saved: torch.Tensor) -> None:
        self.buffer.copy_(saved)

    def check(self) -> None:
        """Raise if something replaced a view (e.g. zero_grad(set_to_none=True))."""
        base = self.buffer.data_ptr()
        end = base + self.buffer.numel() * 4
        for p in self.params:
            if p.grad is None or not base <= p.grad.data_ptr() < end:
                raise RuntimeError("A gradient left the flat buffer: never set grads to None.")


class StepRunner:
    """Forward + backward of one `Batch` with the chosen engine; returns the detached loss."""

    def __init__(
        self,
        model: torch.nn.Module,
        batch_loss: Callable[[torch.nn.Module, Batch], torch.Tensor],
        engine: str,
        grads: Any = None,
        log: Callable[[str], None] | None = None,
        ddp: Any = None,
        eager_before_capture: int = 0,
    ) -> None:
        """`grads`: FlatGrads, or ddp.BucketGrads (what a capture's warm-up puts back).
        `ddp`: the DistributedDataParallel module `batch_loss` runs through, if any; then
        `eager_before_capture` synchronised calls run eagerly before any capture."""
        self.model = model
        self.batch_loss = batch_loss
        self.engine = engine
        self.grads = grads
        self.log = log or (lambda message: None)
        self.ddp = ddp
        self.eager_left = eager_before_capture
        # (rows, length, synchronised) -> (graph, static batch, static loss)
        self.graphs: dict[tuple[int, int, bool], tuple[Any, Batch, torch.Tensor]] = {}
        self.pool = None
        if "compile" in engine:
            compile_layers(model)

    @property
    def length_multiple(self) -> int:
        return 1 if self.engine == "eager" else LENGTH_MULTIPLE

    @property
    def synchronised(self) -> bool:
        """False inside DDP's no_sync() (this backward runs no collective)."""
        return self.ddp is None or bool(self.ddp.require_backward_grad_sync)

    def __call__(self, batch: Batch) -> torch.Tensor:
        if "cuda-graphs" not in self.engine:
            return self._eager(batch)
        if self.eager_left > 0:  # DDP's first steps run eagerly (bucket rebuild, logging)
            self.eager_left -= int(self.synchronised)
            return self._eager(batch)
        try:
            return self._replay(batch)
        except Exception as e:  # noqa: BLE001 - a capture a library refuses: carry on eager
            restore_cuda_rng_after_failed_capture()
            self._fall_back(f"CUDA graph capture failed ({type(e).__name__}: {e})")
            return self._eager(batch)

    def _eager(self, batch: Batch) -> torch.Tensor:
        try:
            loss = self.batch_loss(self.model, batch)
        except Exception as e:
            if "compile" not in self.engine or _is_oom(e):
                raise
            self._fall_back(f"torch.compile failed ({type(e).__name__}: {e})")
            uncompile_layers(self.model)
            loss = self.batch_loss(self.model, batch)
        loss.backward()
        return loss.detach()

    def _fall_back(self, why: str) -> None:
        self.log(f"{why}; this run continues with the eager engine.")
        self.engine = "eager"
        self.graphs.clear()

    def _replay(self, batch: Batch) -> torch.Tensor:
        entry = self.graphs.get((*batch.shape, self.synchronised))
        if entry is None:
            entry = self._capture(batch)
        graph, static, loss = entry
        for name in ("input_ids", "last_index", "labels", "weight"):
            getattr(static, name).copy_(getattr(batch, name))
        graph.replay()
        return loss.detach().clone()  # the next replay overwrites `loss`

    def _capture(self, batch: Batch):
        """Warm the shape up eagerly on a side stream, then capture its forward + backward.
        The gradients the warm-up adds are put back, so capturing never changes a step."""
        static = Batch(
            *(getattr(batch, n).clone() for n in ("input_ids", "last_index", "labels", "weight"))
        )
        saved = self.grads.snapshot() if self.grads is not None else None
        side = capture_stream()
        side.wait_stream(torch.cuda.current_stream())
        before = torch.cuda.memory_allocated()
        needed = 0
        quiet = self.ddp.no_sync() if self.ddp is not None else contextlib.nullcontext()
        with torch.cuda.stream(side), quiet:
            for _ in range(WARMUP_RUNS):
                loss = self.batch_loss(self.model, static)
                needed = max(needed, torch.cuda.memory_allocated() - before)  # activations
                loss.backward()
        torch.cuda.current_stream().wait_stream(side)
        # The graph keeps this shape's activations in a pool of its own: capturing what does
        # not fit fails inside the capture, and a failed capture can leave CUDA's generator
        # behind (restore_cuda_rng_after_failed_capture): refuse it beforehand instead.
        free, _ = torch.cuda.mem_get_info()
        free += torch.cuda.memory_reserved() - torch.cuda.memory_allocated()
        if needed * CAPTURE_MEMORY_MARGIN > free:
            raise torch.cuda.OutOfMemoryError(
                f"a CUDA graph of batch shape {batch.shape} needs ~{needed / 2**30:.1f} GiB, "
                f"{free / 2**30:.1f} GiB are free"
            )
        graph = torch.cuda.CUDAGraph()
        # under DDP the capture runs on the stream DDP was built on (the recipe's side stream)
        stream = side if self.ddp is not None else None
        with torch.cuda.graph(
            graph, pool=self.pool, stream=stream, capture_error_mode="thread_local"
        ):
            loss = self.batch_loss(self.model, static)
            loss.backward()
        self.pool = graph.pool()
        if saved is not None:
            self.grads.restore(saved)
        entry = (graph, static, loss)
        self.graphs[(*batch.shape, self.synchronised)] = entry
        return entry


_CAPTURE_STREAMS: dict[int, torch.cuda.Stream] = {}


def capture_stream() -> torch.cuda.Stream:
    """One side stream per device for every capture's warm-up: cuBLAS keeps a workspace per
    stream it has run on, so a new stream per capture would keep one more each job."""
    device = torch.cuda.current_device()
    if device not in _CAPTURE_STREAMS:
        _CAPTURE_STREAMS[device] = torch.cuda.Stream()
    return _CAPTURE_STREAMS[device]


def restore_cuda_rng_after_failed_capture() -> None:
    """A capture that fails midway can leave the default CUDA generator in capture mode, and
    every later random draw outside a graph (a new model's initialisation) then fails with
    "Offset increment outside graph capture encountered unexpectedly". Swap in a copy of
    its state (same seed and offset) that is not capturing."""
    generator = torch.cuda.default_generators[torch.cuda.current_device()]
    with contextlib.suppress(Exception):  # older torch: nothing to restore
        generator.graphsafe_set_state(generator.clone_state())


def compile_layers(model: torch.nn.Module) -> int:
    """torch.compile each decoder layer in place (regional compilation); returns how many.
    The compiler's cache lives under NOSHOW_HOME, so a second run starts warm."""
    from noshow.system.paths import cache_dir

    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir() / "inductor"))
    layers = _decoder_layers(model)
    for layer in layers:
        layer.compile(dynamic=False)
    return len(layers)


def uncompile_layers(model: torch.nn.Module) -> None:
    for layer in _decoder_layers(model):
        layer._compiled_call_impl = None  # nn.Module.compile's hook: back to the plain forward


def _decoder_layers(model: torch.nn.Module) -> list[Any]:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return list(base.get_decoder().layers)


def _is_oom(e: BaseException) -> bool:
    from noshow.system.devices import is_oom

    return is_oom(e)
