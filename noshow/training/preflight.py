"""Before a run: will it fit this machine, and how long will it take?

The answer comes from a measurement, not a guess: `measure_run` runs the real recipe for
a few optimizer steps at the configured batch size on the configured data (the same code
path as the run: data, model, LoRA, loop, scoring, baseline, save) in a scratch folder, and
times every phase; `estimate_resources` scales those phases to the full run (steps,
mid-training evaluations, the validation and test rows, the baseline's training rows).
Memory is the measured peak: CUDA's allocator peak on a GPU, the process's resident-memory
growth on the CPU. Measurements are kept per machine and configuration in
`cache_dir()/preflight.json`, so the second preflight of a configuration is instant.

Without a measurement (the model is not on this machine yet, or `measure=False`), memory
comes from the peaks measured on an H200 (each approach's `rough_gpu_gb`) and the answer
says it is rough.

    from noshow.training.preflight import estimate_resources
    est = estimate_resources(config, {"train": 256, "validation": 256, "test": 256})
    est["fits"], est["minutes"], est["phases_s"], est["reason"]
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from noshow.config import RunConfig
from noshow.training.loop import MID_EVAL_MAX_ROWS, total_steps_for

# Optimizer steps the probe runs. On a GPU a step that meets a new batch shape compiles or
# captures it (seconds at the 8B shape, and warm in the compiler's cache for the run): the
# probe runs enough steps that most of them meet a known shape, and the steady step is the
# median step, not one of the first few.
PROBE_STEPS = {"cpu": 3, "cuda": 8}
# Rows the probe scores (validation + test each): enough to time scoring past its warm-up.
PROBE_EVAL_ROWS = {"cpu": 24, "cuda": 8192}
# A run longer than this on a CPU is called long, with the quick preset as the alternative.
LONG_CPU_MINUTES = 15
# A run that needs a yes before it starts (the Train tab asks; scripts/train.py wants --yes):
LONG_RUN_MINUTES = 24 * 60  # longer than a day
MIN_EVAL_ROWS = 100  # fewer validation or test rows: its ROC-AUC says little, or nothing
# With no measurement a run's time is unknown, but not unbounded below: no step of any model
# here has taken under 10 ms on any machine (BENCHMARKS.md: the 135M model's fastest GPU
# step is several times that), so more steps than a day of these needs a yes too.
FASTEST_STEP_S = 0.01
CACHE_FILE = "preflight.json"


@dataclasses.dataclass
class Measurement:
    """Seconds per phase of a short run of the real recipe, and its memory peak."""

    device: str
    data_s: float  # load + split the data
    setup_s: float  # model, LoRA, encoding, up to the loop's start
    first_step_s: float  # includes one-time warm-up (kernels, caches)
    step_s: float  # a steady optimizer step at the configured batch size
    score_rows_per_s: float
    baseline_s: float  # calibration, tuned and untuned baselines, hybrid: on the run's rows
    save_s: float
    peak_gb: float  # CUDA allocator peak, or resident-memory growth on the CPU
    measured_at: str


def measure_run(
    config: RunConfig, log: Callable[[str], None] | None = None, device: str | None = None
) -> Measurement:
    """Run the recipe for PROBE_STEPS[device] steps in a scratch folder and time each phase."""
    import torch

    from noshow.system.devices import pick_device
    from noshow.training.recipe import train

    kind = pick_device(device).type
    probe = RunConfig.from_dict(config.to_dict())
    probe.train.max_steps = PROBE_STEPS[kind]
    probe.train.eval_every = 0
    probe.train.early_stopping_patience = 0
    probe.train.wandb = False
    # the run's own training rows: loading, encoding and the baseline are timed at their
    # real size (an H200 run took 4.6 s for the baseline that a 4,096-row probe scaled to 40)
    probe.data.max_eval_rows = min(config.data.max_eval_rows or 10**9, PROBE_EVAL_ROWS[kind])
    marks: dict[str, float] = {}
    steps: list[float] = []

    def on_progress(p: dict[str, Any]) -> None:
        now = time.perf_counter()
        if (
            p.get("phase") == "loading"
            and "model_start" not in marks
            and p.get("message") != "Loading data"
        ):
            marks["model_start"] = now
        if p.get("phase") == "ready":
            marks.setdefault("loop_start", now)
        if p.get("phase") == "training" and p.get("step", 0) > len(steps):
            steps.append(now)

    if kind == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    rss = _RssPeak() if kind == "cpu" else None
    with tempfile.TemporaryDirectory(prefix="noshow-preflight-") as scratch:
        probe.train.output_dir = scratch
        start = time.perf_counter()
        result = train(probe, on_progress=on_progress)
    peak = (
        (torch.cuda.max_memory_allocated() - before) / 1e9 if kind == "cuda" else rss.stop() / 1e9
    )
    if result.state != "completed":
        raise RuntimeError(f"The preflight's short run failed: {result.error}")
    timing = result.metrics.get("timing") or {}
    if len(steps) < 2 or "loop_start" not in marks:
        raise RuntimeError("The preflight's short run reported no training steps.")
    return Measurement(
        device=_device_name(kind),
        data_s=marks.get("model_start", start) - start,
        setup_s=marks["loop_start"] - marks.get("model_start", start),
        first_step_s=steps[0] - marks["loop_start"],
        # the lower median: with the CPU's two steps the faster one, as before
        step_s=statistics.median_low(b - a for a, b in zip(steps, steps[1:], strict=False)),
        # the test rows' rate: validation was scored first, so one-time costs are behind it
        score_rows_per_s=timing.get("test_rows", 1) / max(timing.get("test_score_s", 1e-3), 1e-3),
        baseline_s=timing.get("baseline_s", 0.0),
        save_s=timing.get("save_s", 0.0),
        peak_gb=max(peak, 0.0),
        measured_at=time.strftime("%Y-%m-%d %H:%M"),
    )


def estimate_resources(
    config: RunConfig,
    rows: Mapping[str, int] | int,
    *,
    measure: bool = True,
    fresh: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Memory and time of the run `config` describes, and whether it fits this machine.

    `rows`: {"train", "validation", "test"} row counts after subsampling (an int = train
    rows; the evaluation rows then follow max_eval_rows or the training rows' tenth).
    `measure`: run the short measurement when none is cached (seconds on a CPU for the
    bundled model); without one the estimate is rough and says so. `fresh`: measure again
    even when a measurement of this configuration is cached."""
    import torch

    from noshow.modeling.models import choose_quantization
    from noshow.modeling.presets import local_folder, parameter_count
    from noshow.system.devices import pick_device

    n = _row_counts(config, rows)
    t = config.train
    device = pick_device()
    cuda = device.type == "cuda"
    quant = "4bit" if t.quantize == "4bit" else choose_quantization(t.quantize, device, t.model)
    steps = total_steps_for(config, max(n["train"], 1))
    key = _cache_key(config, device)
    found = None if fresh else _read_cache().get(key)
    if found is None and measure and local_folder(t.model) is not None:
        try:
            found = dataclasses.asdict(measure_run(config, log))
            _write_cache(key, found)
        except Exception as e:  # noqa: BLE001 - fall back to the rough estimate, saying why
            if log:
                log(f"Preflight measurement failed ({e}); the estimate below is rough.")
            found = None
    have_gb = _available_gb(cuda)
    where = _device_name(device.type)
    params = parameter_count(t.model)
    if found is not None:
        m = Measurement(**found)
        n_mid = (steps - 1) // t.eval_every if t.eval_every else 0
        phases = {
            "data": m.data_s,
            "model": m.setup_s,
            "training": m.first_step_s + (steps - 1) * m.step_s,
            "evaluation": (
                n_mid * min(n["validation"], MID_EVAL_MAX_ROWS) + n["validation"] + n["test"]
            )
            / max(m.score_rows_per_s, 1e-6),
            "baseline": m.baseline_s,
            "saving": m.save_s,
        }
        need_gb = m.peak_gb * 1.1 + 0.2  # a margin for longer batches than the probe drew
        basis = f"measured on this machine ({m.measured_at}, {m.step_s:.2f} s per step)"
    else:
        phases = None
        need_gb = _rough_memory_gb(params, quant, t.approach, t.batch_size, cuda)
        basis = "rough: from peaks measured on an H200 (BENCHMARKS.md), not measured here"
    seconds = sum(phases.values()) if phases else None
    fits = need_gb is None or need_gb < 0.9 * have_gb
    big = params is not None and params > 3e9
    reason = ""
    if need_gb is not None and not fits:
        reason = (
            f"needs about {need_gb:.1f} GB but {where} has {have_gb:.1f} GB free: lower the "
            "batch size" + (" or use 4-bit quantization." if cuda else " or use a GPU.")
        )
    elif big and not cuda:
        fits = False
        reason = "an 8B model cannot be fine-tuned on a CPU in useful time; use a GPU."
    elif quant == "4bit" and not cuda:
        reason = "4-bit on the CPU works but is very slow; use quantize 'none' on the CPU."
    minutes = None if seconds is None else seconds / 60
    return {
        "device": where,
        "quantize": quant,
        "gpu_mem_gb" if cuda else "mem_gb": None if need_gb is None else round(need_gb, 2),
        "available_gb": round(have_gb, 1),
        "steps": steps,
        "rows": n,
        "minutes": None if minutes is None else round(minutes, 1),
        "phases_s": None if phases is None else {k: round(v, 1) for k, v in phases.items()},
        "basis": basis,
        "fits": fits,
        "long": bool(not cuda and minutes is not None and minutes > LONG_CPU_MINUTES),
        "reason": reason,
        "torch": torch.__version__,
    }


def _row_counts(config: RunConfig, rows: Mapping[str, int] | int) -> dict[str, int]:
    if isinstance(rows, Mapping):
        n = {k: int(rows.get(k, 0)) for k in ("train", "validation", "test")}
    else:
        guess = max(1, int(rows) // 8)
        n = {"train": int(rows), "validation": guess, "test": guess}
    if config.data.max_train_rows:
        n["train"] = min(n["train"], config.data.max_train_rows)
    if config.data.max_eval_rows:
        for k in ("validation", "test"):
            n[k] = min(n[k], config.data.max_eval_rows)
    return n


def _rough_memory_gb(
    params: float | None, quant: str, approach: str, batch: int, cuda: bool
) -> float | None:
    if params is None:
        return None
    size = "8b" if params > 3e9 else "small"
    if cuda:
        from noshow.modeling.approaches import get_approach

        fixed, per_row = get_approach(approach).rough_gpu_gb[(size, quant)]
        return fixed + per_row * batch
    return params * 4 / 1e9 * 3 + 0.05 * batch  # fp32 weights, copies and activations


def _cache_key(config: RunConfig, device) -> str:
    import torch

    t = config.train
    parts = [
        _device_name(device.type),
        f"torch {torch.__version__}",
        t.model,
        t.approach,
        t.quantize,
        f"batch {t.batch_size}",
        f"max_length {t.max_length}",
        f"lora r{config.lora.r} {config.lora.target_modules} dropout {config.lora.dropout}",
        f"checkpointing {t.gradient_checkpointing}",
        f"data {config.data.source or 'default'} {config.data.split}",
        f"threads {torch.get_num_threads()}",
    ]
    return " | ".join(str(p) for p in parts)


def _cache_path():
    from noshow.system.paths import cache_dir

    return cache_dir() / CACHE_FILE


def _read_cache() -> dict[str, Any]:
    try:
        return json.loads(_cache_path().read_text())
    except (OSError, ValueError):
        return {}


def _write_cache(key: str, value: dict[str, Any]) -> None:
    from noshow.system.files import write_atomic

    cache = _read_cache()
    cache[key] = value
    with contextlib.suppress(OSError):  # a read-only home costs the next preflight a measurement
        write_atomic(_cache_path(), lambda f: json.dump(cache, f, indent=1))


def _device_name(kind: str) -> str:
    import torch

    if kind == "cuda":
        return torch.cuda.get_device_name(0)
    return f"CPU ({os.cpu_count()} cores)"


def _available_gb(cuda: bool) -> float:
    import torch

    if cuda:
        free, _total = torch.cuda.mem_get_info()
        return free / 1e9
    try:
        import psutil

        return psutil.virtual_memory().available / 1e9
    except ImportError:
        return 16.0


class _RssPeak:
    """The process's resident memory, sampled every 50 ms from now until stop(): returns
    the peak growth in bytes (a CPU run's memory need)."""

    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process()
        self._start = self._process.memory_info().rss
        self._peak = self._start
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.wait(0.05):
            self._peak = max(self._peak, self._process.memory_info().rss)

    def stop(self) -> float:
        self._done.set()
        self._thread.join()
        self._peak = max(self._peak, self._process.memory_info().rss)
        return float(self._peak - self._start)


def describe_minutes(minutes: float | None) -> str:
    """'about 3 min', 'about 2 h 10 min', 'about 112,667 days', or 'unknown'."""
    if minutes is None:
        return "unknown"
    if minutes < 1:
        return f"about {max(1, math.ceil(minutes * 60))} s"
    if minutes < 90:
        return f"about {minutes:.0f} min"
    if minutes < 48 * 60:
        return f"about {minutes // 60:.0f} h {minutes % 60:.0f} min"
    return f"about {minutes / (24 * 60):,.0f} days"


def run_cautions(
    rows: Mapping[str, int], minutes: float | None, steps: int | None = None
) -> list[str]:
    """Why a run should start only on a yes (empty: no doubt): a time over LONG_RUN_MINUTES
    (from a measurement; without one, when even FASTEST_STEP_S per step of its `steps` is
    over it), or fewer than MIN_EVAL_ROWS validation or test rows (`rows` as the run will
    use them, after max_eval_rows)."""
    reasons = []
    if minutes is not None and minutes > LONG_RUN_MINUTES:
        reasons.append(f"The preflight estimates {describe_minutes(minutes)} for it: over a day.")
    elif minutes is None and steps and steps * FASTEST_STEP_S / 60 > LONG_RUN_MINUTES:
        at_best = describe_minutes(steps * FASTEST_STEP_S / 60)
        reasons.append(
            f"It has {steps:,} steps: even at {FASTEST_STEP_S * 1000:.0f} ms a step (faster "
            f"than any machine has run one here) that is {at_best}. Preflight check measures "
            "it on this machine."
        )
    val, test = int(rows.get("validation", 0)), int(rows.get("test", 0))
    if min(val, test) < MIN_EVAL_ROWS:
        reasons.append(
            f"It evaluates on {val:,} validation row{'s' * (val != 1)} and {test:,} test "
            f"row{'s' * (test != 1)}: with fewer than "
            f"{MIN_EVAL_ROWS}, its ROC-AUC says little (with one row, nothing)."
        )
    return reasons
