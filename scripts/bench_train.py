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
import contextlib
import gc
import math
import os
import platform
import shlex
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))  # seed_recipe.py lives beside this script

BENCHMARKS_FILE = REPO / "BENCHMARKS.md"
SHARED_DATA = REPO.parent / "shared" / "data" / "KaggleV2-May-2016.csv"
BUNDLED_MODEL = "smollm2-135m-instruct"
MODELS = ("bundled", "llama-8b-random")
SMOKE_STATEMENTS = 64
SMOKE_TEST_ROWS = 64
BENCHMARKS_HEADER = """# Benchmarks

Figures written by `scripts/bench_train.py` (training) and `scripts/bench_predict.py`
(inference), newest at the bottom. Each section names its GPU or CPU, library versions and
the exact command. Ratios (speed-ups) come from one process on one machine; figures from
different machines or versions do not compare.
"""

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
)


class BenchError(RuntimeError):
    """A benchmark cannot run as asked; the message says how to fix it."""


# ----------------------------------------------------------------------------- shared reporting
# bench_predict.py imports these helpers from here, so both scripts write BENCHMARKS.md alike.


def format_value(value: Any, digits: int = 1) -> str:
    """Table cell text: '-' for missing, fixed decimals for floats."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def format_table(columns: tuple[str, ...] | list[str], rows: list[list[str]]) -> str:
    """A Markdown table (also readable as plain text on a terminal)."""
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    line = "| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = [
        "| " + " | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    return "\n".join([line, rule, *body])


def describe_machine(device) -> dict[str, str]:
    """GPU (or CPU) name and the library versions that decide the speed."""
    import torch
    import transformers

    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    for name in ("peft", "bitsandbytes"):
        try:
            versions[name] = __import__(name).__version__
        except Exception:  # not installed or broken for this platform: say so, do not fail
            versions[name] = "not available"
    if device.type == "cuda":
        where = f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    else:
        where = f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    return {"machine": where, "versions": ", ".join(f"{k} {v}" for k, v in versions.items())}


def command_line(script: str, argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in ["python", f"scripts/{script}", *argv])


def append_benchmarks(path: Path, section: str) -> None:
    """Append a section to BENCHMARKS.md (created with a header if missing), atomically."""
    old = path.read_text() if path.exists() else BENCHMARKS_HEADER
    text = old.rstrip("\n") + "\n\n" + section.strip("\n") + "\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def default_data_source() -> str:
    """NOSHOW_DATA, then data/KaggleV2-May-2016.csv, then the shared real file, else synthetic."""
    from noshow.data.load import DATA_ENV_VAR, DEFAULT_DATA_PATH, SYNTHETIC_SOURCE

    for candidate in (os.environ.get(DATA_ENV_VAR), DEFAULT_DATA_PATH, SHARED_DATA):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    return SYNTHETIC_SOURCE


def free_memory() -> None:
    """Drop the last run's model and cached blocks so the next measurement starts clean.
    Only on CUDA: a collection takes most of a second, and CPU memory is not measured."""
    import torch

    if torch.cuda.is_available():
        gc.collect()
        torch.cuda.empty_cache()


def say(message: str) -> None:
    # Progress on stderr; stdout holds only the table.
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- data


@dataclass
class BenchRows:
    train: Any  # pd.DataFrame: statement, no_show (+ features)
    test: Any
    source: str
    is_synthetic: bool
    split: str


def load_bench_rows(source: str, statements: int, test_rows: int, seed: int) -> BenchRows:
    """The same training and test rows for every recipe: a seeded sample of the time split."""
    from noshow.data.clean import DataError
    from noshow.data.load import load_data
    from noshow.data.splits import split_data

    try:
        loaded = load_data(source)
    except DataError as e:
        raise BenchError(str(e)) from e
    frame = loaded.frame
    if loaded.has_features:
        method = "time"
        frame = split_data(frame, method, seed=seed)
    elif "split" in frame.columns:
        method = "given"
    else:
        method = "random"
        frame = split_data(frame, method, seed=seed)
    train = frame[frame["split"] == "train"]
    test = frame[frame["split"] == "test"]
    if len(train) < statements:
        raise BenchError(
            f"{loaded.source} has {len(train)} training rows ({method} split) but "
            f"--statements {statements} were asked for: lower --statements."
        )
    if test["no_show"].nunique() < 2:
        raise BenchError(
            f"The test rows of {loaded.source} hold one class only: ROC-AUC is undefined."
        )
    train = train.sample(n=statements, random_state=seed).reset_index(drop=True)
    test = test.sample(n=min(test_rows, len(test)), random_state=seed).reset_index(drop=True)
    return BenchRows(train, test, loaded.source, loaded.is_synthetic, method)


# ----------------------------------------------------------------------------- models


def build_base(
    args: argparse.Namespace,
    approach: str,
    device,
    smoke_dir: Path | None,
    quantize: str | None = None,
):
    """(model, tokenizer): a fresh, untrained base for one recipe."""
    quantize = quantize or args.quantize
    from seed_recipe import load_seed_base

    from noshow.modeling.approaches import get_approach
    from noshow.modeling.models import load_tokenizer
    from noshow.modeling.presets import ModelError
    from noshow.modeling.random_models import build_random_llama_in_memory

    if args.model == "llama-8b-random":
        tokenizer = load_tokenizer(BUNDLED_MODEL)
        shape = "tiny" if args.smoke else "8b"
        model = build_random_llama_in_memory(
            shape, get_approach(approach), quantize, device, tokenizer, seed=args.seed
        )
        return model, tokenizer
    name = str(smoke_dir) if smoke_dir is not None else BUNDLED_MODEL
    try:
        return load_seed_base(name, approach, quantize, device)
    except ModelError as e:
        raise BenchError(str(e)) from e


def prepare_fast_model(base, tokenizer, approach: str, config):
    """What `noshow.training.recipe.setup_model` does after `load_base`, for a base already in memory.
    Like it, seed before building the base (`set_seed(config.train.seed)`), not here, so the
    head and LoRA start from the same random numbers as in a real run."""
    from noshow.modeling.approaches import get_approach
    from noshow.modeling.lora import attach_lora

    spec = get_approach(approach)
    spec.prepare_base(base, tokenizer)
    return attach_lora(base, config, spec)


# ----------------------------------------------------------------------------- recipes

STEADY_FROM_STEP = 20  # steady rate: from this step on (captures and compiles are done)


@dataclass(frozen=True)
class Variant:
    """One ablation row of the fast path: what differs from the project's defaults."""

    engine: str = "auto"
    dropout: float | None = None
    quantize: str | None = None
    batch_size: int | None = None
    liger: bool = False

    @classmethod
    def parse(cls, text: str) -> Variant:
        """'cuda-graphs', 'eager/dropout=0.05', 'compile/quantize=4bit/batch=512/liger'."""
        engine, *options = text.split("/")
        kwargs: dict[str, Any] = {"engine": engine or "auto"}
        for option in options:
            key, _, value = option.partition("=")
            if key == "liger":
                kwargs["liger"] = True
            elif key == "dropout":
                kwargs["dropout"] = float(value)
            elif key == "quantize":
                kwargs["quantize"] = value
            elif key == "batch":
                kwargs["batch_size"] = int(value)
            else:
                raise BenchError(f"Unknown variant option {option!r} in {text!r}.")
        return cls(**kwargs)

    def label(self, quantize: str, batch: int) -> str:
        base = "4-bit base" if quantize == "4bit" else "bf16 base"
        parts = [self.engine, base, f"batch {batch}"]
        if self.dropout is not None:
            parts.append(f"dropout {self.dropout:g}")
        if self.liger:
            parts.append("Liger kernels")
        return ", ".join(parts)


def apply_liger(model) -> None:
    """Liger-Kernel's fused RMSNorm, RoPE and SwiGLU on this Llama instance (GPU only)."""
    try:
        from liger_kernel.transformers import apply_liger_kernel_to_llama
    except ImportError as e:
        raise BenchError(f"Liger-Kernel is not installed (pip install liger-kernel): {e}") from e
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    apply_liger_kernel_to_llama(
        rope=True,
        rms_norm=True,
        swiglu=True,
        cross_entropy=False,
        fused_linear_cross_entropy=False,
        model=base,
    )


def _engine_used(session) -> str | None:
    if any("continues with the eager engine" in line for line in session.log_lines):
        return "eager (fell back)"
    for line in reversed(session.log_lines):
        if "engine " in line:
            return line.rsplit("engine ", 1)[1].rstrip(".")
    return None


def roc_auc(labels, p) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, p)) if len(set(labels.tolist())) == 2 else None


def run_seed(args, approach: str, rows: BenchRows, device, smoke_dir) -> dict[str, Any]:
    from seed_recipe import SEED_BATCH_SIZE, score_seed_model, train_seed_recipe

    base, tokenizer = build_base(args, approach, device, smoke_dir)
    free_memory()
    # The Trainer prints its log lines on stdout; stdout is kept for the table alone.
    with contextlib.redirect_stdout(sys.stderr):
        stats = train_seed_recipe(
            base,
            tokenizer,
            approach,
            rows.train,
            max_statements=args.seed_statements or args.statements,
            device=device,
            seed=args.seed,
        )
    model = stats.pop("model")
    p = score_seed_model(model, tokenizer, approach, rows.test, device)
    stats["test_roc_auc"] = roc_auc(rows.test["no_show"].to_numpy(), p)
    stats["batch"] = SEED_BATCH_SIZE
    del model, base
    free_memory()
    return stats


def run_fast(
    args, approach: str, rows: BenchRows, device, smoke_dir, variant: Variant | None = None
) -> dict[str, Any]:
    """The fast path exactly as `noshow.training.recipe.train` runs it (same encoding, loss, loop and
    scoring), inside a TrainingSession whose run folder is thrown away; `variant` sets the
    engine, LoRA dropout, quantization, batch size and Liger kernels of one ablation row."""
    import numpy as np
    import torch

    from noshow.config import LoraSettings, RunConfig, TrainConfig
    from noshow.modeling.lora import set_seed
    from noshow.training.loop import fit
    from noshow.training.session import TrainingSession

    variant = variant or Variant()
    quantize = variant.quantize or args.quantize
    set_seed(args.seed)  # as setup_* does before loading: the head's init draws from it
    base, tokenizer = build_base(args, approach, device, smoke_dir, quantize=quantize)
    if variant.liger:
        apply_liger(base)
    free_memory()
    batch = variant.batch_size or args.batch_size or TrainConfig().batch_size
    n = args.statements
    timing: dict[str, float] = {}
    t_start = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    steady_from = max(STEADY_FROM_STEP, 1)

    def on_progress(p: dict[str, Any]) -> None:
        if p.get("phase") != "training" or "step" not in p:
            return
        if p["step"] == 1 and "first" not in timing:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            timing["first"] = time.perf_counter() - t_start
        if p["step"] == steady_from and "loss" in p:  # a reading: the host waited for the GPU
            timing["steady_t"] = time.perf_counter()
        if "loss" in p:
            timing["last_t"], timing["last_step"] = time.perf_counter(), p["step"]

    with tempfile.TemporaryDirectory(prefix="noshow-bench-") as tmp:
        config = RunConfig(
            train=TrainConfig(
                approach=approach,
                model=BUNDLED_MODEL if args.model == "bundled" else args.model,
                quantize=quantize,
                max_steps=math.ceil(n / batch),  # one pass over exactly n statements
                batch_size=batch,
                seed=args.seed,
                output_dir=tmp,
                engine=variant.engine,
            ),
            lora=LoraSettings(
                dropout=variant.dropout if variant.dropout is not None else args.lora_dropout
            ),
        )
        session = TrainingSession(config, None, on_progress, None)
        result: dict[str, Any] = {}
        model = None
        with session:
            model, checkpointing = prepare_fast_model(base, tokenizer, approach, config)
            del base
            train_enc, test_enc, bound = _fast_path_functions(
                approach, model, tokenizer, rows, config, device
            )
            t0 = time.perf_counter()
            loop = fit(session, model, train_enc, bound, None, device)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - t0
            peak = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None
            model.eval()
            p, score_rate = timed_scoring(bound, test_enc, device)
            merged_rate = None
            if quantize != "4bit" and device.type == "cuda":
                merged_rate = merged_scoring_rate(model, tokenizer, approach, test_enc, device)
            steady = None
            if "steady_t" in timing and timing.get("last_step", 0) > steady_from:
                steady_rows = (timing["last_step"] - steady_from) * batch
                steady = steady_rows / max(timing["last_t"] - timing["steady_t"], 1e-9)
            result = {
                "statements": loop.samples_seen,
                "seconds": seconds,
                "statements_per_s": loop.samples_seen / max(seconds, 1e-9),
                "steady_statements_per_s": steady,
                "engine": _engine_used(session),
                "label": variant.label(quantize, batch),
                "tokens_per_s": loop.tokens_seen / max(seconds, 1e-9),
                "time_to_first_step_s": timing.get("first"),
                "peak_gpu_mem_gb": peak,
                "test_roc_auc": roc_auc(np.asarray(test_enc.labels), p),
                "batch": batch,
                "checkpointing": checkpointing,
                "scoring_per_s": score_rate,
                "merged_scoring_per_s": merged_rate,
            }
        if session.state != "completed":
            log = session.run_dir / "error.log"
            detail = log.read_text() if log.exists() else ""
            raise BenchError(f"The fast path failed ({session.error}).\n{detail}")
    model = None
    free_memory()
    return result


def timed_scoring(bound, enc, device):
    """(P, statements/s) of the approach's scoring on `enc`, after a warm-up on 256 rows."""
    import numpy as np
    import torch

    from noshow.modeling.batching import take_rows

    bound.score(take_rows(enc, np.arange(min(256, len(enc)))))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    p = bound.score(enc)  # ends with a host copy: synchronised
    return p, len(enc) / max(time.perf_counter() - t0, 1e-9)


def merged_scoring_rate(model, tokenizer, approach: str, enc, device) -> float:
    """Statements/s of a GPU predictor's path: LoRA merged into the bf16 base and the
    decoder layers compiled (the model is merged in place: call this last)."""
    from noshow.modeling.approaches import get_approach
    from noshow.training.step import compile_layers

    merged = model.merge_and_unload()
    compile_layers(merged)
    bound = get_approach(approach).bind(merged, tokenizer, max_length=256, device=device)
    timed_scoring(bound, enc, device)  # first pass compiles every shape
    return timed_scoring(bound, enc, device)[1]


def _fast_path_functions(approach, model, tokenizer, rows: BenchRows, config, device):
    """Encodings, loss and scoring of the approach, bound as `noshow.training.recipe.train` binds them."""
    from noshow.modeling.approaches import get_approach
    from noshow.training.recipe import encode_frame

    bound = get_approach(approach).bind(
        model, tokenizer, max_length=config.train.max_length, device=device
    )
    train_enc = encode_frame(bound, rows.train, train=True)
    return train_enc, encode_frame(bound, rows.test, train=False), bound


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
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--smoke",
        action="store_true",
        help="tiny random model, 64 statements, synthetic data; runs on the CPU",
    )
    p.add_argument(
        "--no-write", action="store_true", help="print the table only; leave BENCHMARKS.md alone"
    )
    p.add_argument("--benchmarks-file", default=str(BENCHMARKS_FILE), help=argparse.SUPPRESS)
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
    print(table)
    if not args.no_write:
        section = train_section(args, argv, rows, device, table)
        append_benchmarks(Path(args.benchmarks_file), section)
        say(f"appended to {args.benchmarks_file}")
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
            ]
        )
    return out


def train_section(args, argv, rows: BenchRows, device, table: str) -> str:
    machine = describe_machine(device)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    model = {
        "bundled": "SmolLM2-135M-Instruct (bundled)",
        "llama-8b-random": "Llama-3.1-8B shape, random weights",
    }[args.model]
    if args.smoke:
        model += " - SMOKE: tiny random model"
    data = f"{rows.source}, {rows.split} split{' (SYNTHETIC data)' if rows.is_synthetic else ''}"
    return "\n".join(
        [
            f"## Training: {model}, quantize {args.quantize} ({stamp})",
            "",
            f"- Machine: {machine['machine']}",
            f"- Versions: {machine['versions']}",
            f"- Data: {data}; {len(rows.train):,} training statements, {len(rows.test):,} test rows",
            f"- Command: `{command_line('bench_train.py', argv)}`",
            "",
            table,
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
