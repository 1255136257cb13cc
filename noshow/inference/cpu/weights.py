"""CPU inference weights: bf16 linear layers with fp32 activations, the NF4 round trip of a
4-bit-trained adapter's base, and huge pages. Which engine scores is decided in
`noshow.inference.cpu.choice`; this module holds the weight transforms.

bf16 linears: only the matmul inputs and weights are rounded; the residual stream, norms,
attention softmax and the heads stay fp32. Measured on the shipped adapters and 400 real
test statements: max |dP| 0.011 (generative) / 0.02 (classifier) against fp32, ROC-AUC
unchanged within noise; a full bf16 model moved P by up to 0.05 and cost the generative
adapter 0.036 AUC, so it is not offered (see BENCHMARKS.md). Whether bf16 is faster depends
on the CPU: with AMX about half the time of fp32, with AVX512-BF16 alone 12-23% slower on
one CPU and faster on another, hence the measured table.

Huge pages (`hugepage_weights`): with transparent huge pages in `madvise` mode (common on
VMs), torch's weights sit in 4 KiB pages and a forward that streams ~200 MB of them is bound
by TLB misses as much as by memory bandwidth. Moving the decoder's weights into one 2 MiB
aligned anonymous mapping advised MADV_HUGEPAGE cut the matmul time of a SmolLM2-135M
forward from 108 to 44 ms on a 2-core KVM VM, and single-statement p50 from 279 to 167 ms
(generative) and 136 to 120 ms (classifier). Values are copied bit-for-bit. `load_predictor`
does it for merged models on the CPU; `NOSHOW_HUGEPAGES=0` turns it off. It is a no-op
where THP is `never` or absent, or the OS has no MADV_HUGEPAGE.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import torch
import torch.nn.functional as F

HUGEPAGES_ENV_VAR = "NOSHOW_HUGEPAGES"
THP_ENABLED = Path("/sys/kernel/mm/transparent_hugepage/enabled")
HUGE_PAGE = 2 << 20  # x86-64 / arm64 (4 KiB base pages) PMD size
ARENA_ATTR = "_noshow_hugepage_arena"


def native_bf16() -> bool:
    """True when this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX tiles)."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # an older torch without the probes: assume emulation
        return False


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


def _blockwise_snap(values: torch.Tensor, code: torch.Tensor, blocksize: int):
    """bitsandbytes' blockwise quantization of a flat fp32 tensor: each block scaled by its
    absmax and snapped to the nearest `code` value (code sorted). Returns the snapped values
    (blocks, blocksize), zero-padded at the end, and the per-block absmax."""
    n = values.numel()
    padded = torch.nn.functional.pad(values, (0, (-n) % blocksize)).view(-1, blocksize)
    absmax = padded.abs().amax(dim=1)  # zero padding never raises a block's absmax
    scaled = (padded / absmax.clamp(min=1e-38).unsqueeze(1)).clamp(-1, 1)
    return code[torch.bucketize(scaled, (code[:-1] + code[1:]) / 2)], absmax


# bitsandbytes' NF4 code (`get_4bit_type("nf4")`): quantiles of N(0, 1), equal mass per bin.
NF4_CODE = (
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
)


def dynamic_code() -> torch.Tensor:
    """bitsandbytes' signed 8-bit dynamic code (`create_dynamic_map()`, 7 exponent bits), the
    code QLoRA's double quantization stores the block absmaxes in; sorted, 256 values."""
    data: list[float] = []
    for i in range(7):  # exponent 10^(i - 6), 2^i fraction steps between 0.1 and 1
        bounds = torch.linspace(0.1, 1, 2**i + 1, dtype=torch.float32)
        means = (bounds[:-1] + bounds[1:]) / 2.0  # scaled in float32, as bitsandbytes does
        data += (10 ** (i - 6) * means).tolist() + (-(10 ** (i - 6)) * means).tolist()
    data += [0.0, 1.0]
    data += [0.0] * (256 - len(data))
    return torch.tensor(sorted(data), dtype=torch.float32)


def nf4_round(weight: torch.Tensor) -> torch.Tensor:
    """`weight` as QLoRA's 4-bit base holds it: bitsandbytes NF4 from bf16, blocks of 64,
    the block absmaxes double-quantized (8-bit dynamic code, blocks of 256, mean offset),
    dequantized to bf16. Same arithmetic as bitsandbytes' reference kernels, vectorized
    (its CPU path takes ~12 s for SmolLM2's decoder; this, about a second), and without
    bitsandbytes itself, so a CPU-only install scores 4-bit-trained adapters too."""
    nf4 = torch.tensor(NF4_CODE, dtype=torch.float32)
    dynamic = dynamic_code()
    flat = weight.detach().to(torch.bfloat16).float().reshape(-1)
    snapped, absmax = _blockwise_snap(flat, nf4, 64)
    offset = absmax.mean()
    absmax_code, absmax_scale = _blockwise_snap(absmax - offset, dynamic, 256)
    absmax_hat = (absmax_code * absmax_scale.unsqueeze(1)).reshape(-1)[: absmax.numel()]
    rounded = snapped * (absmax_hat + offset).unsqueeze(1)
    n = flat.numel()
    return rounded.reshape(-1)[:n].to(torch.bfloat16).to(weight.dtype).view_as(weight)


def nf4_round_trip(module: torch.nn.Module) -> int:
    """Round every nn.Linear weight under `module` through NF4 in place (`nf4_round`);
    returns how many. Call it on the decoder of a CPU base before merging an adapter trained
    on a 4-bit base: the adapter learned to correct that base, not the exact one. Measured on
    300 real test rows against the GPU's 4-bit scores: mean |dP| 0.012 generative / 0.001
    classifier with it, 0.16 / 0.02 without (the generative P fell from 0.25 to 0.09 on
    average, so its validation threshold no longer applied)."""
    count = 0
    with torch.no_grad():
        for layer in module.modules():
            if type(layer) is torch.nn.Linear:
                layer.weight.copy_(nf4_round(layer.weight))
                count += 1
    return count


def uses_bf16_linears(model: torch.nn.Module) -> bool:
    return any(isinstance(m, Bf16Linear) for m in model.modules())


def transparent_hugepages() -> str:
    """The kernel's THP mode: 'always', 'madvise' or 'never'; 'unavailable' without THP."""
    try:
        text = THP_ENABLED.read_text()
    except OSError:
        return "unavailable"
    start, end = text.find("["), text.find("]")
    return text[start + 1 : end] if 0 <= start < end else "unavailable"


def hugepages_wanted() -> bool:
    """False when NOSHOW_HUGEPAGES is 0/false/no/off."""
    value = os.environ.get(HUGEPAGES_ENV_VAR, "").strip().lower()
    return value not in ("0", "false", "no", "off")


def hugepage_weights(module: torch.nn.Module) -> int:
    """Move the parameters of an inference model into one 2 MiB aligned anonymous mapping
    advised MADV_HUGEPAGE (each 64-byte aligned, values bit-for-bit); returns the bytes moved.

    Embedding weights, and anything tied to them (a tied lm_head), stay where they are: they
    are only gathered from, and ties stay ties. The mapping lives as long as the tensors in
    it (and is kept on `module`). 0, with nothing changed, where it cannot help: no
    MADV_HUGEPAGE (non-Linux), THP `never`/absent, NOSHOW_HUGEPAGES=0, already done, or any
    OSError. Meant for frozen inference weights (see the module docstring for why)."""
    if not hasattr(mmap, "MADV_HUGEPAGE") or not hugepages_wanted():
        return 0
    if transparent_hugepages() not in ("always", "madvise") or hugepage_arena(module) is not None:
        return 0
    embedded = {
        id(p)
        for m in module.modules()
        if isinstance(m, torch.nn.Embedding)
        for p in m.parameters(recurse=False)
    }
    params = [
        p
        for p in module.parameters()  # each tensor once, however many modules share it
        if id(p) not in embedded and p.device.type == "cpu" and p.numel() > 0
    ]
    nbytes = [p.numel() * p.element_size() for p in params]
    total = sum((n + 63) // 64 * 64 for n in nbytes)
    if not total:
        return 0
    # whole huge pages from an aligned start: room to align, and the last page in full
    length = -(-total // HUGE_PAGE) * HUGE_PAGE + HUGE_PAGE
    try:
        arena = mmap.mmap(-1, length, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        arena.madvise(mmap.MADV_HUGEPAGE)
    except (OSError, ValueError):
        return 0
    raw = torch.frombuffer(arena, dtype=torch.uint8)  # holds a reference to `arena`
    offset = -raw.data_ptr() % HUGE_PAGE
    with torch.no_grad():
        for p, n in zip(params, nbytes, strict=True):
            view = raw[offset : offset + n].view(p.dtype).view(p.shape)
            view.copy_(p.data)
            p.data = view  # the same Parameter object: ties and module references hold
            offset += (n + 63) // 64 * 64
    setattr(module, ARENA_ATTR, _Arena(arena))
    return sum(nbytes)


class _Arena:
    """Keeps the mapping on its module. A deep copy of the module copies the tensors out of
    the mapping into ordinary memory, so the copy holds no arena (an mmap cannot be copied)."""

    def __init__(self, mapping: mmap.mmap):
        self.mapping = mapping

    def __deepcopy__(self, memo) -> None:
        return None


def hugepage_arena(module: torch.nn.Module) -> mmap.mmap | None:
    """The mapping `hugepage_weights` moved this module's weights into, if any."""
    holder = getattr(module, ARENA_ATTR, None)
    return holder.mapping if holder is not None else None
