"""Inference speed of both adapters: batch scoring throughput on the GPU and single-statement
latency on the CPU, in one run, through the same `noshow.predict` interface the app uses.

- GPU batch: `load_predictor(adapter, device="cuda")` (the base as trained, 4-bit or bf16,
  adapter kept separate), then one `predict_proba(statements)` call over `--rows` test
  statements, tokenization included; statements/s after a warm-up call.
- CPU latency: `load_predictor(adapter, device="cpu")` (LoRA merged into the base) in exact
  fp32 and in the app's default CPU weights (bf16 linear layers, fp32 activations, huge
  pages and the fused one-row forward, where the CPU has native bf16; see
  noshow/cpu_weights.py, noshow/cpu_forward.py), plus that default without huge pages and
  without the fused forward, `--repeats` calls of one statement each after warm-up, all
  timed in alternation so machine noise hits them alike; p50/p95/min in ms and the largest
  change in P(no-show) against fp32.
- Compare: both adapters in the app's default weights, one statement each, as the Compare
  tab scores it (`predict_with_answer`: P and the generative answer text in one pass).
  torch's thread count is left at its default unless --threads is given.

    python scripts/bench_predict.py                      # shipped adapters, else newest runs
    python scripts/bench_predict.py --device cpu         # CPU latency and Compare only
    python scripts/bench_predict.py --smoke --no-write   # two tiny adapters, CPU OK

Prints one table and appends it to BENCHMARKS.md with the machine, versions and command.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

# Shared with bench_train so both scripts write BENCHMARKS.md the same way.
from bench_train import (  # noqa: E402
    BENCHMARKS_FILE,
    BUNDLED_MODEL,
    BenchError,
    append_benchmarks,
    command_line,
    default_data_source,
    describe_machine,
    format_table,
    format_value,
    say,
)

APPROACHES = ("generative", "classifier")
SHIPPED = {
    "generative": REPO / "adapters" / "generative-smollm2-135m",
    "classifier": REPO / "adapters" / "classifier-smollm2-135m",
}
WARMUP_CALLS = 5
WARMUP_BATCH = 256
SMOKE_ROWS = 64
SMOKE_REPEATS = 10

PREDICT_COLUMNS = (
    "adapter",
    "approach",
    "mode",
    "device",
    "weights",
    "statements",
    "statements/s",
    "p50 ms",
    "p95 ms",
    "min ms",
    "max dP vs fp32",
)


# ----------------------------------------------------------------------------- adapters


def find_adapter(approach: str, runs_dir: Path) -> Path:
    """The shipped adapter for `approach`, else the newest finished run of that approach."""
    from noshow.predict import PredictError, list_adapters, resolve_adapter_dir

    shipped = SHIPPED[approach]
    if shipped.exists():
        try:
            return resolve_adapter_dir(shipped)
        except PredictError as e:
            raise BenchError(f"The shipped {approach} adapter is unusable: {e}") from e
    missing_shipped = runs_dir / ".no-shipped-adapters"  # list only the run folders
    for found in list_adapters(runs_dir, shipped_dir=missing_shipped):
        if found["approach"] == approach:
            return Path(found["path"])
    raise BenchError(
        f"No {approach} adapter: none shipped at {shipped.relative_to(REPO)} and no finished "
        f"{approach} run in {runs_dir}. Train one (python scripts/train.py --approach {approach}) "
        f"or pass --{approach} PATH."
    )


def build_smoke_adapters(folder: Path) -> dict[str, Path]:
    """Two tiny adapters in a few seconds: a tiny random Llama, synthetic data, one step."""
    from noshow.config import DataConfig, LoraSettings, RunConfig, TrainConfig
    from noshow.data import SYNTHETIC_SOURCE
    from noshow.models import build_random_llama, resolve
    from noshow.recipe import train

    tiny = build_random_llama(folder / "tiny", "tiny", tokenizer_from=resolve(BUNDLED_MODEL))
    out: dict[str, Path] = {}
    for approach in APPROACHES:
        config = RunConfig(
            data=DataConfig(source=SYNTHETIC_SOURCE, max_train_rows=32, max_eval_rows=32),
            lora=LoraSettings(r=4, alpha=8, dropout=0.0),
            train=TrainConfig(
                approach=approach,
                model=str(tiny),
                quantize="none",
                max_steps=1,
                batch_size=16,
                output_dir=str(folder / "runs"),
            ),
        )
        result = train(config)
        if result.state != "completed":
            raise BenchError(f"Building the tiny {approach} adapter failed: {result.error}")
        out[approach] = result.run_dir
    return out


# ----------------------------------------------------------------------------- statements


def load_statements(source: str, n: int, seed: int) -> list[str]:
    """`n` test-split statements (repeated when the split is smaller), in a seeded order."""
    import numpy as np

    from noshow.data import DataError, load_data, split_data

    try:
        loaded = load_data(source)
    except DataError as e:
        raise BenchError(str(e)) from e
    frame = loaded.frame
    if loaded.has_features:
        frame = split_data(frame, "time", seed=seed)
    test = frame[frame["split"] == "test"] if "split" in frame.columns else frame
    texts = test["statement"].astype(str).to_numpy()
    if len(texts) == 0:
        raise BenchError(f"{loaded.source} holds no test statements.")
    order = np.random.default_rng(seed).permutation(len(texts))
    return [str(texts[i]) for i in np.resize(order, n)]


# ----------------------------------------------------------------------------- measurements


def measure_batch(predictor, statements: list[str]) -> dict[str, Any]:
    import torch

    predictor.predict_proba(statements[:WARMUP_BATCH])  # kernels, allocator, tokenizer caches
    if predictor.device.type == "cuda":
        torch.cuda.synchronize(predictor.device)
    t0 = time.perf_counter()
    predictor.predict_proba(statements)  # returns Python floats, so the GPU is done
    seconds = time.perf_counter() - t0
    return {"statements": len(statements), "statements_per_s": len(statements) / max(seconds, 1e-9)}


def measure_latencies(predictors: list, statements: list[str], repeats: int) -> list[dict]:
    """Single-statement calls, the predictors taking turns on each statement (the order
    alternating), so noise from other work on the machine lands on all of them alike."""
    for s in statements[-WARMUP_CALLS:]:  # not the timed ones, so no cache can flatter them
        for predictor in predictors:
            predictor.predict_proba([s])
    times: list[list[float]] = [[] for _ in predictors]
    probs: list[list[float]] = [[] for _ in predictors]
    for i in range(repeats):
        order = range(len(predictors)) if i % 2 == 0 else reversed(range(len(predictors)))
        for k in order:
            t0 = time.perf_counter()
            p = predictors[k].predict_proba([statements[i]])
            times[k].append((time.perf_counter() - t0) * 1000)
            probs[k].append(p[0])
    return [latency_stats(t) | {"probs": pr} for t, pr in zip(times, probs, strict=True)]


def latency_stats(times_ms: list[float]) -> dict[str, Any]:
    times_ms = sorted(times_ms)
    return {
        "statements": len(times_ms),
        "statements_per_s": len(times_ms) / (sum(times_ms) / 1000),
        "p50_ms": statistics.median(times_ms),
        "p95_ms": times_ms[min(len(times_ms) - 1, int(round(0.95 * (len(times_ms) - 1))))],
        "min_ms": times_ms[0],
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


def bench_batch(name: str, path: Path, approach: str, args, statements: list[str], gpu_ok: bool):
    """The batch-throughput row (on the GPU; on the CPU only in --smoke without one)."""
    from noshow.predict import PredictError, load_predictor

    device = "cuda" if gpu_ok else "cpu"
    say(f"{name}: batch scoring of {args.rows} statements on {device} ...")
    try:
        predictor = load_predictor(path, device=device, expected_approach=approach)
    except PredictError as e:
        raise BenchError(str(e)) from e
    stats = measure_batch(predictor, statements[: args.rows])
    weights = weights_label(predictor)
    del predictor
    _free()
    return {"mode": "batch", "device": device, "weights": weights, **stats}


def load_cpu_variants(path: Path, approach: str) -> list[Any]:
    """Predictors to time in alternation: exact fp32 first, the app's default CPU weights
    last and, where the default is bf16, the default without huge pages and without the
    fused forward in between (what each of the two contributes). Only fp32 where the CPU
    has no native bf16."""
    from noshow.cpu_forward import uninstall_fast_forward
    from noshow.cpu_weights import HUGEPAGES_ENV_VAR, cpu_weights_choice
    from noshow.predict import PredictError, load_predictor

    def load(**kw):
        return load_predictor(path, device="cpu", expected_approach=approach, **kw)

    try:
        variants = [load(cpu_weights="float32")]
        if cpu_weights_choice() == "float32":
            return variants
        saved = os.environ.get(HUGEPAGES_ENV_VAR)
        os.environ[HUGEPAGES_ENV_VAR] = "0"
        try:
            variants.append(load())
        finally:
            if saved is None:
                os.environ.pop(HUGEPAGES_ENV_VAR)
            else:
                os.environ[HUGEPAGES_ENV_VAR] = saved
        unfused = load()
        if uninstall_fast_forward(unfused.model.get_decoder()):
            unfused.weights = unfused.weights.replace(", fused forward", "")
            variants.append(unfused)
        return [*variants, load()]
    except PredictError as e:
        raise BenchError(str(e)) from e


def bench_cpu(name: str, path: Path, approach: str, args, statements: list[str]):
    """Single-statement latency rows (fp32, ablations, then the default) and the default."""
    say(f"{name}: single-statement latency on the CPU, {args.repeats} calls per weights ...")
    predictors = load_cpu_variants(path, approach)
    stats = measure_latencies(predictors, statements, args.repeats)
    rows = []
    for predictor, st in zip(predictors, stats, strict=True):
        st["max_dp"] = max(abs(a - b) for a, b in zip(stats[0]["probs"], st["probs"], strict=True))
        rows.append({"mode": "single", "device": "cpu", "weights": weights_label(predictor), **st})
    return rows, predictors[-1]


PROFILE_CALLS = 4


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

    from noshow.cpu_thread import run_on_cpu_thread

    def profiled():
        for s in statements[:PROFILE_CALLS]:
            predictor.predict_with_answer(s)
        with profile() as prof:
            for s in statements[:PROFILE_CALLS]:
                predictor.predict_with_answer(s)
        return prof

    # CPU predictors compute on noshow.cpu_thread's thread; the profiler sees its own thread
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


def failure_row(name: str, approach: str, e: Exception) -> dict[str, Any]:
    if isinstance(e, BenchError):
        say(str(e))
    else:
        traceback.print_exc()
    first_line = (str(e).splitlines() or [""])[0][:80].replace("|", "/")
    return {"adapter": name, "approach": approach, "error": f"{type(e).__name__}: {first_line}"}


def _free() -> None:
    import gc

    import torch

    if torch.cuda.is_available():  # a collection costs most of a second; only worth it on a GPU
        gc.collect()
        torch.cuda.empty_cache()


def table_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    failed = [
        [r["adapter"], r["approach"], f"FAILED: {r['error']}", *["-"] * (len(PREDICT_COLUMNS) - 3)]
        for r in results
        if "error" in r
    ]
    return [
        [
            r["adapter"],
            r["approach"],
            r["mode"],
            r["device"],
            r["weights"],
            format_value(r["statements"]),
            format_value(r["statements_per_s"]),
            format_value(r.get("p50_ms"), 1),
            format_value(r.get("p95_ms"), 1),
            format_value(r.get("min_ms"), 1),
            format_value(r.get("max_dp"), 4),
        ]
        for r in results
        if "error" not in r
    ] + failed


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--generative", default=None, help="generative adapter or run folder")
    p.add_argument("--classifier", default=None, help="classifier adapter or run folder")
    p.add_argument("--runs-dir", default="runs", help="where to look for finished runs")
    p.add_argument(
        "--device",
        choices=["cpu", "cuda", "both"],
        default="both",
        help="cuda: GPU batch throughput; cpu: CPU single-statement latency; both",
    )
    p.add_argument(
        "--rows", type=int, default=None, help="statements scored in the batch test (default 20000)"
    )
    p.add_argument(
        "--repeats", type=int, default=None, help="single-statement calls per dtype (default 100)"
    )
    p.add_argument(
        "--data",
        default=None,
        help="where the statements come from (default: real file if present)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch (default: torch's own choice); e.g. 2 to mimic a 2-core machine",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="also print where one CPU call's time goes (torch.profiler, by kind of op)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--smoke",
        action="store_true",
        help="tiny adapters (unless given), few rows and repeats; runs on the CPU",
    )
    p.add_argument(
        "--no-write", action="store_true", help="print the table only; leave BENCHMARKS.md alone"
    )
    p.add_argument("--benchmarks-file", default=str(BENCHMARKS_FILE), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.rows is None:
        args.rows = SMOKE_ROWS if args.smoke else 20_000
    if args.repeats is None:
        args.repeats = SMOKE_REPEATS if args.smoke else 100
    for name in ("rows", "repeats", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1, got {getattr(args, name)}.")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    gpu_ok = torch.cuda.is_available()
    if args.device in ("cuda", "both") and not gpu_ok and not args.smoke:
        print(
            "error: no CUDA GPU here for the batch-throughput test: use --device cpu for the "
            "CPU latency test only, or run on a GPU.",
            file=sys.stderr,
        )
        return 2
    if args.data is None:
        from noshow.data import SYNTHETIC_SOURCE

        args.data = SYNTHETIC_SOURCE if args.smoke else default_data_source()
        if args.data == SYNTHETIC_SOURCE and not args.smoke:
            say("the real data file was not found: timing SYNTHETIC statements (similar lengths).")
    try:
        with tempfile.TemporaryDirectory(prefix="noshow-bench-predict-") as tmp:
            paths: dict[str, Path] = {}
            for approach in APPROACHES:
                given = getattr(args, approach)
                if given:
                    paths[approach] = Path(given)
            if args.smoke and len(paths) < len(APPROACHES):
                say("building two tiny adapters (smoke) ...")
                built = build_smoke_adapters(Path(tmp))
                paths = {a: paths.get(a, built[a]) for a in APPROACHES}
            for approach in APPROACHES:
                if approach not in paths:
                    paths[approach] = find_adapter(approach, Path(args.runs_dir))
            n = max(args.rows, args.repeats + WARMUP_CALLS)
            statements = load_statements(args.data, n, args.seed)
            results: list[dict[str, Any]] = []
            served: dict[str, Any] = {}  # the app's default CPU predictor per approach
            for approach in APPROACHES:
                path = paths[approach]
                name = path.name if path.name != "adapter" else path.parent.name
                try:
                    rows = []
                    if args.device in ("cuda", "both"):
                        rows.append(bench_batch(name, path, approach, args, statements, gpu_ok))
                    if args.device in ("cpu", "both"):
                        cpu_rows, served[approach] = bench_cpu(
                            name, path, approach, args, statements
                        )
                        rows += cpu_rows
                    results += [r | {"adapter": name, "approach": approach} for r in rows]
                except Exception as e:  # the other adapter's figures are still worth having
                    results.append(failure_row(name, approach, e))
            if len(served) == len(APPROACHES):
                say(f"Compare: both adapters, {args.repeats} statements ...")
                stats = measure_compare(
                    served["generative"], served["classifier"], statements, args.repeats
                )
                results.append(
                    {
                        "adapter": "both",
                        "approach": "compare",
                        "mode": "single",
                        "device": "cpu",
                        "weights": weights_label(served["classifier"]),
                        **stats,
                    }
                )
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    table = format_table(PREDICT_COLUMNS, table_rows(results))
    if args.profile and served:
        table += "\n\n" + "\n".join(
            profile_line(approach, predictor, statements) for approach, predictor in served.items()
        )
    print(table)
    if not args.no_write:
        machine_device = torch.device("cuda" if gpu_ok and args.device != "cpu" else "cpu")
        append_benchmarks(
            Path(args.benchmarks_file), predict_section(args, argv, machine_device, table)
        )
        say(f"appended to {args.benchmarks_file}")
    return 1 if any("error" in r for r in results) else 0


def predict_section(args, argv, device, table: str) -> str:
    from datetime import UTC, datetime

    import torch

    machine = describe_machine(device)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    cpu = describe_machine(torch.device("cpu"))["machine"]
    lines = [
        f"## Inference: batch throughput and single-statement latency ({stamp})",
        "",
        f"- Machine: {machine['machine']}"
        + (f"; CPU latency on {cpu}" if device.type == "cuda" else ""),
        f"- Versions: {machine['versions']}",
        f"- Statements: test split of {args.data}; batch of {args.rows:,}, {args.repeats} single calls per dtype",
        f"- Command: `{command_line('bench_predict.py', argv)}`",
    ]
    if args.smoke:
        lines.append("- SMOKE: tiny random adapters; the figures say nothing about speed")
    return "\n".join([*lines, "", table])


if __name__ == "__main__":
    sys.exit(main())
