"""A lean forward pass of a merged Llama decoder for scoring one statement on the CPU.

transformers' Llama forward spends about a quarter of a CPU call on ~1,500 small ops (mask
building, three separate q/k/v and two gate/up products each with its own casts, the
RMSNorm spelled out in six ops). For one unpadded row this module runs the same arithmetic
in fewer, larger ops: q/k/v as one product, gate/up as one, `F.rms_norm`, SDPA with
`is_causal` and grouped-query heads, and, in the last layer, attention and MLP for the last
position only (the only hidden state scoring reads). Anything else (padded batches,
attention masks that are not all ones, a decoder it does not recognise) goes through the
original forward, so results never depend on whether the fast path applies; the
difference to it is float rounding (tests/test_cpu_forward.py).

    from noshow.cpu_forward import install_fast_forward
    install_fast_forward(model.get_decoder())   # after merging (and bf16_linears)

Weights are shared, not copied: where q/k/v (and gate/up) sit back to back in memory, as
`hugepage_weights` lays them out, the fused matrices are views of them; otherwise one copy.
"""

from __future__ import annotations

import types
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from noshow.cpu_weights import Bf16Linear

FUSED_ATTR = "_noshow_fast_forward"


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


def _linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x @ weight.T in the weight's dtype (bf16 weights: bf16 inputs), back in x's dtype."""
    if weight.dtype == x.dtype:
        return F.linear(x, weight)
    return F.linear(x.to(weight.dtype), weight).to(x.dtype)


class _Layer:
    def __init__(self, layer: torch.nn.Module):
        attn, mlp = layer.self_attn, layer.mlp
        self.qkv = _stacked([attn.q_proj, attn.k_proj, attn.v_proj])
        self.o = attn.o_proj.weight.detach()
        self.gate_up = _stacked([mlp.gate_proj, mlp.up_proj])
        self.down = mlp.down_proj.weight.detach()
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


def install_fast_forward(decoder: torch.nn.Module, prefix_ids: Sequence[int] = ()) -> bool:
    """Route one-row, unmasked calls of `decoder` through the lean forward; True when
    installed (False, and nothing changed, when `supported` says no).

    `prefix_ids`: tokens every prompt starts with (the generative chat template's system
    turn); their keys and values are computed once here, and a call whose input starts
    with them runs the rest only."""
    if supported(decoder) is not None:
        return False
    if getattr(decoder, FUSED_ATTR, None) is not None:
        return True
    config = decoder.config
    state = types.SimpleNamespace(
        layers=[_Layer(layer) for layer in decoder.layers],
        heads=config.num_attention_heads,
        kv_heads=config.num_key_value_heads,
        head_dim=getattr(config, "head_dim", None)
        or config.hidden_size // config.num_attention_heads,
        original=decoder.forward,
        prefix=None,
        prefix_kv=None,
    )
    if len(prefix_ids) > 0:
        prefix = torch.tensor([list(prefix_ids)], dtype=torch.long)
        with torch.inference_mode():
            _, state.prefix_kv = _run(decoder, state, prefix, keep_kv=True)
        state.prefix = prefix
    object.__setattr__(decoder, FUSED_ATTR, state)

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, **kwargs):
        if not _fast_path_applies(input_ids, attention_mask, position_ids, kwargs):
            return state.original(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                **kwargs,
            )
        return _fast_forward(self, state, input_ids)

    decoder.forward = types.MethodType(forward, decoder)
    return True


def _fast_path_applies(input_ids, attention_mask, position_ids, kwargs) -> bool:
    if input_ids is None or input_ids.dim() != 2 or input_ids.shape[0] != 1:
        return False
    if input_ids.device.type != "cpu" or torch.is_grad_enabled():
        return False
    if any(kwargs.get(k) not in (None, False) for k in kwargs if k != "use_cache"):
        return False  # inputs_embeds, past_key_values, output_hidden_states, ...
    if attention_mask is not None and not bool(attention_mask.all()):
        return False
    if position_ids is None:
        return True
    expected = torch.arange(input_ids.shape[1], device=position_ids.device)
    return torch.equal(position_ids.reshape(-1), expected)


def _fast_forward(decoder, state, input_ids: torch.Tensor):
    from transformers.modeling_outputs import BaseModelOutputWithPast

    length = input_ids.shape[1]
    prefix = state.prefix
    cached = (
        prefix is not None
        and length > prefix.shape[1]
        and torch.equal(input_ids[:, : prefix.shape[1]], prefix)
    )
    if cached:
        last, _ = _run(decoder, state, input_ids[:, prefix.shape[1] :], past=state.prefix_kv)
    else:
        last, _ = _run(decoder, state, input_ids)
    # Only the last position is computed in the last layer (it is all scoring reads); the
    # positions before it are zeros.
    hidden = torch.cat([last.new_zeros(1, length - 1, last.shape[-1]), last], dim=1)
    return BaseModelOutputWithPast(last_hidden_state=hidden)


def _run(decoder, state, input_ids: torch.Tensor, past=None, keep_kv: bool = False):
    """(final-normed hidden state of the last position (1, 1, H), per-layer (k, v) when
    `keep_kv`) for `input_ids` that follow the cached `past` keys and values, if any."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    length = input_ids.shape[1]
    start = 0 if past is None else past[0][0].shape[2]
    hidden = decoder.embed_tokens(input_ids)  # (1, T, H)
    positions = torch.arange(start, start + length).unsqueeze(0)
    cos, sin = decoder.rotary_emb(hidden, positions)
    heads, kv_heads, head_dim = state.heads, state.kv_heads, state.head_dim
    width = hidden.shape[-1]
    # After cached keys, query j (position start + j) sees keys 0 .. start + j; SDPA's
    # is_causal aligns top-left, so an offset needs an explicit mask.
    mask = None
    if start:
        mask = torch.arange(start + length) <= (start + torch.arange(length)).unsqueeze(1)
    kept = []
    last_layer = len(state.layers) - 1
    for i, layer in enumerate(state.layers):
        x = F.rms_norm(hidden, (width,), layer.norm_in, layer.eps_in)
        qkv = _linear(x, layer.qkv)
        q, k, v = qkv.split([layer.q_size, layer.kv_size, layer.kv_size], dim=-1)
        q = q.view(1, length, heads, head_dim).transpose(1, 2)
        k = k.view(1, length, kv_heads, head_dim).transpose(1, 2)
        v = v.view(1, length, kv_heads, head_dim).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        if keep_kv:
            kept.append((k, v))
        if past is not None:
            k = torch.cat([past[i][0], k], dim=2)
            v = torch.cat([past[i][1], v], dim=2)
        layer_mask, causal = mask, mask is None
        if i == last_layer:  # only the last position's output is read
            q, hidden = q[:, :, -1:], hidden[:, -1:]
            layer_mask, causal = None, False  # the last position sees every key
        attn = F.scaled_dot_product_attention(
            q, k, v, attn_mask=layer_mask, is_causal=causal, enable_gqa=True
        )
        attn = attn.transpose(1, 2).reshape(1, q.shape[2], heads * head_dim)
        hidden = hidden + _linear(attn, layer.o)
        x = F.rms_norm(hidden, (width,), layer.norm_post, layer.eps_post)
        gate, up = _linear(x, layer.gate_up).split(layer.intermediate, dim=-1)
        hidden = hidden + _linear(F.silu(gate) * up, layer.down)
    return decoder.norm(hidden), kept


def uninstall_fast_forward(decoder: torch.nn.Module) -> bool:
    """Back to the original forward (benchmarks and tests compare the two); True if it was
    installed."""
    state = getattr(decoder, FUSED_ATTR, None)
    if state is None:
        return False
    del decoder.forward  # the instance attribute; the class's forward shows again
    object.__setattr__(decoder, FUSED_ATTR, None)
    return True
