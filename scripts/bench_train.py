"""Training speed, side by side: the seed project's recipe against the project's fast path.

In one process on one GPU, for each approach, trains (a) the seed's recipe (`scripts/seed_recipe.py`:
HF Trainer, gradient checkpointing, paged AdamW, batches of 16) and (b) the fast path
(`noshow.training.loop.fit`, the loop `scripts/train.py` and the app use) on the same training
rows for the same number of statements, then scores the same test rows with the same scoring
function. Prints one table (statements/s, non-pad tokens/s, peak GPU memory, time to the
first step, test ROC-AUC, speed-up) and appends it to BENCHMARKS.md with the GPU, the
library versions and this command.

    python scripts/bench_train.py                                   # bundled model, both approaches, 4-bit
    python scripts/bench_train.py --model llama-8b-random --statements 1024
    python scripts/bench_train.py --approach classifier --quantize none --batch-size 128
    python scripts/bench_train.py --smoke --no-write                # tiny, CPU OK: checks every mode runs

`--model llama-8b-random` builds a Llama-3.1-8B-shaped model with random weights straight on
the GPU (bf16, then every decoder linear layer swapped for a bitsandbytes NF4 layer), so the
8B model's speed is measured without a download; its AUC is meaningless (random weights),
its speed is not. Time to first step counts from the moment the base model is in memory
(LoRA wrapping, tokenizing, building the trainer, the first optimizer step). Non-pad tokens
are those each recipe feeds the model (the seed's examples also carry the end-of-turn token).
A recipe that fails (out of memory, say) gets a FAILED row and the others still run; the
exit code is then 1. At the seed's ~20 statements/s, 4096 statements take ~3.5 minutes per
approach: use --statements 1024 or one --approach at a time to stay within a time limit.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))  # the other bench modules live here

from bench_common import (  # noqa: E402
    BUNDLED_MODEL,
    BenchError,
    add_run_arguments,
    bench_section,
    default_data_source,
    format_table,
    format_value,
    free_memory,
    report,
    say,
)
from bench_recipes import BenchRows, Variant, load_bench_rows, run_fast, run_seed  # noqa: E402

MODELS = ("bundled", "llama-8b-random")
SMOKE_STATEMENTS = 64
SMOKE_TEST_ROWS = 64

TRAIN_COLUMNS = (
    "approach",
    "recipe",
    "batch",
    "statements",
    "statements/s",
    "steady statements/s",
    "non-pad tokens/s",
    "peak GPU mem GB",
    "time to first step s",
    "test ROC-AUC",
    "speed-up vs seed",
    "scoring statements/s",
    "merged+compiled scoring/s",
    "loss first -> last (readings)",
)


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--approach", choices=["both", "generative", "classifier"], default="both")
    p.add_argument(
        "--recipes",
        choices=["both", "seed", "fast"],
        default="both",
        help="which recipes to run (default both; the speed-up needs both)",
    )
    p.add_argument(
        "--model",
        choices=MODELS,
        default="bundled",
        help="bundled SmolLM2-135M, or an 8B-shaped Llama with random weights",
    )
    p.add_argument(
        "--quantize",
        choices=["4bit", "none"],
        default=None,
        help="default: 4bit on CUDA, none on the CPU and in --smoke",
    )
    p.add_argument(
        "--data",
        default=None,
        help="Kaggle CSV or Statement/NoShow file; default the real file if present, else synthetic",
    )
    p.add_argument(
        "--statements", type=int, default=None, help="training statements per recipe (default 4096)"
    )
    p.add_argument("--test-rows", type=int, default=None, help="test rows scored (default 5000)")
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="the fast path's statements per step (default: TrainConfig's)",
    )
    p.add_argument(
        "--variants",
        default="auto",
        help="comma-separated fast-path rows: ENGINE[/dropout=X][/quantize=4bit|none]"
        "[/batch=N][/liger], ENGINE in auto, eager, cuda-graphs, compile, compile+cuda-graphs "
        "(default: auto, the project's defaults)",
    )
    p.add_argument(
        "--lora-dropout",
        type=float,
        default=None,
        help="LoRA dropout of the fast rows (default: the config's)",
    )
    p.add_argument(
        "--seed-statements",
        type=int,
        default=None,
        help="training statements of the seed recipe (default: --statements; it is slow)",
    )
    add_run_arguments(
        p, smoke_help="tiny random model, 64 statements, synthetic data; runs on the CPU"
    )
    args = p.parse_args(argv)
    if args.statements is None:
        args.statements = SMOKE_STATEMENTS if args.smoke else 4096
    if args.test_rows is None:
        args.test_rows = SMOKE_TEST_ROWS if args.smoke else 5000
    if args.lora_dropout is None:
        from noshow.config import LoraSettings

        args.lora_dropout = LoraSettings().dropout
    try:
        args.variant_list = [
            Variant.parse(v.strip()) for v in args.variants.split(",") if v.strip()
        ]
    except BenchError as e:
        p.error(str(e))
    for name in ("statements", "test_rows", "batch_size", "seed_statements"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {value}.")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if not cuda and not args.smoke:
        print(
            "error: no CUDA GPU here. bench_train measures GPU training; run it on a GPU, or "
            "use --smoke to check that every mode runs on the CPU.",
            file=sys.stderr,
        )
        return 2
    if args.quantize is None:
        args.quantize = "4bit" if cuda and not args.smoke else "none"
    if args.data is None:
        from noshow.data.load import SYNTHETIC_SOURCE

        args.data = SYNTHETIC_SOURCE if args.smoke else default_data_source()
        if args.data == SYNTHETIC_SOURCE and not args.smoke:
            say(
                "WARNING: the real data file was not found (NOSHOW_DATA, data/, ../shared/data/): "
                "the AUCs below come from SYNTHETIC data. Pass --data PATH for real figures."
            )
    approaches = ["generative", "classifier"] if args.approach == "both" else [args.approach]
    recipes = ["seed", "fast"] if args.recipes == "both" else [args.recipes]

    try:
        rows = load_bench_rows(args.data, args.statements, args.test_rows, args.seed)
        say(
            f"data: {rows.source} ({rows.split} split{', SYNTHETIC' if rows.is_synthetic else ''}): "
            f"{len(rows.train)} training statements, {len(rows.test)} test rows; device {device}, "
            f"model {args.model}{' (tiny, smoke)' if args.smoke else ''}, quantize {args.quantize}"
        )
        with tempfile.TemporaryDirectory(prefix="noshow-bench-model-") as tmp:
            smoke_dir = None
            if args.smoke and args.model == "bundled":
                from noshow.modeling.models import load_tokenizer
                from noshow.modeling.random_models import build_random_llama

                smoke_dir = build_random_llama(Path(tmp) / "tiny", load_tokenizer(BUNDLED_MODEL))
            if cuda:  # cuBLAS and kernel start-up must not count against whichever runs first
                x = torch.randn(256, 256, device=device, dtype=torch.bfloat16)
                (x @ x).sum().item()
            results: list[tuple[str, str, dict[str, Any]]] = []
            runs = [("seed", None)] if "seed" in recipes else []
            if "fast" in recipes:
                runs += [("fast", v) for v in args.variant_list]
            for approach in approaches:
                for recipe, variant in runs:
                    in_use = (
                        f", {torch.cuda.memory_allocated(device) / 1e9:.2f} GB in use"
                        if cuda
                        else ""
                    )
                    say(f"{approach}: {recipe} recipe ...{in_use}")
                    try:
                        if recipe == "seed":
                            stats = run_seed(args, approach, rows, device, smoke_dir)
                        else:
                            stats = run_fast(args, approach, rows, device, smoke_dir, variant)
                    except Exception as e:  # one failed recipe (e.g. out of memory) must not
                        # cost the GPU time the others already spent: report it and go on
                        if isinstance(e, BenchError):
                            say(str(e))
                        else:
                            traceback.print_exc()
                        first_line = (str(e).splitlines() or [""])[0][:80].replace("|", "/")
                        stats = {"error": f"{type(e).__name__}: {first_line}"}
                        say(f"{approach}: {recipe}: FAILED ({stats['error']})")
                    else:
                        say(
                            f"{approach}: {recipe}: {stats['statements_per_s']:.1f} statements/s, "
                            f"test ROC-AUC {format_value(stats['test_roc_auc'], 4)}"
                        )
                    results.append((approach, recipe, stats))
                    if "error" in stats:
                        free_memory()  # here, once the exception's frames no longer hold the model
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    table = format_table(TRAIN_COLUMNS, table_rows(results))
    report(args, table, lambda: train_section(args, argv, rows, device, table))
    return 1 if any("error" in stats for _, _, stats in results) else 0


def table_rows(results: list[tuple[str, str, dict[str, Any]]]) -> list[list[str]]:
    seed_rate = {
        a: s["statements_per_s"] for a, r, s in results if r == "seed" and "error" not in s
    }
    out = []
    for approach, recipe, s in results:
        label = "seed (HF Trainer)" if recipe == "seed" else f"fast: {s.get('label', '')}"
        if recipe == "fast" and s.get("engine") and s["engine"] not in label:
            label += f" (ran {s['engine']})"
        if "error" in s:
            out.append(
                [approach, label, *["-"] * (len(TRAIN_COLUMNS) - 3), f"FAILED: {s['error']}"]
            )
            continue
        speedup = None
        if recipe != "seed" and approach in seed_rate:
            speedup = f"{s['statements_per_s'] / seed_rate[approach]:.1f}x"
        elif recipe == "seed":
            speedup = "1.0x"
        if recipe == "fast" and s.get("checkpointing"):
            label += ", checkpointing"
        out.append(
            [
                approach,
                label,
                format_value(s["batch"]),
                format_value(s["statements"]),
                format_value(s["statements_per_s"]),
                format_value(s.get("steady_statements_per_s")),
                format_value(s["tokens_per_s"], 0),
                format_value(s["peak_gpu_mem_gb"], 2),
                format_value(s["time_to_first_step_s"], 1),
                format_value(s["test_roc_auc"], 4),
                format_value(speedup),
                format_value(s.get("scoring_per_s"), 0),
                format_value(s.get("merged_scoring_per_s"), 0),
                describe_losses(s.get("losses") or []),
            ]
        )
    return out


def describe_losses(losses: list[float]) -> str:
    """'2.31 -> 0.52 (20)', with the readings that were not finite named: a run that trains
    shows a finite loss that falls."""
    if not losses:
        return "-"
    bad = sum(1 for x in losses if not math.isfinite(x))
    text = f"{losses[0]:.3g} -> {losses[-1]:.3g} ({len(losses)})"
    return text + (f", {bad} NOT FINITE" if bad else "")


def train_section(args, argv, rows: BenchRows, device, table: str) -> str:
    model = {
        "bundled": "SmolLM2-135M-Instruct (bundled)",
        "llama-8b-random": "Llama-3.1-8B shape, random weights",
    }[args.model]
    if args.smoke:
        model += " - SMOKE: tiny random model"
    data = f"{rows.source}, {rows.split} split{' (SYNTHETIC data)' if rows.is_synthetic else ''}"
    return bench_section(
        f"Training: {model}, quantize {args.quantize}",
        device,
        "bench_train.py",
        argv,
        [f"- Data: {data}; {len(rows.train):,} training statements, {len(rows.test):,} test rows"],
        table,
    )


if __name__ == "__main__":
    sys.exit(main())
