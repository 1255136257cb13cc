"""A lean forward pass of a merged Llama decoder for scoring statements on the CPU.

transformers' Llama forward spends about a quarter of a CPU call on ~1,500 small ops (mask
building, three separate q/k/v and two gate/up products each with its own casts, the
RMSNorm spelled out in six ops). This module runs the same arithmetic in fewer, larger ops:
q/k/v as one product, gate/up as one, `F.rms_norm`, SDPA with grouped-query heads, and, in
the last layer, attention and MLP for each statement's last position only (the only hidden
state scoring reads).

Several statements run as ONE sequence of all their tokens (no padding): every product,
norm and MLP works row by row, so the statements share each weight read, and only the
attention is computed per statement. A padded batch (right or left padding, positions
counting real tokens, as `noshow.modeling.batching.pad_batch` builds it) is unpacked into those
statements, so a statement scores the same in a batch as alone (bit-for-bit where the
products' rows do not depend on each other, as with oneDNN-packed weights).

The products run in the form a `Matmuls` names: the model's weights as they are (fp32, or
bf16 after `bf16_linears`), or copies in another dtype, and plain `F.linear` or weights
prepacked once in oneDNN's blocked layout (`torch.ops.mkldnn`, what inductor's `freezing`
emits: no per-call weight reorder). Which one is fastest depends on the CPU; see
`noshow.inference.cpu.runtime`, which times them.

Anything else (masks that are not one block of ones per row, past key values, gradients, a
decoder it does not recognise) goes through the original forward, so results never depend
on whether the fast path applies; the difference to it is float rounding
(tests/test_cpu_forward.py).

    from noshow.inference.cpu.forward import install_fast_forward
    install_fast_forward(model.get_decoder())   # after merging (and bf16_linears)
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from noshow.inference.cpu.weights import Bf16Linear

FUSED_ATTR = "_noshow_fast_forward"
# Rows oneDNN lays packed weights out for: a typical statement (65-115 tokens); any row
# count works with any layout.
PACK_ROWS_HINT = 96


@dataclass(frozen=True)
class Matmuls:
    """How the decoder's products run: in `dtype` (inputs rounded to it, outputs back to
    fp32) with plain `F.linear` or with weights prepacked for oneDNN."""

    dtype: torch.dtype = torch.float32
    onednn: bool = False

    @property
    def label(self) -> str:
        kind = "float32" if self.dtype == torch.float32 else "bf16 linears (fp32 activations)"
        return kind + (", oneDNN-packed" if self.onednn else "")


def onednn_available(dtype: torch.dtype) -> str | None:
    """None when this CPU can run oneDNN-packed products in `dtype`, else why not."""
    if not torch.backends.mkldnn.is_available():
        return "this torch build has no oneDNN"
    try:
        weight = torch.zeros(32, 32, dtype=dtype)
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, 4)
        torch.ops.mkldnn._linear_pointwise(
            torch.ones(2, 32, dtype=dtype), packed, None, "none", [], ""
        )
    except (RuntimeError, AttributeError) as e:  # e.g. bf16 on a CPU without avx512bw
        return f"oneDNN {str(dtype)[6:]}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    return None


class _Product:
    """x @ W.T for one (out, in) weight, in the form a `Matmuls` names."""

    __slots__ = ("dtype", "onednn", "weight")

    def __init__(self, weight: torch.Tensor, matmuls: Matmuls):
        self.dtype, self.onednn = matmuls.dtype, matmuls.onednn
        weight = weight.detach()
        if weight.dtype != self.dtype:
            weight = weight.to(self.dtype)
        if self.onednn:
            weight = torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), PACK_ROWS_HINT)
        self.weight = weight

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = x if x.dtype == self.dtype else x.to(self.dtype)
        if self.onednn:
            y = torch.ops.mkldnn._linear_pointwise(y, self.weight, None, "none", [], "")
        else:
            y = F.linear(y, self.weight)
        return y if y.dtype == x.dtype else y.to(x.dtype)


def _stacked(layers: list[torch.nn.Module]) -> torch.Tensor:
    """The weights of `layers` stacked by rows: a view when they lie back to back in one
    storage (no copy), else a new tensor."""
    weights = [m.weight.detach() for m in layers]
    first = weights[0]
    adjacent = all(w.is_contiguous() and w.dtype == first.dtype for w in weights) and all(
        b.untyped_storage().data_ptr() == first.untyped_storage().data_ptr()
        and b.data_ptr() == a.data_ptr() + a.numel() * a.element_size()
        for a, b in zip(weights, weights[1:], strict=False)
    )
    rows = sum(w.shape[0] for w in weights)
    if adjacent:
        return first.as_strided((rows, first.shape[1]), (first.shape[1], 1))
    return torch.cat(weights, dim=0)


class _Layer:
    def __init__(self, layer: torch.nn.Module, matmuls: Matmuls):
        attn, mlp = layer.self_attn, layer.mlp
        self.qkv = _Product(_stacked([attn.q_proj, attn.k_proj, attn.v_proj]), matmuls)
        self.o = _Product(attn.o_proj.weight, matmuls)
        self.gate_up = _Product(_stacked([mlp.gate_proj, mlp.up_proj]), matmuls)
        self.down = _Product(mlp.down_proj.weight, matmuls)
        self.norm_in = layer.input_layernorm.weight.detach()
        self.norm_post = layer.post_attention_layernorm.weight.detach()
        self.eps_in = layer.input_layernorm.variance_epsilon
        self.eps_post = layer.post_attention_layernorm.variance_epsilon
        self.q_size = attn.q_proj.weight.shape[0]
        self.kv_size = attn.k_proj.weight.shape[0]
        self.intermediate = mlp.gate_proj.weight.shape[0]


def supported(decoder: torch.nn.Module) -> str | None:
    """None when the fast path can run this decoder, else why not."""
    config = getattr(decoder, "config", None)
    if config is None or getattr(config, "model_type", None) != "llama":
        return "not a Llama decoder"
    if getattr(config, "hidden_act", None) != "silu":
        return f"activation {getattr(config, 'hidden_act', None)!r}"
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        return "biased projections"
    for layer in decoder.layers:
        attn, mlp = layer.self_attn, layer.mlp
        for m in (
            attn.q_proj,
            attn.k_proj,
            attn.v_proj,
            attn.o_proj,
            mlp.gate_proj,
            mlp.up_proj,
            mlp.down_proj,
        ):
            if not (type(m) is torch.nn.Linear or isinstance(m, Bf16Linear)):
                return f"{type(m).__name__} is not a plain linear layer (LoRA not merged?)"
            if getattr(m, "bias", None) is not None:
                return "biased projections"
    return None


def build_fast_path(
    decoder: torch.nn.Module, matmuls: Matmuls | None = None, prefix_ids: Sequence[int] = ()
) -> types.SimpleNamespace:
    """The lean forward's state for `decoder` (call `supported` first): its products in the
    form `matmuls` names (default: the model's own weights, plain) and, for `prefix_ids`
    (tokens every prompt starts with, e.g. the generative chat template's system turn), the
    keys and values of that prefix, computed once; a statement that starts with it runs the
    rest only. Raises RuntimeError where oneDNN cannot pack the weights."""
    config = decoder.config
    if matmuls is None:
        matmuls = Matmuls(dtype=decoder.layers[0].self_attn.q_proj.weight.dtype)
    state = types.SimpleNamespace(
        matmuls=matmuls,
        layers=[_Layer(layer, matmuls) for layer in decoder.layers],
        heads=config.num_attention_heads,
        kv_heads=config.num_key_value_heads,
        head_dim=getattr(config, "head_dim", None)
        or config.hidden_size // config.num_attention_heads,
        original=getattr(getattr(decoder, FUSED_ATTR, None), "original", decoder.forward),
        prefix=None,
        prefix_kv=None,
    )
    if len(prefix_ids) > 0:
        prefix = torch.tensor(list(prefix_ids), dtype=torch.long)
        with torch.inference_mode():
            state.prefix_kv = _prefix_keys_values(decoder, state, prefix)
        state.prefix = prefix
    return state


def install_fast_forward(
    decoder: torch.nn.Module,
    prefix_ids: Sequence[int] = (),
    *,
    state: types.SimpleNamespace | None = None,
) -> bool:
    """Route calls of `decoder` that the fast path can run (see the module docstring) through
    it; True when installed (False, and nothing changed, when `supported` says no). `state`:
    one `build_fast_path` made (e.g. the one `noshow.inference.cpu.runtime` timed fastest), else one
    is built from the model's own weights and `prefix_ids`. Installing again replaces it."""
    if supported(decoder) is not None:
        return False
    state = state if state is not None else build_fast_path(decoder, prefix_ids=prefix_ids)
    object.__setattr__(decoder, FUSED_ATTR, state)

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, **kwargs):
        rows = _fast_path_rows(input_ids, attention_mask, position_ids, kwargs)
        if rows is None:
            return state.original(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                **kwargs,
            )
        return _fast_forward(self, state, input_ids, rows)

    decoder.forward = types.MethodType(forward, decoder)
    return True


def _fast_path_rows(input_ids, attention_mask, position_ids, kwargs):
    """(first real position, length) per row when the fast path can run this call: every
    row's real tokens one block of ones in the mask, their positions 0, 1, ...; else None."""
    if input_ids is None or input_ids.dim() != 2 or input_ids.shape[1] == 0:
        return None
    if input_ids.device.type != "cpu" or torch.is_grad_enabled():
        return None
    if any(kwargs.get(k) not in (None, False) for k in kwargs if k != "use_cache"):
        return None  # inputs_embeds, past_key_values, output_hidden_states, ...
    batch, width = input_ids.shape
    if attention_mask is None:
        first = torch.zeros(batch, dtype=torch.long)
        lengths = torch.full((batch,), width, dtype=torch.long)
    else:
        if attention_mask.shape != input_ids.shape:
            return None
        real = attention_mask.bool()
        lengths = real.sum(1)
        first = real.to(torch.int8).argmax(1)
        columns = torch.arange(width)
        block = (columns >= first.unsqueeze(1)) & (columns < (first + lengths).unsqueeze(1))
        if int(lengths.min()) == 0 or not torch.equal(block, real):
            return None
    if position_ids is not None:
        expected = (torch.arange(width) - first.unsqueeze(1)).clamp(min=0)
        positions = (
            position_ids.expand(batch, width) if position_ids.shape[0] == 1 else position_ids
        )
        if positions.shape != (batch, width):
            return None
        if attention_mask is None:
            if not torch.equal(positions, expected):
                return None
        elif not torch.equal(positions[real], expected[real]):
            return None
    return first.tolist(), lengths.tolist()


def _fast_forward(decoder, state, input_ids: torch.Tensor, rows):
    from transformers.modeling_outputs import BaseModelOutputWithPast

    first, lengths = rows
    statements = [
        input_ids[i, f : f + n] for i, (f, n) in enumerate(zip(first, lengths, strict=True))
    ]
    last = last_hidden_states(decoder, state, statements)  # (B, H)
    # Only each row's last real position is computed (it is all scoring reads); the other
    # positions are zeros.
    hidden = last.new_zeros(*input_ids.shape, last.shape[-1])
    ends = torch.tensor([f + n - 1 for f, n in zip(first, lengths, strict=True)])
    hidden[torch.arange(len(statements)), ends] = last
    return BaseModelOutputWithPast(last_hidden_state=hidden)


def last_hidden_states(decoder, state, statements: Sequence[torch.Tensor]) -> torch.Tensor:
    """(B, H): the final-normed hidden state of each statement's last token (1-D token id
    tensors), all statements in one pass."""
    prefix = state.prefix
    cut = 0 if prefix is None else prefix.shape[0]
    tails, starts = [], []
    for ids in statements:
        cached = cut and ids.shape[0] > cut and torch.equal(ids[:cut], prefix)
        tails.append(ids[cut:] if cached else ids)
        starts.append(cut if cached else 0)
    with torch.inference_mode():
        return _run(decoder, state, tails, starts)


def _prefix_keys_values(decoder, state, prefix: torch.Tensor) -> list:
    kept: list = []
    _run(decoder, state, [prefix], [0], keep_kv=kept)
    return kept


def _run(decoder, state, tails: list[torch.Tensor], starts: list[int], keep_kv=None):
    """Final-normed hidden state (B, H) of the last token of each of `tails` (1-D ids);
    a tail with start > 0 follows the cached prefix keys and values. With `keep_kv` (one
    tail), append each layer's (k, v) to it."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    lengths = [t.shape[0] for t in tails]
    offsets = [0]
    for n in lengths:
        offsets.append(offsets[-1] + n)
    ids = torch.cat(tails).unsqueeze(0) if len(tails) > 1 else tails[0].unsqueeze(0)  # (1, N)
    positions = torch.cat(
        [torch.arange(s, s + n) for s, n in zip(starts, lengths, strict=True)]
    ).unsqueeze(0)
    hidden = decoder.embed_tokens(ids)  # (1, N, H)
    cos, sin = decoder.rotary_emb(hidden, positions)
    heads, kv_heads, head_dim = state.heads, state.kv_heads, state.head_dim
    width = hidden.shape[-1]
    total = offsets[-1]
    # After cached keys, query j (position start + j) sees keys 0 .. start + j; SDPA's
    # is_causal aligns top-left, so an offset needs an explicit mask.
    masks = [
        torch.arange(s + n) <= (s + torch.arange(n)).unsqueeze(1) if s else None
        for s, n in zip(starts, lengths, strict=True)
    ]
    ends = torch.tensor(offsets[1:]) - 1
    last_layer = len(state.layers) - 1
    for i, layer in enumerate(state.layers):
        x = F.rms_norm(hidden, (width,), layer.norm_in, layer.eps_in)
        q, k, v = layer.qkv(x).split([layer.q_size, layer.kv_size, layer.kv_size], dim=-1)
        q = q.view(1, total, heads, head_dim).transpose(1, 2)  # (1, heads, N, d)
        k = k.view(1, total, kv_heads, head_dim).transpose(1, 2)
        v = v.view(1, total, kv_heads, head_dim).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        if keep_kv is not None:
            keep_kv.append((k, v))
        final = i == last_layer
        if final:  # only each statement's last position is read
            hidden = hidden[:, ends]
        outs = []
        for j, (s, e) in enumerate(zip(offsets, offsets[1:], strict=False)):
            kj, vj = k[:, :, s:e], v[:, :, s:e]
            if starts[j]:
                kj = torch.cat([state.prefix_kv[i][0], kj], dim=2)
                vj = torch.cat([state.prefix_kv[i][1], vj], dim=2)
            if final:  # the last position sees every key
                qj, mask, causal = q[:, :, e - 1 : e], None, False
            else:
                qj, mask, causal = q[:, :, s:e], masks[j], masks[j] is None
            outs.append(
                F.scaled_dot_product_attention(
                    qj, kj, vj, attn_mask=mask, is_causal=causal, enable_gqa=True
                )
            )
        attn = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)  # (1, heads, rows, d)
        attn = attn.transpose(1, 2).reshape(1, attn.shape[2], heads * head_dim)
        hidden = hidden + layer.o(attn)
        x = F.rms_norm(hidden, (width,), layer.norm_post, layer.eps_post)
        gate, up = layer.gate_up(x).split(layer.intermediate, dim=-1)
        hidden = hidden + layer.down(F.silu(gate) * up)
    return decoder.norm(hidden)[0]


def rows_independent(state: types.SimpleNamespace, rows: int = 1024) -> bool:
    """True when each product of `state` gives a row bit-for-bit the same whatever the number
    of rows around it: then a statement scored among others equals it scored alone. Reduced
    precision makes this matter: where a kernel picks its blocking by row count (seen with
    bf16 on AMX), fp32 sums in another order now and then round to the neighbouring bf16,
    which moved P by up to 0.0013 between a batch and a single call."""
    layer = state.layers[0]
    generator = torch.Generator().manual_seed(0)
    width = layer.norm_in.shape[0]
    x = torch.randn(rows, width, generator=generator)
    with torch.inference_mode():
        for product in (layer.qkv, layer.gate_up):
            full = product(x)
            for count in (1, 24, 85, 111, 333):
                if not torch.equal(product(x[:count]), full[:count]):
                    return False
    return True


def uninstall_fast_forward(decoder: torch.nn.Module) -> bool:
    """Back to the original forward (benchmarks and tests compare the two); True if it was
    installed."""
    state = getattr(decoder, FUSED_ATTR, None)
    if state is None:
        return False
    del decoder.forward  # the instance attribute; the class's forward shows again
    object.__setattr__(decoder, FUSED_ATTR, None)
    return True
