"""Which device to compute on, and the few device facts the rest of the code asks about:
bf16 autocast on CUDA, giving accelerator memory back, recognising out-of-memory errors,
whether bitsandbytes works here.

torch is imported inside the functions, so the app can call `free_accelerator_memory()`
without loading it.

    from noshow.system.devices import pick_device
    device = pick_device()            # cuda:LOCAL_RANK under torchrun, cuda, else cpu
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def pick_device(requested: str | torch.device | None = None) -> torch.device:
    """`requested` when given; else CUDA when present (cuda:LOCAL_RANK in a multi-process
    launch, one GPU per process), else the CPU."""
    import torch

    if requested is not None:
        return torch.device(requested)
    if not torch.cuda.is_available():
        return torch.device("cpu")
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0") or 0))
    return torch.device("cuda")


def autocast_context(device: torch.device):
    """bf16 autocast on CUDA (4-bit layers compute in bf16 anyway); plain fp32 on the CPU.
    Its cast cache is off: a CUDA graph capture must not keep casts across replays, and a
    step casts each LoRA weight once anyway."""
    import torch

    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)
    return contextlib.nullcontext()


def free_accelerator_memory() -> None:
    """Collect garbage and release cached GPU memory (only if torch is already loaded),
    cuBLAS's workspaces included: cuBLAS keeps one per handle and stream (a job's thread and
    its capture stream each got one), and a finished job must give the GPU back whole."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None:
        with contextlib.suppress(Exception):  # best effort
            if torch.cuda.is_available():
                clear = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)
                if clear is not None:
                    clear()
                torch.cuda.empty_cache()


def is_oom(err: BaseException) -> bool:
    """True for CUDA's out-of-memory error and for allocators that only say so in words."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(err, torch.cuda.OutOfMemoryError):
        return True
    return "out of memory" in str(err).lower()


def bitsandbytes_ok() -> bool:
    """bitsandbytes imports here (missing, or present but broken for this platform: False)."""
    try:
        import bitsandbytes  # noqa: F401
    except Exception:
        return False
    return True
