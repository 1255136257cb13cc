"""What kind of CPU this is, from its feature flags: what decides which engine is fastest
(native bf16, int8 dot products, AVX512) in `noshow.inference.cpu.choice`.

    from noshow.inference.cpu.features import cpu_flags, cpu_kind
    cpu_kind(cpu_flags())   # 'avx2', 'avx512_bf16', 'amx', ...
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

INT8_DOT = frozenset({"avx512_vnni", "avx512vnni", "avx_vnni", "amx_int8"})


def cpu_kind(flags: Iterable[str]) -> str:
    """The kind of CPU, from its feature flags as /proc/cpuinfo spells them."""
    flags = set(flags)
    if {"amx_tile", "amx_bf16"} <= flags:
        return "amx"
    if "avx512_bf16" in flags:
        return "avx512_bf16"
    if "avx512_vnni" in flags or "avx512vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    return "other"


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """This CPU's flags from /proc/cpuinfo; elsewhere what torch can tell."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    import torch

    flags = set()
    capability = torch.backends.cpu.get_cpu_capability().lower()
    if "avx512" in capability:
        flags |= {"avx512f", "avx2"}
    elif "avx2" in capability:
        flags.add("avx2")
    if torch.cpu._is_avx512_bf16_supported():
        flags.add("avx512_bf16")
    if torch.cpu._is_amx_tile_supported():
        flags |= {"amx_tile", "amx_bf16"}
    return frozenset(flags)


def has_int8_dot(flags: Iterable[str]) -> bool:
    """Whether the CPU has int8 dot-product instructions (VNNI or AMX)."""
    return bool(INT8_DOT & set(flags))
