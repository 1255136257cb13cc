"""The two recipes a bench_train.py row runs on the same rows: the seed project's (HF
Trainer; scripts/seed_recipe.py) and the fast path exactly as `noshow.training.recipe.train`
runs it (same encoding, loss, loop and scoring), with the ablation variants of the fast path
(engine, LoRA dropout, quantization, batch size, Liger kernels).

    from bench_recipes import Variant, load_bench_rows, run_fast, run_seed
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_common import BUNDLED_MODEL, BenchError, free_memory, load_bench_data

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
    from noshow.data.splits import split_data

    loaded = load_bench_data(source)
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
    checkpointing: str | None = None  # "on" / "off"; None: the config's "auto"

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
            elif key == "checkpointing" and value in ("on", "off"):
                kwargs["checkpointing"] = value
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
        if self.checkpointing:
            parts.append(f"checkpointing {self.checkpointing}")
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
                gradient_checkpointing=variant.checkpointing or "auto",
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
            metrics = session.run_dir / "metrics.jsonl"
            losses = (
                [
                    row["loss"]
                    for row in map(json.loads, metrics.read_text().splitlines())
                    if "loss" in row
                ]
                if metrics.exists()
                else []
            )
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
                "losses": losses,
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
