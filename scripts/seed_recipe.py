"""The seed project's training recipe, reproduced as the baseline the fast path must beat.

The recipe, exactly: the base loaded by `noshow.modeling.models.load_base` (4-bit NF4 on CUDA), then
`peft.prepare_model_for_kbit_training` when 4-bit, LoRA r16 / alpha 32 / dropout 0.05 on all
linear layers, gradient checkpointing on, the HF `Trainer` with paged AdamW (32-bit states;
plain AdamW on the CPU, where paged optimizers do not exist), batches of 16 padded to the
longest, lr 2e-4, bf16 on CUDA, a log line every 10 steps, no checkpoints, no reporting.
The generative approach trains the stock causal-LM loss (the head over every token, the
prompt masked with -100), which is the cost the fast path avoids; the classifier trains
`AutoModelForSequenceClassification` with labels.

After training, both approaches are scored with the fast path's own scoring functions
(the approach objects' `score`), so the two recipes' ROC-AUCs compare on equal terms.
Bench-only code, so it lives beside its one caller, `scripts/bench_train.py`, outside the
package.

    from seed_recipe import load_seed_base, train_seed_recipe, score_seed_model
    model, tok = load_seed_base("smollm2-135m-instruct", "classifier", "auto", device)
    stats = train_seed_recipe(model, tok, "classifier", train_frame, max_statements=4096, device=device)
    p = score_seed_model(stats["model"], tok, "classifier", test_frame, device)
"""

from __future__ import annotations

import inspect
import math
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

IGNORE_INDEX = -100
SEED_BATCH_SIZE = 16
SEED_LR = 2e-4
SEED_LORA_R = 16
SEED_LORA_ALPHA = 32
SEED_LORA_DROPOUT = 0.05
SEED_LOGGING_STEPS = 10
# Statements are ~80-110 tokens; the cap only guards against pathological rows and matches
# the fast path's default, so both recipes see the same tokens.
SEED_MAX_LENGTH = 256


def load_seed_base(
    model_name: str, approach: str, quantize: str = "auto", device: torch.device | None = None
):
    """(model, tokenizer) as the seed loaded them; the classifier head learns which token
    is padding (Llama ships without a pad token, and the stock head pools the last non-pad)."""
    from noshow.modeling.approaches import get_approach
    from noshow.modeling.models import load_base

    return load_base(model_name, get_approach(approach), quantize, device=device)


def is_loaded_in_4bit(model: torch.nn.Module) -> bool:
    """True when any linear layer holds bitsandbytes 4-bit weights."""
    if getattr(model, "is_loaded_in_4bit", False):
        return True
    try:
        import bitsandbytes as bnb
    except ImportError:  # no bitsandbytes, so nothing can be 4-bit
        return False
    return any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())


def encode_generative_examples(
    tokenizer, statements: Sequence[str], labels: Sequence[int] | np.ndarray, max_length: int
) -> list[dict[str, list[int]]]:
    """One causal-LM example per row, as `noshow.modeling.approaches.generative.build_masked_example` builds it
    (prompt masked with -100; the answer and end-of-turn tokens kept), tokenized in one batch."""
    from noshow.modeling.approaches.generative import build_prompt_layout, encode_prompts

    layout = build_prompt_layout(tokenizer)
    enc = encode_prompts(
        tokenizer,
        layout,
        list(statements),
        labels,
        np.arange(len(statements)),
        with_answer=True,
        max_length=max_length,
    )
    examples = []
    for ids in enc.input_ids:
        full = [*ids, layout.end_id]
        examples.append(
            {
                "input_ids": full,
                "attention_mask": [1] * len(full),
                "labels": [IGNORE_INDEX] * (len(full) - 2) + full[-2:],
            }
        )
    return examples


def encode_classifier_examples(
    tokenizer, statements: Sequence[str], labels: Sequence[int] | np.ndarray, max_length: int
) -> list[dict[str, Any]]:
    """One sequence-classification example per row (the same token ids as the fast path)."""
    from noshow.modeling.approaches.classifier import encode_inputs

    enc = encode_inputs(
        tokenizer, list(statements), labels, np.arange(len(statements)), max_length=max_length
    )
    return [
        {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": int(y)}
        for ids, y in zip(enc.input_ids, enc.labels, strict=True)
    ]


class CausalLMPadCollator:
    """Pads a batch to its longest row on the right: input_ids with the pad id, the
    attention mask with 0 and labels with -100 (so padding never counts in the loss)."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), longest), self.pad_id, dtype=torch.long)  # (B, T)
        mask = torch.zeros((len(features), longest), dtype=torch.long)  # (B, T)
        labels = torch.full((len(features), longest), IGNORE_INDEX, dtype=torch.long)  # (B, T)
        for i, f in enumerate(features):
            n = len(f["input_ids"])
            ids[i, :n] = torch.as_tensor(f["input_ids"])
            mask[i, :n] = torch.as_tensor(f["attention_mask"])
            labels[i, :n] = torch.as_tensor(f["labels"])
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _first_step_callback(t_start: float, device: torch.device, record: dict[str, float]):
    from transformers import TrainerCallback

    class FirstStepTimer(TrainerCallback):
        """Records the seconds from the recipe's start to the end of the first optimizer step."""

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 1 and "first_step_s" not in record:
                if device.type == "cuda":
                    torch.cuda.synchronize(device)  # one sync, so the time is the step's
                record["first_step_s"] = time.perf_counter() - t_start

    return FirstStepTimer()


def _seed_training_arguments(output_dir: str, device: torch.device, n_rows: int, seed: int):
    """The seed's TrainingArguments; checkpointing goes through whichever argument name
    this transformers has (`activation_checkpointing` replaced `gradient_checkpointing`)."""
    from transformers import TrainingArguments

    cuda = device.type == "cuda"
    params = inspect.signature(TrainingArguments.__init__).parameters
    ckpt = (
        "activation_checkpointing"
        if "activation_checkpointing" in params
        else "gradient_checkpointing"
    )
    return TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=SEED_BATCH_SIZE,
        max_steps=math.ceil(n_rows / SEED_BATCH_SIZE),  # one pass over exactly n_rows rows
        learning_rate=SEED_LR,
        optim="paged_adamw_32bit" if cuda else "adamw_torch",
        bf16=cuda,
        logging_steps=SEED_LOGGING_STEPS,
        report_to="none",
        save_strategy="no",
        seed=seed,
        use_cpu=not cuda,
        remove_unused_columns=False,  # our examples hold exactly the model's inputs
        disable_tqdm=True,  # the bench prints its own table; the bar would only clutter it
        **{ckpt: True, f"{ckpt}_kwargs": {"use_reentrant": False}},
    )


def train_seed_recipe(
    model: torch.nn.Module,
    tokenizer,
    approach: str,
    train_frame: pd.DataFrame,
    *,
    max_statements: int,
    device: torch.device,
    seed: int = 0,
) -> dict[str, Any]:
    """Train `model` (a base from `load_seed_base`, or one built in memory) with the seed's
    recipe on the first `max_statements` rows of `train_frame` (columns `statement`,
    `no_show`), one pass.

    Returns statements, seconds (of `Trainer.train`), statements_per_s, tokens_per_s
    (non-pad tokens), time_to_first_step_s (from this call to the end of step 1),
    peak_gpu_mem_gb (None on the CPU) and `model`, the trained PEFT model for scoring.
    """
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import DataCollatorWithPadding, Trainer
    from transformers import set_seed as hf_set_seed

    from noshow.modeling.approaches import GENERATIVE, get_approach

    spec = get_approach(approach)
    if max_statements < 1:
        raise ValueError(f"max_statements must be at least 1, got {max_statements}.")
    if len(train_frame) < max_statements:
        raise ValueError(
            f"train_frame has {len(train_frame)} rows but {max_statements} statements were "
            "asked for: pass fewer statements or more rows."
        )
    t_start = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    hf_set_seed(seed)
    rows = train_frame.iloc[:max_statements]
    statements = rows["statement"].astype(str).tolist()
    labels = rows["no_show"].to_numpy().astype(np.int64)

    if is_loaded_in_4bit(model):
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=True,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    lora = LoraConfig(
        r=SEED_LORA_R,
        lora_alpha=SEED_LORA_ALPHA,
        lora_dropout=SEED_LORA_DROPOUT,
        target_modules="all-linear",
        task_type=spec.task_type,
        bias="none",
    )
    model = get_peft_model(model, lora)

    if spec is GENERATIVE:  # the stock causal-LM loss over masked labels
        from noshow.modeling.approaches.generative import build_prompt_layout

        examples = encode_generative_examples(tokenizer, statements, labels, SEED_MAX_LENGTH)
        collator = CausalLMPadCollator(build_prompt_layout(tokenizer).pad_id)
    else:
        examples = encode_classifier_examples(tokenizer, statements, labels, SEED_MAX_LENGTH)
        collator = DataCollatorWithPadding(tokenizer)
    n_tokens = sum(len(e["input_ids"]) for e in examples)

    timing: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="noshow-seed-") as out:
        args = _seed_training_arguments(out, device, len(examples), seed)
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=examples,
            data_collator=collator,
            callbacks=[_first_step_callback(t_start, device, timing)],
        )
        t0 = time.perf_counter()
        trainer.train()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        if device.type == "cuda":
            # The optimizer (paged states included) is not needed for scoring: release it now.
            trainer.accelerator.free_memory()
        del trainer
    peak = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None
    model.eval()
    return {
        "statements": len(examples),
        "seconds": seconds,
        "statements_per_s": len(examples) / max(seconds, 1e-9),
        "tokens_per_s": n_tokens / max(seconds, 1e-9),
        "time_to_first_step_s": timing.get("first_step_s"),
        "peak_gpu_mem_gb": peak,
        "losses": losses,  # every SEED_LOGGING_STEPS steps
        "model": model,
    }


def score_seed_model(
    model: torch.nn.Module,
    tokenizer,
    approach: str,
    frame: pd.DataFrame,
    device: torch.device,
    max_length: int = SEED_MAX_LENGTH,
) -> np.ndarray:
    """P(no-show) per row of `frame`, with the fast path's scoring functions."""
    from noshow.modeling.approaches import get_approach

    model.eval()
    bound = get_approach(approach).bind(model, tokenizer, max_length=max_length, device=device)
    enc = bound.encode(
        frame["statement"].astype(str).tolist(),
        frame["no_show"].to_numpy(),
        np.arange(len(frame)),
        train=False,
    )
    return bound.score(enc)
