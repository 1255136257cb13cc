"""Before a run: will it fit this machine, and how long will it take?

from noshow.preflight import estimate_resources
estimate_resources(config, n_train_rows=63_532)   # {"fits": ..., "minutes": ..., ...}
"""

from __future__ import annotations

from typing import Any

import torch

from noshow.config import RunConfig
from noshow.loop import total_steps_for

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
