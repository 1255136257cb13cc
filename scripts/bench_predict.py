"""Inference speed of both adapters: batch scoring throughput on the GPU and single-statement
latency on the CPU, in one run, through the same `noshow.predict` interface the app uses.

- GPU batch: `load_predictor(adapter, device="cuda")` (the base as trained, 4-bit or bf16,
  adapter kept separate), then one `predict_proba(statements)` call over `--rows` test
  statements, tokenization included; statements/s after a warm-up call.
- CPU latency: `load_predictor(adapter, device="cpu")` (LoRA merged into the base, fp32),
  then `--repeats` calls of `predict_proba([one statement])` after warm-up; p50/p95 in ms.
  The same predictor cast to bf16 is timed on the same statements, and the largest change
  in P(no-show) against fp32 is shown, so the CPU default can be chosen by data.
  torch's thread count is left at its default unless --threads is given.

    python scripts/bench_predict.py                      # shipped adapters, else newest runs
    python scripts/bench_predict.py --generative runs/<id> --classifier runs/<id> --device cpu
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
    from noshow.training import train

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


def measure_latency(predictor, statements: list[str], repeats: int) -> dict[str, Any]:
    for s in statements[-WARMUP_CALLS:]:  # not the timed ones, so no cache can flatter them
        predictor.predict_proba([s])
    times_ms: list[float] = []
    probs: list[float] = []
    for i in range(repeats):
        s = statements[i]
        t0 = time.perf_counter()
        p = predictor.predict_proba([s])
        times_ms.append((time.perf_counter() - t0) * 1000)
        probs.append(p[0])
    times_ms.sort()
    return {
        "statements": repeats,
        "statements_per_s": repeats / (sum(times_ms) / 1000),
        "p50_ms": statistics.median(times_ms),
        "p95_ms": times_ms[min(len(times_ms) - 1, int(round(0.95 * (len(times_ms) - 1))))],
        "probs": probs,
    }


def weights_label(predictor) -> str:
    """What the scored weights are: 4-bit or a float dtype, LoRA merged or kept separate."""
    model = predictor.model
    quantized = any(type(m).__name__ == "Linear4bit" for m in model.modules())
    dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
    kind = "4-bit NF4" if quantized else str(dtype).replace("torch.", "")
    return f"{kind}, {'adapter separate' if hasattr(model, 'peft_config') else 'merged'}"


def bench_adapter(
    name: str, path: Path, approach: str, args, statements: list[str], gpu_ok: bool
) -> list[dict[str, Any]]:
    """Table rows for one adapter: GPU batch (or CPU batch in --smoke without a GPU), then
    CPU single-statement latency in fp32 and in bf16 on the same statements."""
    import torch

    from noshow.predict import PredictError, load_predictor

    rows: list[dict[str, Any]] = []
    predictor = None
    if args.device in ("cuda", "both"):
        device = "cuda" if gpu_ok else "cpu"
        say(f"{name}: batch scoring of {args.rows} statements on {device} ...")
        try:
            predictor = load_predictor(path, device=device, expected_approach=approach)
        except PredictError as e:
            raise BenchError(str(e)) from e
        stats = measure_batch(predictor, statements[: args.rows])
        rows.append(
            {"mode": "batch", "device": device, "weights": weights_label(predictor), **stats}
        )
        if device != "cpu":
            predictor = None
            _free()
    if args.device in ("cpu", "both"):
        say(f"{name}: single-statement latency on the CPU, {args.repeats} calls per dtype ...")
        if predictor is None:  # (a CPU batch predictor, --smoke without a GPU, is this one)
            try:
                predictor = load_predictor(
                    path, device="cpu", expected_approach=approach, merge=True
                )
            except PredictError as e:
                raise BenchError(str(e)) from e
        fp32 = measure_latency(predictor, statements, args.repeats)
        fp32["max_dp"] = 0.0
        rows.append(
            {"mode": "single", "device": "cpu", "weights": weights_label(predictor), **fp32}
        )
        predictor.model.to(torch.bfloat16)
        bf16 = measure_latency(predictor, statements, args.repeats)
        bf16["max_dp"] = max(abs(a - b) for a, b in zip(fp32["probs"], bf16["probs"], strict=True))
        rows.append(
            {"mode": "single", "device": "cpu", "weights": weights_label(predictor), **bf16}
        )
        del predictor
        _free()
    for r in rows:
        r.update(adapter=name, approach=approach)
    return rows


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
            for approach in APPROACHES:
                path = paths[approach]
                name = path.name if path.name != "adapter" else path.parent.name
                try:
                    results += bench_adapter(name, path, approach, args, statements, gpu_ok)
                except Exception as e:  # the other adapter's figures are still worth having
                    if isinstance(e, BenchError):
                        say(str(e))
                    else:
                        traceback.print_exc()
                    first_line = (str(e).splitlines() or [""])[0][:80].replace("|", "/")
                    results.append(
                        {
                            "adapter": name,
                            "approach": approach,
                            "error": f"{type(e).__name__}: {first_line}",
                        }
                    )
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    table = format_table(PREDICT_COLUMNS, table_rows(results))
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
