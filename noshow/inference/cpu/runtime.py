"""Which form of the CPU forward scores statements, chosen by timing at load.

Which products are fastest depends on the CPU, and no rule read from its flags held up.
Measured on 2 cores: on an Intel Xeon with AMX, oneDNN-packed bf16 weights took half the
time of fp32; the same Xeon capped to AVX512-BF16 (`ONEDNN_MAX_CPU_ISA`) ran bf16 12-23%
SLOWER than fp32; on an AMD EPYC (Zen 4, AVX512-BF16, no AMX) packed bf16 products ran 2.4x
faster than fp32 per core, while torch's fp32 `F.linear` (MKL) was 1.34x slower there than
oneDNN's fp32. So `choose_cpu_path` builds the lean forward (`noshow.inference.cpu.forward`) in each
candidate form and times them on one real-length statement, alternating, and keeps the
fastest; ties (within `TIE`) go to the more exact form, so the choice is never slower than
fp32 and is fp32 where nothing beats it:

- `float32`: the merged fp32 weights as they are, `F.linear` (the exact reference);
- `float32-onednn`: the same fp32 weights prepacked for oneDNN (same scores, ~1e-6);
- `bfloat16`: bf16 weights with fp32 activations, prepacked for oneDNN where it can pack
  bf16 on this CPU (plain `F.linear` otherwise); only where the CPU has native bf16.
  P(no-show) moves by ~0.01 against fp32 (tests/test_cpu_runtime.py).

The timing (~2 s) runs once per process and model shape: the second adapter on the same
base reuses the choice. It is not kept on disk: timed under a passing load it may pick a
form that is not the quiet machine's best, and the next start times again. Statements share one forward (`predict_proba(list)`) where that gives the same
scores as one at a time (`CpuPath.batch_equals_single`). `NOSHOW_CPU_WEIGHTS` (or
`load_predictor(cpu_weights=...)`) names one form and skips the timing.

    from noshow.inference.cpu.runtime import choose_cpu_path
    path = choose_cpu_path(model.get_decoder(), sample_ids, prefix_ids=prefix)
    path.name, path.label, path.timings_ms      # 'bfloat16', 'bf16 linears ...', {...}
"""

from __future__ import annotations

import os
import statistics
import threading
import time
import types
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from noshow.inference.cpu.forward import (
    Matmuls,
    build_fast_path,
    last_hidden_states,
    onednn_available,
    rows_independent,
)
from noshow.inference.cpu.weights import native_bf16

CANDIDATES: dict[str, Matmuls] = {
    "float32": Matmuls(torch.float32, onednn=False),
    "float32-onednn": Matmuls(torch.float32, onednn=True),
    "bfloat16": Matmuls(torch.bfloat16, onednn=True),
}
# A faster form must beat a more exact one by more than this to be chosen: timing noise
# must not trade exact scores for nothing.
TIE = 0.05
TIMED_ROUNDS = 5

_CHOSEN: dict[tuple, tuple[str, dict[str, float]]] = {}
_ROWS_INDEPENDENT: dict[tuple, bool] = {}
_CHOSEN_LOCK = threading.Lock()


@dataclass
class CpuPath:
    """The lean forward's state in the chosen form, and how it was chosen."""

    name: str
    """'float32', 'float32-onednn' or 'bfloat16' (a key of CANDIDATES)."""
    matmuls: Matmuls
    state: types.SimpleNamespace
    timings_ms: dict[str, float] = field(default_factory=dict)
    """Median ms per candidate from the timing at load (empty when named, not timed)."""
    how: str = "named"
    """'timed' (this load), 'timed earlier' (this process, same model shape) or 'named'."""

    @property
    def batch_equals_single(self) -> bool:
        """Whether statements may share a forward: always in fp32 (rows differ by ~1e-7 at
        most), in bf16 only where this CPU's products are row-independent bit-for-bit."""
        if self.matmuls.dtype == torch.float32:
            return True
        key = (self.matmuls, torch.get_num_threads(), os.environ.get("ONEDNN_MAX_CPU_ISA", ""))
        with _CHOSEN_LOCK:
            known = _ROWS_INDEPENDENT.get(key)
        if known is None:
            known = rows_independent(self.state)
            with _CHOSEN_LOCK:
                _ROWS_INDEPENDENT[key] = known
        return known

    @property
    def label(self) -> str:
        return self.matmuls.label

    def describe(self) -> str:
        """How it was chosen, for the Compare card: 'timed fastest: bfloat16 52 ms,
        float32-onednn 95 ms, float32 118 ms' or 'set by name'."""
        if not self.timings_ms:
            return "set by name"
        ranked = sorted(self.timings_ms.items(), key=lambda item: item[1])
        return "timed fastest: " + ", ".join(f"{k} {v:.0f} ms" for k, v in ranked)


def candidate_forms(requested: str = "auto") -> dict[str, Matmuls]:
    """The forms to build: the one `requested` names, or for 'auto' every candidate this
    CPU can run (bf16 only with native bf16: emulated, it is many times slower). A form
    whose oneDNN packing this CPU lacks falls back to plain products."""
    names = list(CANDIDATES) if requested == "auto" else [requested]
    if requested == "auto" and not native_bf16():
        names.remove("bfloat16")
    forms = {}
    for name in names:
        matmuls = CANDIDATES[name]
        if matmuls.onednn and onednn_available(matmuls.dtype) is not None:
            if matmuls.dtype == torch.float32 and requested == "auto":
                continue  # plain fp32 is already a candidate
            matmuls = Matmuls(matmuls.dtype, onednn=False)
        forms[name] = matmuls
    return forms


def machine_key(decoder: torch.nn.Module) -> tuple:
    """What the choice depends on: the model's shape, torch's threads and oneDNN's ISA cap."""
    config = decoder.config
    return (
        config.hidden_size,
        config.intermediate_size,
        config.num_hidden_layers,
        config.num_attention_heads,
        config.num_key_value_heads,
        torch.get_num_threads(),
        os.environ.get("ONEDNN_MAX_CPU_ISA", ""),
        torch.__version__,
    )


def time_paths(
    decoder: torch.nn.Module,
    states: dict[str, types.SimpleNamespace],
    sample_ids: Sequence[int],
    rounds: int = TIMED_ROUNDS,
) -> dict[str, float]:
    """Median ms of one statement through each state, the states taking turns (the order
    reversed every round, so drift and other work on the machine land on all alike), after
    one warm-up call each."""
    ids = torch.tensor(list(sample_ids), dtype=torch.long)
    names = list(states)
    for name in names:
        last_hidden_states(decoder, states[name], [ids])
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            t0 = time.perf_counter()
            last_hidden_states(decoder, states[name], [ids])
            times[name].append((time.perf_counter() - t0) * 1000)
    return {name: statistics.median(t) for name, t in times.items()}


def pick_fastest(timings_ms: dict[str, float], tie: float = TIE) -> str:
    """The fastest name, except that a name listed earlier (more exact) within `tie` of the
    fastest wins."""
    best = min(timings_ms.values())
    return next(name for name, ms in timings_ms.items() if ms <= best * (1 + tie))


def choose_cpu_path(
    decoder: torch.nn.Module,
    sample_ids: Sequence[int],
    *,
    prefix_ids: Sequence[int] = (),
    requested: str = "auto",
) -> CpuPath:
    """The lean forward for `decoder` (merged, fp32 weights) in the form `requested` names,
    or for 'auto' the fastest on `sample_ids` (one real-length input), timed once per process
    and machine key. Call it on the CPU inference thread (timings need its OpenMP team)."""
    forms = candidate_forms(requested)
    if len(forms) == 1:
        name, matmuls = next(iter(forms.items()))
        return CpuPath(name, matmuls, build_fast_path(decoder, matmuls, prefix_ids))
    key = machine_key(decoder)
    with _CHOSEN_LOCK:
        earlier = _CHOSEN.get(key)
    if earlier is not None:
        name, timings = earlier
        return CpuPath(
            name,
            forms[name],
            build_fast_path(decoder, forms[name], prefix_ids),
            timings,
            "timed earlier",
        )
    states = {name: build_fast_path(decoder, m, prefix_ids) for name, m in forms.items()}
    timings = time_paths(decoder, states, sample_ids)
    name = pick_fastest(timings)
    with _CHOSEN_LOCK:
        _CHOSEN[key] = (name, timings)
    return CpuPath(name, forms[name], states[name], timings, "timed")


def forget_choices() -> None:
    """Drop this process's timed choices (tests and benchmarks time again)."""
    with _CHOSEN_LOCK:
        _CHOSEN.clear()
        _ROWS_INDEPENDENT.clear()
