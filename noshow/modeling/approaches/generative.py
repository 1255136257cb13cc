"""Generative approach: an instruct model reads the chat prompt (system + statement +
question) and answers "Yes" (will miss) or "No", followed by its end-of-turn token.

- the loss covers the answer token and the end-of-turn token only (the prompt is masked);
  the language-model head runs at those two positions instead of over every token
  (49k-wide logits over ~100 tokens is most of the memory traffic);
- P(no-show) = softmax over the [No, Yes] logits at the answer position, so both approaches
  give a probability and compare on equal terms.

    from noshow.modeling.approaches import get_approach
    bound = get_approach("generative").bind(model, tokenizer, max_length=256, device=device)
    enc = bound.encode(statements, labels, record_ids, train=True)
    loss, n = bound.loss(model, enc, idx, device)
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

IGNORE_INDEX = -100
_MARKER = "\u2063STATEMENT\u2063"  # invisible separator: never occurs in real statements
_VERIFIED_LAYOUTS: set[PromptLayout] = set()


@dataclass(frozen=True)
class PromptLayout:
    """The chat template around one statement, and the answer tokens that follow it."""

    prefix_ids: tuple[int, ...]
    suffix_ids: tuple[int, ...]
    no_id: int
    yes_id: int
    end_id: int  # end-of-turn token after the answer (<|im_end|>, <|eot_id|>, ...)
    pad_id: int


def build_prompt_layout(tokenizer) -> PromptLayout:
    """Split the rendered chat prompt around the statement, once per tokenizer, and check
    that the answer is one token followed by the end-of-turn token."""
    from noshow.data.statements import generative_messages, render_generative_prompt
    from noshow.modeling.models import answer_token_ids
    from noshow.modeling.presets import ModelError

    no_id, yes_id = answer_token_ids(tokenizer)
    text = render_generative_prompt(_MARKER, tokenizer)
    if text.count(_MARKER) != 1:
        raise ModelError("The chat template does not place the statement exactly once.")
    before, after = text.split(_MARKER)
    prefix = tokenizer(before, add_special_tokens=False)["input_ids"]
    suffix = tokenizer(after, add_special_tokens=False)["input_ids"]
    sample = "A 30-year-old woman has an appointment."
    prompt = tokenizer(render_generative_prompt(sample, tokenizer), add_special_tokens=False)[
        "input_ids"
    ]
    full_text = tokenizer.apply_chat_template(
        generative_messages(sample, answer="Yes"), tokenize=False
    )
    full = tokenizer(full_text, add_special_tokens=False)["input_ids"]
    if full[: len(prompt)] != prompt or len(full) < len(prompt) + 2 or full[len(prompt)] != yes_id:
        raise ModelError(
            "This model's chat template does not render the answer as a single 'Yes' token "
            "right after the generation prompt; the generative approach needs that."
        )
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else full[len(prompt) + 1]
    return PromptLayout(tuple(prefix), tuple(suffix), no_id, yes_id, full[len(prompt) + 1], pad_id)


def encode_prompts(
    tokenizer,
    layout: PromptLayout,
    statements: Sequence[str],
    labels: Sequence[int] | np.ndarray,
    record_ids: Sequence[int] | np.ndarray,
    *,
    with_answer: bool,
    max_length: int,
) -> Encoded:
    """Prompt token ids per row (+ the answer token when training). Statements are tokenized
    in one batch and joined to the template's ids; checked against full rendering."""
    from noshow.data.statements import render_generative_prompt

    body = tokenizer(list(statements), add_special_tokens=False)["input_ids"]
    budget = max_length - len(layout.prefix_ids) - len(layout.suffix_ids) - 2
    if budget < 8:
        raise ValueError(f"max_length {max_length} leaves no room for the statement.")
    labels = np.asarray(labels, dtype=np.int64)
    ids: list[list[int]] = []
    for i, b in enumerate(body):
        row = [*layout.prefix_ids, *b[:budget], *layout.suffix_ids]
        if with_answer:
            row.append(layout.yes_id if labels[i] == 1 else layout.no_id)
        ids.append(row)
    # Joining token ids is only right if the template's boundaries never merge with the
    # statement's first/last tokens; check a few rows against full rendering, once per
    # layout (rendering the chat template costs more than scoring one statement on a CPU).
    if layout in _VERIFIED_LAYOUTS:
        return Encoded(ids, labels, np.asarray(record_ids))
    for i in range(min(8, len(statements))):
        full = tokenizer(
            render_generative_prompt(statements[i], tokenizer), add_special_tokens=False
        )
        if len(body[i]) <= budget and full["input_ids"] != ids[i][: len(full["input_ids"])]:
            raise ValueError("Tokenizer merges across the chat template boundary; cannot join ids.")
    if statements:
        _VERIFIED_LAYOUTS.add(layout)
    return Encoded(ids, labels, np.asarray(record_ids))


def build_masked_example(tokenizer, statement: str, label: int) -> tuple[list[int], list[int]]:
    """(input_ids, labels) for the standard causal-LM loss: the prompt masked with -100,
    the answer and end-of-turn tokens kept. The seed recipe trains on exactly this."""
    layout = build_prompt_layout(tokenizer)
    enc = encode_prompts(
        tokenizer, layout, [statement], [label], [0], with_answer=True, max_length=4096
    )
    ids = [*enc.input_ids[0], layout.end_id]
    labels = [IGNORE_INDEX] * (len(ids) - 2) + ids[-2:]
    return ids, labels


def _decoder_and_head(model):
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder(), base.get_output_embeddings()


def generative_loss(
    model,
    enc: Encoded,
    idx: np.ndarray,
    device: torch.device,
    layout: PromptLayout,
    class_weight: float | None = None,
) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy over the answer and end-of-turn tokens; the head runs at two
    positions per row instead of all T."""
    decoder, head = _decoder_and_head(model)
    # answer_at: (B,) position of the answer token
    ids, mask, pos, answer_at = pad_rows(enc, idx, layout.pad_id, device)
    rows = torch.arange(ids.shape[0], device=device)
    with autocast_context(device):
        hidden = decoder(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False)
        hidden = hidden.last_hidden_state  # (B, T, H)
        picked = torch.stack(
            [hidden[rows, answer_at - 1], hidden[rows, answer_at]], dim=1
        )  # (B, 2, H)
        logits = head(picked).float()  # (B, 2, V)
    targets = torch.stack([ids[rows, answer_at], torch.full_like(answer_at, layout.end_id)], dim=1)
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view(-1, 2)
    if class_weight is not None:
        y = torch.as_tensor(enc.labels[idx], device=device)
        w = torch.where(y == 1, class_weight, 1.0).unsqueeze(1)
        return (loss * w).sum() / (w.sum() * 2), len(idx)
    return loss.mean(), len(idx)


def generative_batch_loss(model, batch: Batch, layout: PromptLayout) -> torch.Tensor:
    """sum(weight * row loss) over a right-padded `Batch`, the row loss being the mean
    cross-entropy of the answer and end-of-turn tokens: the loss the optimizer steps on.
    No attention mask (right padding: real tokens never see the padding after them), so
    attention runs its causal kernel, and nothing here reads a value back to the host: the
    step can be compiled or captured in a CUDA graph."""
    decoder, head = _decoder_and_head(model)
    ids, at = batch.input_ids, batch.last_index  # (B, T), (B,): the answer token's position
    rows = torch.arange(ids.shape[0], device=ids.device)
    with autocast_context(ids.device):
        hidden = decoder(input_ids=ids, use_cache=False).last_hidden_state  # (B, T, H)
        picked = torch.stack([hidden[rows, at - 1], hidden[rows, at]], dim=1)  # (B, 2, H)
        logits = head(picked).float()  # (B, 2, V)
    targets = torch.stack([ids[rows, at], torch.full_like(at, layout.end_id)], dim=1)
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
    return (loss.view(-1, 2).mean(1) * batch.weight).sum()


def answer_logits(head, hidden: torch.Tensor, layout: PromptLayout) -> torch.Tensor:
    """The [No, Yes] logits (B, 2) from answer-position hidden states: two rows of the head
    instead of all 49k (on a CPU the full head is a quarter of one statement's time)."""
    if type(head) is not torch.nn.Linear:  # e.g. a quantized head: take the full product
        return head(hidden).float()[:, [layout.no_id, layout.yes_id]]
    rows = [layout.no_id, layout.yes_id]
    bias = None if head.bias is None else head.bias[rows]
    return F.linear(hidden.to(head.weight.dtype), head.weight[rows], bias).float()


@torch.inference_mode()
def score_prompts(
    model,
    enc: Encoded,
    device: torch.device,
    layout: PromptLayout,
    *,
    greedy: bool = False,
    single_rows: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """P(no-show) = softmax([No, Yes]) at the answer position, for prompt-only encodings.
    With `greedy`, also the model's own most likely answer token per row (full head);
    `single_rows` scores one row per batch (see `eval_batches`)."""
    decoder, head = _decoder_and_head(model)
    out = torch.empty(len(enc), dtype=torch.float32, device=device)
    tokens = torch.empty(len(enc), dtype=torch.long, device=device)
    batches = scoring_batches(enc, layout.pad_id, device, single_rows=single_rows)
    for idx, ids, last, mask in batches:
        rows = torch.arange(ids.shape[0], device=device)
        at = torch.as_tensor(idx, device=device)
        with autocast_context(device):
            hidden = decoder(input_ids=ids, attention_mask=mask, use_cache=False)
            h = hidden.last_hidden_state[rows, last]  # (B, H): the answer position
            out[at] = answer_logits(head, h, layout).softmax(-1)[:, 1]
            if greedy:
                tokens[at] = head(h).argmax(-1)
    if greedy:
        return out.cpu().numpy(), tokens.cpu().numpy()
    return out.cpu().numpy()  # one host sync for the whole set


class GenerativeBound:
    """The generative approach bound to one model and tokenizer: encode, loss, score."""

    def __init__(self, model, tokenizer, *, max_length: int, device, class_weight=None):
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.max_length, self.class_weight = max_length, class_weight
        self.layout = build_prompt_layout(tokenizer)
        self.pad_id = self.layout.pad_id
        self.prefix_ids = self.layout.prefix_ids  # the template's fixed start (CPU cache)
        self.suffix_ids = self.layout.suffix_ids  # and its end, after the statement

    def encode(self, statements, labels, record_ids, *, train: bool) -> Encoded:
        """Prompt ids per row; with `train` the answer token follows the prompt."""
        return encode_prompts(
            self.tokenizer,
            self.layout,
            statements,
            labels,
            record_ids,
            with_answer=train,
            max_length=self.max_length,
        )

    def loss(self, model, enc: Encoded, idx: np.ndarray, device) -> tuple[torch.Tensor, int]:
        """The masked-batch loss of rows `idx` (the seed-comparable reference)."""
        return generative_loss(model, enc, idx, device, self.layout, self.class_weight)

    def batch_loss(self, model, batch: Batch) -> torch.Tensor:
        """What one training step back-propagates: see `generative_batch_loss`."""
        return generative_batch_loss(model, batch, self.layout)

    def row_weights(self, labels: np.ndarray) -> np.ndarray:
        """Each row's weight in the loss: the class weight for no-shows when it is on."""
        return class_row_weights(labels, self.class_weight)

    def score(self, enc: Encoded, *, single_rows: bool = False, answers: bool = False) -> Any:
        """P(no-show) per row; with `answers` also (p, answer tokens) for `answer_texts`."""
        return score_prompts(
            self.model, enc, self.device, self.layout, greedy=answers, single_rows=single_rows
        )

    def answer_texts(self, tokens: Sequence[int]) -> list[str | None]:
        """ "Yes"/"No" for the model's own greedy first token; None when it said something
        else (the caller generates the answer in full)."""
        known = (self.layout.no_id, self.layout.yes_id)
        return [
            self.tokenizer.decode([int(t)]).strip() if int(t) in known else None for t in tokens
        ]


@dataclass(frozen=True)
class GenerativeApproach:
    """What differs for the generative approach, as data and four small methods."""

    name: str = "generative"
    title: str = "Generative (answers Yes/No)"
    task_type: str = "CAUSAL_LM"  # peft
    pipeline_tag: str = "text-generation"  # model card
    answers_in_words: bool = True  # it says "Yes"/"No" besides its probability
    seed_model: str = "llama-3.1-8b-instruct"  # the seed project's model (full GPU run)
    card_summary: str = (
        "the model answers the question with **Yes** or **No**; P(no-show) is the softmax of "
        'the "Yes" and "No" logits at the answer position'
    )
    # As the classifier's (training/preflight.py); the prompt is ~1.6x longer and the 8B
    # shape's head over 128k tokens adds 0.5 GB.
    rough_gpu_gb: Mapping[tuple[str, str], tuple[float, float]] = field(
        default_factory=lambda: {
            ("small", "4bit"): (0.6, 0.125),
            ("small", "none"): (0.8, 0.125),
            ("8b", "4bit"): (7.5, 0.170),
            ("8b", "none"): (18.0, 0.170),
        },
        hash=False,
    )

    def model_class(self):
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM

    def load_kwargs(self) -> dict[str, Any]:
        return {}

    def check_tokenizer(self, tokenizer) -> None:
        """Fail before minutes of loading weights when Yes/No are not single tokens."""
        from noshow.modeling.models import answer_token_ids

        answer_token_ids(tokenizer)

    def prepare_base(self, base, tokenizer) -> None:
        return None

    def lora_extra(self) -> dict[str, Any]:
        return {}

    def bind(self, model, tokenizer, *, max_length: int, device, class_weight=None):
        return GenerativeBound(
            model, tokenizer, max_length=max_length, device=device, class_weight=class_weight
        )


GENERATIVE = GenerativeApproach()
