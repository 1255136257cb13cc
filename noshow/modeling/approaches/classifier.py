"""Classifier-head approach: the base model reads the statement and a linear `score` head
on its last real token gives two logits (shows up, no-show); P(no-show) = softmax.

LoRA uses task_type SEQ_CLS so the head is trained and saved with the adapter. Llama has no
pad token, so one is set and `config.pad_token_id` too (the stock head pools the last
non-pad token); our own forward pools by the attention mask, so left/right padding and batch
size never change a score.

    from noshow.modeling.approaches import get_approach
    bound = get_approach("classifier").bind(model, tokenizer, max_length=256, device=device)
    p = bound.score(bound.encode(statements, labels, record_ids, train=False))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from noshow.modeling.batching import (
    Batch,
    Encoded,
    class_row_weights,
    pad_rows,
    scoring_batches,
)
from noshow.system.devices import autocast_context


def encode_inputs(
    tokenizer,
    statements: Sequence[str],
    labels: Sequence[int] | np.ndarray,
    record_ids: Sequence[int] | np.ndarray,
    *,
    max_length: int,
) -> Encoded:
    """Token ids of the classifier input per row, tokenized once in one batch; an empty
    row gets the pad token, so every row has a last token to pool."""
    from noshow.data.statements import render_classifier_input

    texts = [render_classifier_input(s) for s in statements]
    ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    pad = tokenizer.pad_token_id
    return Encoded(
        [list(x) if len(x) else [pad] for x in ids],
        np.asarray(labels, dtype=np.int64),
        np.asarray(record_ids),
    )


def _decoder_and_head(model):
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.model, base.score


def classifier_logits(model, ids, mask, pos, last, device) -> torch.Tensor:
    """(B, 2) logits from the hidden state of each row's last real token (at `last`)."""
    decoder, head = _decoder_and_head(model)
    rows = torch.arange(ids.shape[0], device=device)
    with autocast_context(device):
        hidden = decoder(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False)
        h = hidden.last_hidden_state[rows, last]  # (B, H)
        # the head is fp32 (trainable) while a 4-bit base on the CPU hands back bf16
        return head(h.to(next(head.parameters()).dtype)).float()  # (B, 2)


def classifier_loss(
    model,
    enc: Encoded,
    idx: np.ndarray,
    device: torch.device,
    pad_id: int,
    class_weight: float | None = None,
) -> tuple[torch.Tensor, int]:
    ids, mask, pos, last = pad_rows(enc, idx, pad_id, device)
    logits = classifier_logits(model, ids, mask, pos, last, device)
    y = torch.as_tensor(enc.labels[idx], device=device)
    weight = None
    if class_weight is not None:
        weight = torch.tensor([1.0, class_weight], device=device)
    return F.cross_entropy(logits, y, weight=weight), len(idx)


def classifier_batch_loss(model, batch: Batch) -> torch.Tensor:
    """sum(weight * cross-entropy) over a right-padded `Batch` (no attention mask, no host
    read: compilable and capturable; see generative_batch_loss)."""
    decoder, head = _decoder_and_head(model)
    ids = batch.input_ids
    rows = torch.arange(ids.shape[0], device=ids.device)
    with autocast_context(ids.device):
        hidden = decoder(input_ids=ids, use_cache=False).last_hidden_state  # (B, T, H)
        last = hidden[rows, batch.last_index]  # (B, H)
        logits = head(last.to(next(head.parameters()).dtype)).float()  # (B, 2)
    loss = F.cross_entropy(logits, batch.labels, reduction="none")
    return (loss * batch.weight).sum()


@torch.inference_mode()
def score_inputs(
    model, enc: Encoded, device: torch.device, pad_id: int, *, single_rows: bool = False
) -> np.ndarray:
    """P(no-show) per row; batches sorted by length (`single_rows`: one row each, see
    `eval_batches`), right-padded without a mask, one host sync at the end."""
    decoder, head = _decoder_and_head(model)
    out = torch.empty(len(enc), dtype=torch.float32, device=device)
    for idx, ids, last, mask in scoring_batches(enc, pad_id, device, single_rows=single_rows):
        rows = torch.arange(ids.shape[0], device=device)
        with autocast_context(device):
            hidden = decoder(input_ids=ids, attention_mask=mask, use_cache=False)
            h = hidden.last_hidden_state[rows, last]  # (B, H)
            logits = head(h.to(next(head.parameters()).dtype)).float()  # (B, 2)
        out[torch.as_tensor(idx, device=device)] = logits.softmax(-1)[:, 1]
    return out.cpu().numpy()


class ClassifierBound:
    """The classifier approach bound to one model and tokenizer: encode, loss, score."""

    prefix_ids: tuple[int, ...] = ()  # no fixed prompt start to cache
    suffix_ids: tuple[int, ...] = ()

    def __init__(self, model, tokenizer, *, max_length: int, device, class_weight=None):
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.max_length, self.class_weight = max_length, class_weight
        self.pad_id = tokenizer.pad_token_id

    def encode(self, statements, labels, record_ids, *, train: bool) -> Encoded:
        """The same ids for training and scoring (the label is not part of the input)."""
        return encode_inputs(
            self.tokenizer, statements, labels, record_ids, max_length=self.max_length
        )

    def loss(self, model, enc: Encoded, idx: np.ndarray, device) -> tuple[torch.Tensor, int]:
        """The masked-batch loss of rows `idx` (the seed-comparable reference)."""
        return classifier_loss(model, enc, idx, device, self.pad_id, self.class_weight)

    def batch_loss(self, model, batch: Batch) -> torch.Tensor:
        """What one training step back-propagates: see `classifier_batch_loss`."""
        return classifier_batch_loss(model, batch)

    def row_weights(self, labels: np.ndarray) -> np.ndarray:
        """Each row's weight in the loss: the class weight for no-shows when it is on."""
        return class_row_weights(labels, self.class_weight)

    def score(self, enc: Encoded, *, single_rows: bool = False, answers: bool = False) -> Any:
        """P(no-show) per row; with `answers`, (p, no tokens): a head says no words."""
        p = score_inputs(self.model, enc, self.device, self.pad_id, single_rows=single_rows)
        return (p, np.full(len(p), -1)) if answers else p

    def answer_texts(self, tokens: Sequence[int]) -> list[str | None]:
        return [None] * len(tokens)


@dataclass(frozen=True)
class ClassifierApproach:
    """What differs for the classifier-head approach, as data and four small methods."""

    name: str = "classifier"
    title: str = "Classifier head"
    task_type: str = "SEQ_CLS"  # peft: the score head trains and saves with the adapter
    pipeline_tag: str = "text-classification"  # model card
    answers_in_words: bool = False
    seed_model: str = "llama-3.1-8b"  # the seed project's model (full GPU run)
    card_summary: str = "a two-class **classifier head** on the last token gives P(no-show)"
    # GPU memory without a measurement (training/preflight.py): {(size class, quantize):
    # (GB for the weights, GB per statement of the batch)}, from H200 peaks (BENCHMARKS.md).
    rough_gpu_gb: Mapping[tuple[str, str], tuple[float, float]] = field(
        default_factory=lambda: {
            ("small", "4bit"): (0.6, 0.080),
            ("small", "none"): (0.8, 0.080),
            ("8b", "4bit"): (7.0, 0.110),
            ("8b", "none"): (17.5, 0.110),
        },
        hash=False,
    )

    def model_class(self):
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification

    def load_kwargs(self) -> dict[str, Any]:
        return {
            "num_labels": 2,
            "id2label": {0: "show", 1: "no_show"},
            "label2id": {"show": 0, "no_show": 1},
        }

    def check_tokenizer(self, tokenizer) -> None:
        return None

    def prepare_base(self, base, tokenizer) -> None:
        # The head pools the last token that is not padding, so it must know the pad id.
        base.config.pad_token_id = tokenizer.pad_token_id

    def lora_extra(self) -> dict[str, Any]:
        return {"modules_to_save": ["score"]}

    def bind(self, model, tokenizer, *, max_length: int, device, class_weight=None):
        return ClassifierBound(
            model, tokenizer, max_length=max_length, device=device, class_weight=class_weight
        )


CLASSIFIER = ClassifierApproach()
