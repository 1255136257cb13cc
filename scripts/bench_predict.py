"""Inference speed of both adapters: batch scoring throughput on the GPU and single-statement
latency on the CPU, in one run, through the same `noshow.inference.predict` interface the app uses.

- GPU batch: `load_predictor(adapter, device="cuda")` (the base as trained, 4-bit or bf16,
  adapter kept separate), then one `predict_proba(statements)` call over `--rows` test
  statements, tokenization included; statements/s after a warm-up call.
- CPU latency: `load_predictor(adapter, device="cpu")` as the app loads it (LoRA merged,
  the engine chosen for this CPU, see noshow/inference/cpu/choice.py), then every
  candidate form on that same model: fp32 through transformers' own forward (the plain
  reference), and through the lean fused forward (noshow/inference/cpu/forward.py) fp32, fp32
  oneDNN-packed, bf16 linears and bf16 oneDNN-packed; `--repeats` calls of one statement
  each after warm-up, the forms taking turns so machine noise hits them alike; p50/p95 in
  ms, the ratio to fp32 (transformers) and the largest change in P(no-show) against it.
  The form the app chose is marked. bf16 forms are skipped where the CPU emulates bf16.
- CPU batches (`--batch-sizes`, default 1 2 4 8 16): the app's form scoring B statements in
  one `predict_proba` call (one padded forward, as concurrent Compares share it): ms per
  statement, and the largest |dP| between a statement in a batch and alone.
- Compare: both adapters in the app's default weights, one statement each, as the Compare
  tab scores it (`predict_with_answer`: P and the generative answer text in one pass).
  torch's thread count is left at its default unless --threads is given.

Runs on any x86 or Arm CPU with torch, transformers and peft: bitsandbytes and gguf are not
needed once the bundled model is converted (NOSHOW_HOME/models/...). To compare kinds of
CPU on one machine, cap oneDNN's instructions (`ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16` or
`AVX2` makes an AMX CPU stand in for one without) and pin two cores (`taskset -c 0,1`).

    python scripts/bench_predict.py                      # shipped adapters, else newest runs
    python scripts/bench_predict.py --device cpu         # CPU latency and Compare only
    python scripts/bench_predict.py --smoke --no-write   # two tiny adapters, CPU OK
    ONEDNN_MAX_CPU_ISA=AVX2 taskset -c 0,1 python scripts/bench_predict.py --device cpu \
        --threads 2 --no-write                           # a 2-core AVX2 CPU, compact table

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
from bench_common import (  # noqa: E402
    BUNDLED_MODEL,
    BenchError,
    add_run_arguments,
    bench_section,
    default_data_source,
    describe_machine,
    format_table,
    format_value,
    load_bench_data,
    report,
    say,
)
from predict_timing import (  # noqa: E402
    WARMUP_CALLS,
    cpu_summary,
    latency_stats,
    measure_batch,
    measure_compare,
    measure_latencies,
    profile_line,
    use_form,
    weights_label,
)

APPROACHES = ("generative", "classifier")
SHIPPED = {
    "generative": REPO / "adapters" / "generative-smollm2-135m",
    "classifier": REPO / "adapters" / "classifier-smollm2-135m",
}
SMOKE_ROWS = 64
SMOKE_REPEATS = 10

PREDICT_COLUMNS = (
    "adapter",
    "mode",
    "device",
    "weights",
    "statements",
    "statements/s",
    "p50 ms",
    "p95 ms",
    "x fp32",
    "max dP vs fp32",
)
BATCH_SIZES = (1, 2, 4, 8, 16)


# ----------------------------------------------------------------------------- adapters


def find_adapter(approach: str, runs_dir: Path) -> Path:
    """The shipped adapter for `approach`, else the newest finished run of that approach."""
    from noshow.inference.predict import PredictError, list_adapters, resolve_adapter_dir

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
    from noshow.data.load import SYNTHETIC_SOURCE
    from noshow.modeling.models import load_tokenizer
    from noshow.modeling.random_models import build_random_llama
    from noshow.training.recipe import train

    tiny = build_random_llama(folder / "tiny", load_tokenizer(BUNDLED_MODEL))
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

    from noshow.data.splits import split_data

    loaded = load_bench_data(source)
    frame = loaded.frame
    if loaded.has_features:
        frame = split_data(frame, "time", seed=seed)
    test = frame[frame["split"] == "test"] if "split" in frame.columns else frame
    texts = test["statement"].astype(str).to_numpy()
    if len(texts) == 0:
        raise BenchError(f"{loaded.source} holds no test statements.")
    order = np.random.default_rng(seed).permutation(len(texts))
    return [str(texts[i]) for i in np.resize(order, n)]


# ----------------------------------------------------------------------------- benchmarks


def bench_batch(name: str, path: Path, approach: str, args, statements: list[str], gpu_ok: bool):
    """The batch-throughput row (on the GPU; on the CPU only in --smoke without one)."""
    from noshow.inference.predict import PredictError, load_predictor

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


def cpu_forms(predictor) -> list[tuple[str, Any]]:
    """(label, lean-forward state or None for transformers' forward) for every candidate form
    this CPU can run, built on the predictor's own merged fp32 model."""
    import torch

    from noshow.inference.cpu.forward import Matmuls, build_fast_path, onednn_available
    from noshow.inference.cpu.weights import native_bf16

    decoder = predictor.model.get_decoder()
    prefix = tuple(predictor.bound.prefix_ids)
    forms: list[tuple[str, Any]] = [("float32, transformers forward", None)]
    for dtype in (torch.float32, torch.bfloat16):
        if dtype == torch.bfloat16 and not native_bf16():
            say("this CPU has no native bf16: the bf16 forms are skipped (emulated, very slow)")
            continue
        for onednn in (False, True):
            matmuls = Matmuls(dtype, onednn)
            why_not = onednn_available(dtype) if onednn else None
            if why_not:
                say(f"{matmuls.label}: skipped ({why_not})")
                continue
            forms.append((matmuls.label + ", fused", build_fast_path(decoder, matmuls, prefix)))
    return forms


def bench_cpu(name: str, path: Path, approach: str, args, statements: list[str]):
    """Single-statement latency rows, one per candidate form, on the model the app loads;
    then the app's form in batches. Returns (rows, the predictor in the app's form)."""
    from noshow.inference.cpu.forward import FUSED_ATTR
    from noshow.inference.predict import PredictError, load_predictor

    say(f"{name}: single-statement latency on the CPU, {args.repeats} calls per form ...")
    try:
        t0 = time.perf_counter()
        predictor = load_predictor(path, device="cpu", expected_approach=approach)
        load_s = time.perf_counter() - t0
    except PredictError as e:
        raise BenchError(str(e)) from e
    say(f"{name}: loaded in {load_s:.1f} s as {predictor.weights}")
    decoder = predictor.model.get_decoder()
    chosen = getattr(decoder, FUSED_ATTR, None)
    forms = cpu_forms(predictor)
    if chosen is not None:  # the app's own state stands in for the candidate it equals
        app_matmuls = getattr(chosen, "matmuls", None)
        forms = [
            (label + " (app)", chosen)
            if state is not None and state.matmuls == app_matmuls
            else (label, state)
            for label, state in forms
        ]
        if app_matmuls is None:  # another engine (noshow.inference.cpu.engines): its own row
            forms.append((predictor.weights.split(",")[0] + " (app)", chosen))

    def scorer(state):
        def score(statement: str) -> float:
            use_form(predictor, state)
            return predictor.predict_proba([statement])[0]

        return score

    stats = measure_latencies([scorer(state) for _, state in forms], statements, args.repeats)
    reference = stats[0]
    rows = []
    for (label, _), st in zip(forms, stats, strict=True):
        st["max_dp"] = max(abs(a - b) for a, b in zip(reference["probs"], st["probs"], strict=True))
        st["x_fp32"] = st["p50_ms"] / reference["p50_ms"]
        rows.append({"mode": "single", "device": "cpu", "weights": label, **st})
    use_form(predictor, chosen)
    if args.batch_sizes:
        rows += bench_batches(predictor, statements, args)
    return rows, predictor


def bench_batches(predictor, statements: list[str], args) -> list[dict[str, Any]]:
    """The app's form scoring B statements per call, B taking turns: ms per statement and
    the largest |dP| of a statement in a batch against the same statement alone."""
    sizes = sorted(set(args.batch_sizes))
    calls = max(3, args.repeats // max(sizes))
    say(f"batches of {', '.join(map(str, sizes))} statements, {calls} calls each ...")
    pool = statements[: max(sizes) * calls]
    alone = {s: predictor.predict_proba([s])[0] for s in pool[: max(sizes)]}
    for size in sizes:  # warm-up
        predictor.predict_proba(pool[-size:])
    per_statement: dict[int, list[float]] = {size: [] for size in sizes}
    max_dp = dict.fromkeys(sizes, 0.0)
    for i in range(calls):
        for size in sizes if i % 2 == 0 else reversed(sizes):
            batch = pool[i * size : (i + 1) * size] if i else pool[:size]
            t0 = time.perf_counter()
            probs = predictor.predict_proba(batch)
            per_statement[size].append((time.perf_counter() - t0) * 1000 / size)
            for s, p in zip(batch, probs, strict=True):
                if s in alone:
                    max_dp[size] = max(max_dp[size], abs(p - alone[s]))
    base = statistics.median(per_statement[sizes[0]])
    rows = []
    for size in sizes:
        st = latency_stats(per_statement[size])
        st["statements"] = size * calls
        st["statements_per_s"] = 1000 / st["p50_ms"]
        rows.append(
            {
                "mode": f"batch of {size}",
                "device": "cpu",
                "weights": f"app's form; ms per statement; x = vs batch of {sizes[0]}",
                **st,
                "x_fp32": st["p50_ms"] / base,
                "max_dp": max_dp[size],
                "dp_label": "vs alone",
            }
        )
    return rows


def failure_row(name: str, approach: str, e: Exception) -> dict[str, Any]:
    if isinstance(e, BenchError):
        say(str(e))
    else:
        traceback.print_exc()
    first_line = (str(e).splitlines() or [""])[0][:80].replace("|", "/")
    return {"adapter": name, "error": f"{type(e).__name__}: {first_line}"}


def _free() -> None:
    import gc

    import torch

    if torch.cuda.is_available():  # a collection costs most of a second; only worth it on a GPU
        gc.collect()
        torch.cuda.empty_cache()


def table_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    failed = [
        [r["adapter"], f"FAILED: {r['error']}", *["-"] * (len(PREDICT_COLUMNS) - 2)]
        for r in results
        if "error" in r
    ]
    return [
        [
            r["adapter"],
            r["mode"],
            r["device"],
            r["weights"],
            format_value(r["statements"]),
            format_value(r["statements_per_s"]),
            format_value(r.get("p50_ms"), 1),
            format_value(r.get("p95_ms"), 1),
            format_value(r.get("x_fp32"), 2),
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
        "--batch-sizes",
        type=int,
        nargs="*",
        default=None,
        help="CPU: statements per predict_proba call to time (default 1 2 4 8 16; none: skip)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="also print where one CPU call's time goes (torch.profiler, by kind of op)",
    )
    add_run_arguments(
        p, smoke_help="tiny adapters (unless given), few rows and repeats; runs on the CPU"
    )
    args = p.parse_args(argv)
    if args.rows is None:
        args.rows = SMOKE_ROWS if args.smoke else 20_000
    if args.repeats is None:
        args.repeats = SMOKE_REPEATS if args.smoke else 100
    if args.batch_sizes is None:
        args.batch_sizes = [1, 2, 4] if args.smoke else list(BATCH_SIZES)
    if any(b < 1 for b in args.batch_sizes):
        p.error(f"--batch-sizes must all be at least 1, got {args.batch_sizes}.")
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
        from noshow.data.load import SYNTHETIC_SOURCE

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
            n = max(args.rows, args.repeats + WARMUP_CALLS, 3 * max(args.batch_sizes, default=1))
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
                    results += [r | {"adapter": name} for r in rows]
                except Exception as e:  # the other adapter's figures are still worth having
                    results.append(failure_row(name, approach, e))
            if len(served) == len(APPROACHES):
                say(f"Compare: both adapters, {args.repeats} statements ...")
                stats = measure_compare(
                    served["generative"], served["classifier"], statements, args.repeats
                )
                results.append(
                    {
                        "adapter": "both (Compare)",
                        "mode": "single",
                        "device": "cpu",
                        "weights": weights_label(served["classifier"]),
                        **stats,
                    }
                )
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    table = cpu_summary() + "\n\n" + format_table(PREDICT_COLUMNS, table_rows(results))
    if args.profile and served:
        table += "\n\n" + "\n".join(
            profile_line(approach, predictor, statements) for approach, predictor in served.items()
        )
    machine_device = torch.device("cuda" if gpu_ok and args.device != "cpu" else "cpu")
    report(args, table, lambda: predict_section(args, argv, machine_device, table))
    return 1 if any("error" in r for r in results) else 0


def predict_section(args, argv, device, table: str) -> str:
    import torch

    cpu = describe_machine(torch.device("cpu"))["machine"]
    return bench_section(
        "Inference: batch throughput and single-statement latency",
        device,
        "bench_predict.py",
        argv,
        [
            f"- Statements: test split of {args.data}; batch of {args.rows:,}, {args.repeats} single calls per dtype"
        ],
        table,
        machine_note=f"; CPU latency on {cpu}" if device.type == "cuda" else "",
        notes=("- SMOKE: tiny random adapters; the figures say nothing about speed",)
        if args.smoke
        else (),
    )


if __name__ == "__main__":
    sys.exit(main())
