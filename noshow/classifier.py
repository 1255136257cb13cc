"""Classifier-head approach: the base model reads the statement and a linear `score` head
on its last real token gives two logits (shows up, no-show); P(no-show) = softmax.

setup -> encode -> train -> save, explicitly, in `train_classifier(config)`. LoRA uses
task_type SEQ_CLS so the head is trained and saved with the adapter. Llama has no pad token,
so one is set and `config.pad_token_id` too (the stock head pools the last non-pad token);
our own forward pools by the attention mask, so left/right padding and batch size never
change a score.

    python scripts/train.py --approach classifier --max-steps 20
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from noshow.config import RunConfig
from noshow.training import (
    MID_EVAL_MAX_ROWS,
    Encoded,
    ProgressFn,
    RunResult,
    StopFn,
    TrainingSession,
    autocast_context,
    class_weight_for,
    eval_batch_tokens,
    eval_batches,
    evaluate_and_save,
    fit,
    last_token_index,
    pad_batch,
    pick_device,
    prepare_splits,
    set_seed,
    subset_encoded,
    use_gradient_checkpointing,
    wrap_with_lora,
    write_adapter_metadata,
)


def encode_inputs(
    tokenizer,
    statements: Sequence[str],
    labels: Sequence[int] | np.ndarray,
    record_ids: Sequence[int] | np.ndarray,
    *,
    max_length: int,
) -> Encoded:
    """Token ids of the classifier input per row, tokenized once in one batch."""
    from noshow.statements import render_classifier_input

    texts = [render_classifier_input(s) for s in statements]
    ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    return Encoded(
        [list(x) for x in ids], np.asarray(labels, dtype=np.int64), np.asarray(record_ids)
    )


def _decoder_and_head(model):
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.model, base.score


def classifier_logits(model, ids, mask, pos, device) -> torch.Tensor:
    """(B, 2) logits from the hidden state of each row's last real token."""
    decoder, head = _decoder_and_head(model)
    rows = torch.arange(ids.shape[0], device=device)
    with autocast_context(device):
        hidden = decoder(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False)
        last = hidden.last_hidden_state[rows, last_token_index(mask)]  # (B, H)
        # the head is fp32 (trainable) while a 4-bit base on the CPU hands back bf16
        return head(last.to(next(head.parameters()).dtype)).float()  # (B, 2)


def classifier_loss(
    model,
    enc: Encoded,
    idx: np.ndarray,
    device: torch.device,
    pad_id: int,
    class_weight: float | None = None,
) -> tuple[torch.Tensor, int]:
    ids, mask, pos = pad_batch([enc.input_ids[i] for i in idx], pad_id, device)
    logits = classifier_logits(model, ids, mask, pos, device)
    y = torch.as_tensor(enc.labels[idx], device=device)
    weight = None
    if class_weight is not None:
        weight = torch.tensor([1.0, class_weight], device=device)
    return F.cross_entropy(logits, y, weight=weight), len(idx)


@torch.inference_mode()
def score_inputs(
    model, enc: Encoded, device: torch.device, pad_id: int, *, single_rows: bool = False
) -> np.ndarray:
    """P(no-show) per row; batches sorted by length (`single_rows`: one row each, see
    `eval_batches`), one host sync at the end."""
    out = torch.empty(len(enc), dtype=torch.float32, device=device)
    for idx in eval_batches(enc.lengths, eval_batch_tokens(device), single_rows=single_rows):
        ids, mask, pos = pad_batch([enc.input_ids[i] for i in idx], pad_id, device)
        logits = classifier_logits(model, ids, mask, pos, device)
        out[torch.as_tensor(idx, device=device)] = logits.softmax(-1)[:, 1]
    return out.cpu().numpy()


def setup_classifier(config: RunConfig, device: torch.device):
    """Base model with a 2-way head (4-bit on CUDA by default) + LoRA; trainables in fp32."""
    from noshow.models import load_base

    set_seed(config.train.seed)
    base, tokenizer = load_base(
        config.train.model, "classifier", config.train.quantize, device=device
    )
    model, checkpointing = prepare_classifier_model(base, tokenizer, config)
    return model, tokenizer, checkpointing


def prepare_classifier_model(base, tokenizer, config: RunConfig):
    """LoRA (SEQ_CLS: the score head trains and saves too) on a base already in memory (also
    used by the benchmarks); returns (model, gradient checkpointing on?)."""
    base.config.pad_token_id = tokenizer.pad_token_id  # Llama ships without a pad token
    model = wrap_with_lora(base, config, "SEQ_CLS")
    for p in model.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()  # optimizer state in fp32; autocast does bf16 matmuls
    return model, use_gradient_checkpointing(model, config)


def bind_classifier(model, tokenizer, config: RunConfig, device: torch.device, class_weight=None):
    """(encode(frame), loss_fn, score_fn) for this model, as the training loop and the
    benchmarks call them."""
    pad_id = tokenizer.pad_token_id

    def encode(frame) -> Encoded:
        return encode_inputs(
            tokenizer,
            frame["statement"].tolist(),
            frame["no_show"].to_numpy(),
            frame["record_id"].to_numpy(),
            max_length=config.train.max_length,
        )

    def loss_fn(m, enc, idx, dev):
        return classifier_loss(m, enc, idx, dev, pad_id, class_weight)

    def score_fn(enc):
        return score_inputs(model, enc, device, pad_id)

    return encode, loss_fn, score_fn


def train_classifier(
    config: RunConfig,
    *,
    run_dir: Path | str | None = None,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    resume: bool = False,
) -> RunResult:
    """Fine-tune the classifier-head approach end to end; returns how the run ended."""
    session = TrainingSession(config, run_dir, on_progress, should_stop, resume)
    with session:
        from noshow.models import choose_quantization

        device = pick_device()
        session.emit(phase="loading", message="Loading data")
        splits = prepare_splits(config, session.log)
        session.record_splits(splits)
        session.check_stop()
        session.emit(phase="loading", message=f"Loading {config.train.model} on {device}")
        model, tokenizer, checkpointing = setup_classifier(config, device)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        session.log(
            f"Model {config.train.model} on {device}, quantize {config.train.quantize}, "
            f"{trainable:,} trainable parameters, gradient checkpointing {'on' if checkpointing else 'off'}"
        )
        session.check_stop()
        weight = class_weight_for(splits.train, config)
        encode, loss_fn, score_fn = bind_classifier(model, tokenizer, config, device, weight)
        train_enc, val_enc = encode(splits.train), encode(splits.validation)
        test_enc = encode(splits.test)
        mid_val = subset_encoded(val_enc, MID_EVAL_MAX_ROWS, config.data.seed)

        loop = fit(session, model, train_enc, loss_fn, score_fn, mid_val, device)
        model.eval()

        def save(folder: Path, threshold: float) -> None:
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            write_adapter_metadata(
                folder,
                approach="classifier",
                base_model=config.train.model,
                threshold=threshold,
                quantize=choose_quantization(config.train.quantize, device),  # as trained
                run_id=session.run_dir.name,
                max_length=config.train.max_length,
            )

        evaluate_and_save(session, splits, val_enc, test_enc, score_fn, save, loop)
    return session.result()
