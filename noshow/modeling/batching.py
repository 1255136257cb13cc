"""Token ids per row and how they become batches: length-grouped training batches (little
padding, random order), token-budget scoring batches, padding with positions that count real
tokens only, and row subsets. Pure numpy/torch, no model code.

    from noshow.modeling.batching import length_grouped_batches, pad_batch
    for idx in length_grouped_batches(enc.lengths, batch_size=64, seed=0): ...
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

# Tokens per scoring batch (no gradients, so much larger than training batches).
EVAL_BATCH_TOKENS = 65_536
CPU_EVAL_BATCH_TOKENS = 1_536


@dataclass
class Encoded:
    """Token ids per row plus what the loss needs; built once, before the first step."""

    input_ids: list[list[int]]
    labels: np.ndarray  # (N,) 0/1
    record_ids: np.ndarray  # (N,)
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self))


def length_grouped_batches(
    lengths: np.ndarray, batch_size: int, seed: int, drop_last: bool = False
) -> list[np.ndarray]:
    """Shuffle, then sort by length within chunks of 64 batches, so batches pad little but
    the order stays random; batch order is shuffled again. Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))
    chunk = batch_size * 64
    batches: list[np.ndarray] = []
    for start in range(0, len(order), chunk):
        idx = order[start : start + chunk]
        idx = idx[np.argsort(lengths[idx], kind="stable")]
        for b in range(0, len(idx), batch_size):
            batches.append(idx[b : b + batch_size])
    if drop_last and batches and len(batches[-1]) < batch_size and len(batches) > 1:
        batches = batches[:-1]
    rng.shuffle(batches)
    return batches


def eval_batch_tokens(device: torch.device) -> int:
    """Tokens per scoring batch: big on a GPU; on a CPU ~16 rows, which measured 1.6x faster
    than one big batch (cache-sized activations)."""
    return EVAL_BATCH_TOKENS if device.type == "cuda" else CPU_EVAL_BATCH_TOKENS


def eval_batches(
    lengths: np.ndarray, max_tokens: int = EVAL_BATCH_TOKENS, *, single_rows: bool = False
) -> Iterator[np.ndarray]:
    """Sorted by length, batches sized by a token budget: fast, deterministic scoring.
    `single_rows`: one row per batch, so a row scores bit-for-bit as when scored alone; bf16
    CPU weights need it (their matmul kernels round differently for different row counts,
    which moved P by up to 0.006 between a batch and a single call)."""
    order = np.argsort(lengths, kind="stable")
    if single_rows:
        yield from (order[i : i + 1] for i in range(len(order)))
        return
    start = 0
    while start < len(order):
        longest = int(lengths[order[min(len(order) - 1, start)]])
        size = max(1, max_tokens // max(longest, 1))
        # the longest row in this batch is the last one (sorted), so size by it
        end = min(len(order), start + size)
        while end - start > 1 and int(lengths[order[end - 1]]) * (end - start) > max_tokens:
            end -= 1
        yield order[start:end]
        start = end


def scoring_batches(
    enc: Encoded,
    pad_id: int,
    device: torch.device,
    *,
    single_rows: bool = False,
    multiple: int = 1,
) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    """(row indices, input ids (B, T) right-padded, each row's last real position (B,),
    attention mask or None) for scoring every row: sorted by length, sized by the device's
    token budget (see `eval_batches`). Right padding needs no attention mask under causal
    attention, so on CUDA there is none (attention takes its causal kernel); the CPU's fused
    forward (noshow.inference.cpu.forward) packs a batch's real tokens by the mask, so it gets one."""
    lengths = enc.lengths
    for idx in eval_batches(lengths, eval_batch_tokens(device), single_rows=single_rows):
        longest = bucket_length(int(lengths[idx].max()), multiple)
        ids = np.full((len(idx), longest), pad_id, dtype=np.int64)
        for r, i in enumerate(idx):
            ids[r, : lengths[i]] = enc.input_ids[i]
        last = torch.from_numpy(lengths[idx] - 1)
        non_blocking = device.type == "cuda"
        mask = None
        if device.type == "cpu":
            positions = np.arange(longest)[None, :]
            mask = torch.from_numpy((positions < lengths[idx][:, None]).astype(np.int64))
        yield (
            idx,
            torch.from_numpy(ids).to(device, non_blocking=non_blocking),
            last.to(device, non_blocking=non_blocking),
            mask,
        )


def pad_batch(
    seqs: Sequence[Sequence[int]], pad_id: int, device: torch.device, left: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask, position_ids), each (B, T); positions count real tokens
    only, so left- and right-padded rows see the same positions as when scored alone."""
    longest = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), longest), dtype=torch.long)
    for i, s in enumerate(seqs):
        t = torch.as_tensor(s, dtype=torch.long)
        if left:
            ids[i, longest - len(s) :] = t
            mask[i, longest - len(s) :] = 1
        else:
            ids[i, : len(s)] = t
            mask[i, : len(s)] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    non_blocking = device.type == "cuda"
    return (
        ids.to(device, non_blocking=non_blocking),
        mask.to(device, non_blocking=non_blocking),
        positions.to(device, non_blocking=non_blocking),
    )


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B,) index of each row's last real token; works for left and right padding."""
    t = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (t * attention_mask).argmax(-1)


def pad_rows(
    enc: Encoded, idx: np.ndarray, pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The rows `idx` of `enc` as `pad_batch` pads them (input_ids, attention_mask,
    position_ids), and each row's last real position (B,): what a masked-batch loss reads."""
    ids, mask, pos = pad_batch([enc.input_ids[i] for i in idx], pad_id, device)
    return ids, mask, pos, last_token_index(mask)


def subset_encoded(enc: Encoded, limit: int, seed: int) -> Encoded:
    """A fixed random subset (for mid-training validation)."""
    if len(enc) <= limit:
        return enc
    idx = np.sort(np.random.default_rng(seed).choice(len(enc), limit, replace=False))
    return take_rows(enc, idx)


def take_rows(enc: Encoded, idx: np.ndarray) -> Encoded:
    return Encoded([enc.input_ids[i] for i in idx], enc.labels[idx], enc.record_ids[idx])


@dataclass
class Batch:
    """Training rows as fixed-shape tensors on the device: what one forward/backward reads.

    Rows are right-padded, so causal attention needs no mask (a real token never sees the
    padding after it) and positions are 0..T-1 as when a row is alone. `weight` carries the
    loss weighting: each row's share of the whole optimizer step (its class weight over the
    step's total), 0 for filler rows that only keep the shape fixed. A step's loss is
    sum(weight * row_loss), so micro-batches, filler rows and several processes add up to
    the one-process mean over the step's rows."""

    input_ids: torch.Tensor  # (B, T) long
    last_index: torch.Tensor  # (B,) long: each row's last real token
    labels: torch.Tensor  # (B,) long 0/1
    weight: torch.Tensor  # (B,) float32

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.input_ids.shape)


def class_row_weights(labels: np.ndarray, class_weight: float | None) -> np.ndarray:
    """Each row's weight in the loss: `class_weight` for a no-show when class weighting is
    on, else 1."""
    labels = np.asarray(labels)
    if class_weight is None:
        return np.ones(len(labels), dtype=np.float32)
    return np.where(labels == 1, class_weight, 1.0).astype(np.float32)


def bucket_length(longest: int, multiple: int) -> int:
    """`longest` rounded up to a multiple: few distinct shapes for compiled or captured steps."""
    return -(-longest // multiple) * multiple if multiple > 1 else longest


def make_batch(
    enc: Encoded,
    idx: np.ndarray,
    pad_id: int,
    device: torch.device,
    row_weight: np.ndarray,
    *,
    rows: int | None = None,
    multiple: int = 1,
) -> Batch:
    """The rows `idx` of `enc` as a `Batch`: `row_weight[i]` is row idx[i]'s loss weight;
    `rows` pads the batch with zero-weight copies of its first row (a short last batch keeps
    the step's shape); `multiple` rounds the length up (see `bucket_length`)."""
    n = len(idx)
    total = max(rows or n, n)
    seqs = [enc.input_ids[i] for i in idx]
    length = bucket_length(max(len(s) for s in seqs), multiple)
    ids = np.full((total, length), pad_id, dtype=np.int64)
    last = np.zeros(total, dtype=np.int64)
    labels = np.zeros(total, dtype=np.int64)
    weight = np.zeros(total, dtype=np.float32)
    for r in range(total):
        s = seqs[r] if r < n else seqs[0]  # filler rows: a real row, so every value is finite
        ids[r, : len(s)] = s
        last[r] = len(s) - 1
        labels[r] = enc.labels[idx[r]] if r < n else enc.labels[idx[0]]
    weight[:n] = row_weight
    non_blocking = device.type == "cuda"

    def put(a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(a)
        return t.pin_memory().to(device, non_blocking=True) if non_blocking else t

    return Batch(put(ids), put(last), put(labels), put(weight))
