"""Put the engine chosen for this CPU (`noshow.inference.cpu.choice`) behind a merged
decoder's forward, so the approaches' scoring code runs unchanged whatever computes the
hidden states.

- `fused-fp32` / `fused-bf16`: the hand-written forward (`noshow.inference.cpu.forward`).
  fp32 products are prepacked for oneDNN on CPUs with AVX512 (there oneDNN's fp32 was 1.3x
  faster than torch's MKL products on Zen 4 and level on AMX) and plain elsewhere (on AVX2
  the packed form was 1.6x slower); bf16 is packed wherever oneDNN can pack it.
- the graph engines (ONNX Runtime, OpenVINO, torch int8): `ScoringGraph` (prefix keys and
  values inside), its artefact built once per adapter and cached (`engines.engine_folder`).

An engine that cannot be built here (package missing, export failed) gives way to the exact
hand-written fp32 path, with a log line saying why. No timing at load: the choice comes from
the CPU's kind and the measured table.

    from noshow.inference.cpu.runtime import install_engine
    installed = install_engine(decoder, prefix_ids, adapter_dir, "generative")
    installed.label, installed.single_rows, installed.describe()
"""

from __future__ import annotations

import logging
import os
import threading
import time
import types
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from noshow.inference.cpu.choice import EngineChoice, choose_engine
from noshow.inference.cpu.engines import ENGINES, build_runner, engine_folder
from noshow.inference.cpu.forward import (
    Matmuls,
    build_fast_path,
    install_fast_forward,
    onednn_available,
    rows_independent,
)

log = logging.getLogger("noshow.inference")

AVX512_KINDS = ("amx", "avx512_bf16", "avx512_vnni", "avx512")
_ROWS_INDEPENDENT: dict[tuple, bool] = {}
_LOCK = threading.Lock()


@dataclass
class InstalledEngine:
    """What scores a predictor's statements on the CPU, and why."""

    choice: EngineChoice
    label: str
    single_rows: bool = False
    """One statement per forward: bf16 products that round differently by row count."""
    build_s: float = 0.0
    note: str = ""
    """Why the chosen engine gave way to another, if it did."""

    @property
    def name(self) -> str:
        return self.choice.engine

    def describe(self) -> str:
        text = self.choice.describe()
        return f"{text}; {self.note}" if self.note else text


def fused_matmuls(name: str, kind: str) -> Matmuls:
    """The products of a hand-written form on a CPU of `kind` (see the module docstring)."""
    dtype = torch.bfloat16 if name == "fused-bf16" else torch.float32
    onednn = dtype == torch.bfloat16 or kind in AVX512_KINDS
    if onednn and onednn_available(dtype) is not None:
        onednn = False
    return Matmuls(dtype, onednn=onednn)


def _rows_independent(state: types.SimpleNamespace) -> bool:
    """Whether bf16 products give a row the same bits whatever rows share the call (cached
    per form, threads and oneDNN's ISA cap): then statements may share a forward."""
    key = (state.matmuls, torch.get_num_threads(), os.environ.get("ONEDNN_MAX_CPU_ISA", ""))
    with _LOCK:
        known = _ROWS_INDEPENDENT.get(key)
    if known is None:
        known = rows_independent(state)
        with _LOCK:
            _ROWS_INDEPENDENT[key] = known
    return known


def _install_fused(decoder, prefix_ids, choice: EngineChoice) -> tuple[str, bool]:
    matmuls = fused_matmuls(choice.engine, choice.kind)
    state = build_fast_path(decoder, matmuls, prefix_ids)
    install_fast_forward(decoder, state=state)
    exact = matmuls.dtype == torch.float32
    return matmuls.label + ", fused forward", not exact and not _rows_independent(state)


def _install_graph(decoder, prefix_ids, choice: EngineChoice, folder: Path, calibration):
    from noshow.inference.cpu.graph import ScoringGraph

    graph = ScoringGraph(decoder, prefix_ids).eval()
    runner = build_runner(choice.engine, graph, folder, calibration)
    del graph  # the runner holds what it needs (an ONNX session has its own weights)
    state = types.SimpleNamespace(
        runner=runner,
        prefix=torch.tensor(list(prefix_ids), dtype=torch.long) if prefix_ids else None,
        original=getattr(getattr(decoder, "_noshow_fast_forward", None), "original", None)
        or decoder.forward,
    )
    install_fast_forward(decoder, state=state)
    return ENGINES[choice.engine].label, False


def install_engine(
    decoder: torch.nn.Module,
    prefix_ids: Sequence[int],
    adapter_dir: Path,
    approach: str,
    *,
    requested: str | None = None,
    calibration: Sequence[torch.Tensor] = (),
    folder: Path | None = None,
) -> InstalledEngine:
    """Install the engine `choose_engine` picks for `approach` (or `requested`) behind
    `decoder` (merged; call `forward.supported` first). Run it on the CPU inference thread."""
    choice = choose_engine(approach, requested=requested)
    start = time.perf_counter()
    note = ""
    try:
        if ENGINES[choice.engine].hand_written:
            label, single = _install_fused(decoder, prefix_ids, choice)
        else:
            folder = folder or engine_folder(adapter_dir)
            label, single = _install_graph(decoder, prefix_ids, choice, folder, calibration)
    except Exception as e:  # noqa: BLE001 - any engine failure falls back to the exact path
        note = f"{choice.engine} could not run here ({type(e).__name__}: {str(e)[:120]})"
        log.warning("%s: %s; scoring with the hand-written fp32 path", adapter_dir.name, note)
        choice = EngineChoice("fused-fp32", choice.kind, "fallback")
        label, single = _install_fused(decoder, prefix_ids, choice)
    installed = InstalledEngine(choice, label, single, time.perf_counter() - start, note)
    log.info("%s (%s): %s", adapter_dir.name, approach, installed.describe())
    return installed
