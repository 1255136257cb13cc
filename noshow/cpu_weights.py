"""CPU inference weights: bf16 linear layers with fp32 activations, where the CPU has native
bf16 (AVX512-BF16 or AMX), else plain fp32.

Single-statement scoring on a CPU is bound by reading the weights (~106M linear weights per
forward, 424 MB in fp32), so halving their bytes nearly halves the time, and AMX makes
the bf16 matmuls themselves cheap. Only the matmul inputs and weights are rounded: the
residual stream, norms, attention softmax and the heads stay fp32. Measured on the shipped
adapters and 400 real test statements: max |dP| 0.011 (generative) / 0.02 (classifier)
against fp32, ROC-AUC unchanged within noise; a full bf16 model moved P by up to 0.05 and
cost the generative adapter 0.036 AUC, so it is not offered (see BENCHMARKS.md).

bf16 matmul kernels round differently for different row counts, so a statement in a batch
would score up to 0.006 away from the same statement alone; predictors with these weights
score one statement per forward (`single_rows`), which keeps batch == single bit-for-bit
and, weight-bound as the CPU is, costs about what fp32 batches did.

`NOSHOW_CPU_WEIGHTS=float32` keeps exact fp32 weights (what the model cards were scored in);
`bfloat16` forces bf16 even where the CPU would emulate it (slow, for tests).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

ENV_VAR = "NOSHOW_CPU_WEIGHTS"
CHOICES = ("auto", "float32", "bfloat16")


def native_bf16() -> bool:
    """True when this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX tiles)."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # an older torch without the probes: assume emulation
        return False


def cpu_weights_choice(requested: str | None = None) -> str:
    """'float32' or 'bfloat16' for CPU inference, from the argument, else the env var, else
    'auto' (bf16 only where native). An unknown value is an error that names the choices."""
    value = (requested or os.environ.get(ENV_VAR) or "auto").strip().lower()
    aliases = {"fp32": "float32", "bf16": "bfloat16"}
    value = aliases.get(value, value)
    if value not in CHOICES:
        raise ValueError(f"{ENV_VAR}={value!r}: use one of {', '.join(CHOICES)}.")
    if value == "auto":
        return "bfloat16" if native_bf16() else "float32"
    return value


class Bf16Linear(torch.nn.Module):
    """A frozen Linear whose weight is stored in bf16; takes and returns the caller's dtype."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = torch.nn.Parameter(
            linear.weight.detach().to(torch.bfloat16), requires_grad=False
        )
        self.bias = (
            None
            if linear.bias is None
            else torch.nn.Parameter(linear.bias.detach().to(torch.bfloat16), requires_grad=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.to(torch.bfloat16), self.weight, self.bias).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bf16 weight"


def bf16_linears(module: torch.nn.Module) -> int:
    """Replace every nn.Linear under `module` by a Bf16Linear, in place; returns how many.
    Call it on the decoder only: the heads run on one position and stay fp32."""
    count = 0
    for name, child in list(module.named_children()):
        if type(child) is torch.nn.Linear:
            setattr(module, name, Bf16Linear(child))
            count += 1
        else:
            count += bf16_linears(child)
    return count


def uses_bf16_linears(model: torch.nn.Module) -> bool:
    return any(isinstance(m, Bf16Linear) for m in model.modules())
