"""Timing a predictor, for scripts/bench_predict.py: one batch call's throughput, single
statements with several ways of scoring taking turns (so machine noise lands on all of them
alike), one Compare's scoring, which CPU form scores (`use_form`), where a call's CPU time
goes by kind of op (torch.profiler), and a line on the CPU the figures come from.

    from predict_timing import latency_stats, measure_latencies
    [fp32, fused] = measure_latencies([score_fp32, score_fused], statements, repeats=100)
    fp32["p50_ms"], fused["p95_ms"], fused["probs"]

Helpers beside the script (scripts/ is on the path when it runs); no CLI of their own.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

WARMUP_CALLS = 5
WARMUP_BATCH = 256
PROFILE_CALLS = 4


def measure_batch(predictor, statements: list[str]) -> dict[str, Any]:
    import torch

    predictor.predict_proba(statements[:WARMUP_BATCH])  # kernels, allocator, tokenizer caches
    if predictor.device.type == "cuda":
        torch.cuda.synchronize(predictor.device)
    t0 = time.perf_counter()
    predictor.predict_proba(statements)  # returns Python floats, so the GPU is done
    seconds = time.perf_counter() - t0
    return {"statements": len(statements), "statements_per_s": len(statements) / max(seconds, 1e-9)}


def measure_latencies(variants: list, statements: list[str], repeats: int) -> list[dict]:
    """Single-statement calls, the variants (functions statement -> P) taking turns on each
    statement (the order alternating), so noise from other work on the machine lands on all
    of them alike."""
    for s in statements[-WARMUP_CALLS:]:  # not the timed ones, so no cache can flatter them
        for score in variants:
            score(s)
    times: list[list[float]] = [[] for _ in variants]
    probs: list[list[float]] = [[] for _ in variants]
    for i in range(repeats):
        order = range(len(variants)) if i % 2 == 0 else reversed(range(len(variants)))
        for k in order:
            t0 = time.perf_counter()
            p = variants[k](statements[i])
            times[k].append((time.perf_counter() - t0) * 1000)
            probs[k].append(p)
    return [latency_stats(t) | {"probs": pr} for t, pr in zip(times, probs, strict=True)]


def latency_stats(times_ms: list[float]) -> dict[str, Any]:
    times_ms = sorted(times_ms)
    return {
        "statements": len(times_ms),
        "statements_per_s": len(times_ms) / (sum(times_ms) / 1000),
        "p50_ms": statistics.median(times_ms),
        "p95_ms": times_ms[min(len(times_ms) - 1, int(round(0.95 * (len(times_ms) - 1))))],
    }


def measure_compare(generative, classifier, statements: list[str], repeats: int) -> dict:
    """One Compare's scoring: the generative P and answer text, then the classifier's P."""
    for s in statements[-WARMUP_CALLS:]:
        generative.predict_with_answer(s)
        classifier.predict_with_answer(s)
    times: list[float] = []
    for s in statements[:repeats]:
        t0 = time.perf_counter()
        generative.predict_with_answer(s)
        classifier.predict_with_answer(s)
        times.append((time.perf_counter() - t0) * 1000)
    return latency_stats(times)


def weights_label(predictor) -> str:
    """What the scored weights are: 4-bit, bf16 linears or a float dtype; merged or not."""
    if getattr(predictor, "weights", ""):
        return predictor.weights
    model = predictor.model
    dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
    return f"{str(dtype).replace('torch.', '')}, {'adapter separate' if hasattr(model, 'peft_config') else 'merged'}"


def use_form(predictor, state) -> None:
    """Score through `state` (None: transformers' own forward)."""
    from noshow.inference.cpu.forward import install_fast_forward, uninstall_fast_forward

    decoder = predictor.model.get_decoder()
    if state is None:
        uninstall_fast_forward(decoder)
    else:
        install_fast_forward(decoder, state=state)


def op_kind(name: str) -> str:
    if name in ("aten::mm", "aten::addmm", "aten::bmm"):
        return "matmuls"
    if "scaled_dot_product" in name:
        return "attention"
    if name in ("aten::copy_", "aten::_to_copy", "aten::to"):
        return "dtype casts"
    return "other ops"


def profile_line(name: str, predictor, statements: list[str]) -> str:
    """Share of CPU time by kind of op over a few Compare-style calls (after warm-up)."""
    from torch.profiler import profile

    from noshow.inference.cpu.thread import run_on_cpu_thread

    def profiled():
        for s in statements[:PROFILE_CALLS]:
            predictor.predict_with_answer(s)
        with profile() as prof:
            for s in statements[:PROFILE_CALLS]:
                predictor.predict_with_answer(s)
        return prof

    # CPU predictors compute on noshow.inference.cpu.thread's thread; the profiler sees its own thread
    prof = run_on_cpu_thread(profiled)
    shares: dict[str, float] = {}
    for event in prof.key_averages():
        kind = op_kind(event.key)
        shares[kind] = shares.get(kind, 0.0) + event.self_cpu_time_total
    total = sum(shares.values()) or 1.0
    parts = ", ".join(
        f"{kind} {100 * t / total:.0f}%" for kind, t in sorted(shares.items(), key=lambda x: -x[1])
    )
    per_call = total / PROFILE_CALLS / 1000
    return (
        f"- profile, {name} ({predictor.weights}): {per_call:.1f} ms of op time per call; {parts}"
    )


def cpu_summary() -> str:
    """One line on the CPU the figures come from: model, the bf16/AMX features torch sees,
    oneDNN's ISA cap, torch threads, the cores this process may use and the load average."""
    import platform

    import torch

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    features = []
    for label, probe in (
        ("AVX512-BF16", "_is_avx512_bf16_supported"),
        ("AMX", "_is_amx_tile_supported"),
    ):
        try:
            features.append(f"{label} {'yes' if getattr(torch.cpu, probe)() else 'no'}")
        except AttributeError:
            features.append(f"{label} unknown")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "-"
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "none")
    return (
        f"CPU: {model}; {', '.join(features)}; ONEDNN_MAX_CPU_ISA={isa}; "
        f"{torch.get_num_threads()} torch threads on {cores} cores; load average {load}"
    )
