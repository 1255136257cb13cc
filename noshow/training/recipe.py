"""The one training recipe, for either approach: set up -> encode -> fit -> evaluate -> save.
What differs between the approaches (model class, encode, loss, score) comes from the
approach object (`noshow.modeling.approaches`); everything else is written once, here and in the
modules it calls. The app, `scripts/train.py`, the notebook and the tests all come here.

    from noshow.config import RunConfig, TrainConfig
    from noshow.training.recipe import train
    result = train(RunConfig(train=TrainConfig(approach="classifier", max_steps=20)), on_progress=print)
    result.state, result.metrics["model"]["roc_auc"], result.adapter_dir
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from noshow.config import RunConfig
from noshow.modeling.approaches import get_approach
from noshow.modeling.batching import Encoded, subset_encoded
from noshow.modeling.lora import attach_lora, set_seed
from noshow.system.devices import pick_device
from noshow.system.quiet import quiet_transformers, silence_third_party
from noshow.training.final_eval import evaluate_and_save
from noshow.training.loop import MID_EVAL_MAX_ROWS, fit
from noshow.training.run_splits import prepare_splits, record_splits
from noshow.training.runs import RunResult, write_adapter_metadata
from noshow.training.session import ProgressFn, StopFn, TrainingSession


def train(
    config: RunConfig,
    *,
    run_dir: Path | str | None = None,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    resume: bool = False,
    approve_rows: Callable[[dict[str, int]], None] | None = None,
) -> RunResult:
    """Fine-tune `config.train.approach` end to end; returns how the run ended (failures
    come back as state "failed" with a message, never as an exception). `approve_rows`
    sees the rows of each split once the data is split, before the model loads, and may
    refuse the run by raising (scripts/train.py asks for --yes this way)."""
    silence_third_party()
    approach = get_approach(config.train.approach)
    session = TrainingSession(config, run_dir, on_progress, should_stop, resume)
    with session:
        device = pick_device()
        # 1. data
        session.emit(phase="loading", message="Loading data")
        splits = prepare_splits(config, session.log)
        record_splits(session, splits)
        if approve_rows is not None:
            parts = {"train": splits.train, "validation": splits.validation, "test": splits.test}
            approve_rows({name: len(frame) for name, frame in parts.items()})
        session.check_stop()

        # 2. model: the base (4-bit or not, decided in models.choose_quantization) + LoRA
        session.emit(phase="loading", message=f"Loading {config.train.model} on {device}")
        model, tokenizer, quantize = setup_model(config, approach, device, session.log)
        session.check_stop()

        # 3. encode every split once, before the first step
        bound = approach.bind(
            model,
            tokenizer,
            max_length=config.train.max_length,
            device=device,
            class_weight=class_weight_for(splits.train, config),
        )
        train_enc = encode_frame(bound, splits.train, train=True)
        val_enc = encode_frame(bound, splits.validation, train=False)
        test_enc = encode_frame(bound, splits.test, train=False)
        mid_val = subset_encoded(val_enc, MID_EVAL_MAX_ROWS, config.data.seed)

        # 4. fit
        session.training_started = True
        loop = fit(session, model, train_enc, bound, mid_val, device)
        model.eval()

        # 5. evaluate next to the baseline, then save the adapter
        def save(folder: Path, threshold: float) -> None:
            with quiet_transformers():
                model.save_pretrained(folder)
                tokenizer.save_pretrained(folder)
            write_adapter_metadata(
                folder,
                approach=approach.name,
                base_model=config.train.model,
                threshold=threshold,
                quantize=quantize,  # as trained: the CPU predictor rounds a 4-bit base alike
                run_id=session.run_dir.name,
                max_length=config.train.max_length,
            )

        evaluate_and_save(session, splits, val_enc, test_enc, bound.score, save, loop)
    return session.result()


def setup_model(config: RunConfig, approach, device: torch.device, log=print):
    """(peft model, tokenizer, quantization used) with the seed set for LoRA's initialisation."""
    from noshow.modeling.models import choose_quantization, load_base

    t = config.train
    set_seed(t.seed)
    quantize = choose_quantization(t.quantize, device, t.model)
    base, tokenizer = load_base(t.model, approach, quantize, device=device)
    model, checkpointing = attach_lora(base, config, approach)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log(
        f"Model {t.model} on {device}, {'4-bit NF4' if quantize == '4bit' else 'unquantized'} "
        f"base, {trainable:,} trainable parameters"
        + (", gradient checkpointing" if checkpointing else "")
    )
    return model, tokenizer, quantize


def encode_frame(bound: Any, frame: pd.DataFrame, *, train: bool) -> Encoded:
    """A split's statements, labels and record ids through the approach's encoder."""
    return bound.encode(
        frame["statement"].tolist(),
        frame["no_show"].to_numpy(),
        frame["record_id"].to_numpy(),
        train=train,
    )


def class_weight_for(train: pd.DataFrame, config: RunConfig) -> float | None:
    """Weight of the no-show class (negatives / positives) when class weighting is on."""
    if not config.train.class_weighting:
        return None
    pos = float(train["no_show"].mean())
    return (1 - pos) / max(pos, 1e-6)
