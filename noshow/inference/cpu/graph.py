"""The scoring forward of a merged Llama decoder as one plain torch module, for the engines
that take a whole graph (ONNX Runtime, OpenVINO, torch's int8) and for their exports.

`ScoringGraph(decoder, prefix_ids)` maps right-padded token ids (B, T) and each row's
length (B,) to the final-normed hidden state of each row's last token (B, H): all scoring
reads (the heads run in torch on those rows). It does the arithmetic of transformers' Llama
forward in few, plain ops that every exporter understands (embedding gather, fused q/k/v and
gate/up products as `nn.Linear`, RMSNorm spelled out, rotary tables as constants, attention
as two matmuls and a softmax, grouped-query heads by reshaping, not copying), and:

- a fixed prompt start (`prefix_ids`: the generative chat template's system turn) is
  computed once here and its keys and values kept as constants of the graph, so every
  engine runs the statement and the template's end only (no past_key_values inputs to wire
  through an export);
- the last layer runs attention and MLP for each row's last position only.

Right padding needs no mask beyond the causal one (a real token never sees the padding
after it); the last position's row of the mask is cut at the row's length.

    from noshow.inference.cpu.graph import ScoringGraph, pad_rows
    graph = ScoringGraph(model.get_decoder(), prefix_ids=bound.prefix_ids).eval()
    ids, lengths = pad_rows([tail_ids, ...], pad_id=0)
    hidden = graph(ids, lengths)   # (B, H)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

MAX_POSITIONS = 512  # rotary table length: prefix + the longest scored input (max_length 256)
NEG = -1e9  # additive mask value (finite: exporters and int8 engines keep it exact)


def _linear(weights: list[torch.Tensor]) -> torch.nn.Linear:
    """A bias-free Linear holding `weights` stacked by rows (one product for several)."""
    stacked = torch.cat([w.detach().float() for w in weights], dim=0)
    layer = torch.nn.Linear(stacked.shape[1], stacked.shape[0], bias=False)
    layer.weight = torch.nn.Parameter(stacked.contiguous(), requires_grad=False)
    return layer


class _Block(torch.nn.Module):
    def __init__(self, layer: torch.nn.Module, index: int) -> None:
        super().__init__()
        self.index = index
        attn, mlp = layer.self_attn, layer.mlp
        self.qkv = _linear([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight])
        self.o = _linear([attn.o_proj.weight])
        self.gate_up = _linear([mlp.gate_proj.weight, mlp.up_proj.weight])
        self.down = _linear([mlp.down_proj.weight])
        self.register_buffer("norm_in", layer.input_layernorm.weight.detach().float().clone())
        self.register_buffer(
            "norm_post", layer.post_attention_layernorm.weight.detach().float().clone()
        )
        self.eps = float(layer.input_layernorm.variance_epsilon)
        self.q_size = attn.q_proj.weight.shape[0]
        self.kv_size = attn.k_proj.weight.shape[0]
        self.intermediate = mlp.gate_proj.weight.shape[0]


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class ScoringGraph(torch.nn.Module):
    """(ids (B, T) right-padded, lengths (B,)) -> (B, H) last-token hidden states; see the
    module docstring. Built from a merged fp32 (or bf16) decoder; holds fp32 copies."""

    def __init__(self, decoder: torch.nn.Module, prefix_ids: Sequence[int] = ()) -> None:
        super().__init__()
        config = decoder.config
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or (
            config.hidden_size // config.num_attention_heads
        )
        self.scale = self.head_dim**-0.5
        self.embed = torch.nn.Embedding.from_pretrained(
            decoder.embed_tokens.weight.detach().float().clone(), freeze=True
        )
        self.blocks = torch.nn.ModuleList(
            _Block(layer, i) for i, layer in enumerate(decoder.layers)
        )
        self.register_buffer("norm_out", decoder.norm.weight.detach().float().clone())
        self.eps_out = float(decoder.norm.variance_epsilon)
        with torch.no_grad():
            positions = torch.arange(MAX_POSITIONS).unsqueeze(0)
            probe = torch.zeros(1, MAX_POSITIONS, 1)
            cos, sin = decoder.rotary_emb(probe, positions)  # (1, P, d), transformers' own
        self.register_buffer("cos", cos[0].float().clone())
        self.register_buffer("sin", sin[0].float().clone())
        self.prefix_len = len(prefix_ids)
        layers, kv_shape = len(self.blocks), (self.kv_heads, 0, self.head_dim)
        self.register_buffer("prefix_k", torch.zeros(layers, *kv_shape))
        self.register_buffer("prefix_v", torch.zeros(layers, *kv_shape))
        if self.prefix_len:
            ids = torch.tensor([list(prefix_ids)], dtype=torch.long)
            with torch.no_grad():
                keys, values = self._keys_values(ids)
            self.prefix_k, self.prefix_v = keys, values  # (L, kv, P, d)

    def _keys_values(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every layer's rotated keys and values of one unpadded row (the prefix)."""
        keys, values = [], []
        hidden = self.embed(ids)
        t = ids.shape[1]
        causal = torch.ones(t, t, dtype=torch.bool).tril()
        bias = torch.zeros(t, t).masked_fill(~causal, NEG)
        for block in self.blocks:
            hidden, k, v = self._layer(block, hidden, 0, bias, None)
            keys.append(k[0])
            values.append(v[0])
        return torch.stack(keys), torch.stack(values)

    def _layer(self, block, hidden, start: int, bias, last):
        """One decoder layer; `last` (B,) picks each row's last position for the queries
        (the final layer), else every position is a query. Returns (hidden, k, v)."""
        b, t, _ = hidden.shape
        x = _rms(hidden, block.norm_in, block.eps)
        q, k, v = block.qkv(x).split([block.q_size, block.kv_size, block.kv_size], dim=-1)
        cos, sin = self.cos[start : start + t], self.sin[start : start + t]  # (T, d)
        q = _rotate(q.view(b, t, self.heads, self.head_dim).transpose(1, 2), cos, sin)
        k = _rotate(k.view(b, t, self.kv_heads, self.head_dim).transpose(1, 2), cos, sin)
        v = v.view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)  # (B, kv, T, d)
        keys, values = k, v
        if start:  # the cached prefix comes first
            keys = torch.cat([self.prefix_k[block.index].expand(b, -1, -1, -1), k], dim=2)
            values = torch.cat([self.prefix_v[block.index].expand(b, -1, -1, -1), v], dim=2)
        if last is not None:  # (B,) -> each row's last query only
            rows = torch.arange(b)
            q = q[rows, :, last].unsqueeze(2)  # (B, heads, 1, d)
            hidden = hidden[rows, last].unsqueeze(1)  # (B, 1, H)
        groups = self.heads // self.kv_heads
        q = q.reshape(b, self.kv_heads, groups * q.shape[2], self.head_dim)
        scores = torch.matmul(q, keys.transpose(-1, -2)) * self.scale  # (B, kv, g*Tq, S)
        scores = scores.view(b, self.kv_heads, groups, -1, keys.shape[2]) + bias
        probs = torch.softmax(scores, dim=-1).view(b, self.kv_heads, -1, keys.shape[2])
        attn = torch.matmul(probs, values)  # (B, kv, g*Tq, d)
        attn = attn.view(b, self.heads, -1, self.head_dim).transpose(1, 2)
        hidden = hidden + block.o(attn.reshape(b, attn.shape[1], self.heads * self.head_dim))
        x = _rms(hidden, block.norm_post, block.eps)
        gate, up = block.gate_up(x).split(block.intermediate, dim=-1)
        hidden = hidden + block.down(F.silu(gate) * up)
        return hidden, k, v

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        b, t = ids.shape
        start = self.prefix_len
        hidden = self.embed(ids)  # (B, T, H)
        query = torch.arange(t).unsqueeze(1)
        key = torch.arange(t).unsqueeze(0)
        tail = torch.zeros(t, t).masked_fill(key > query, NEG)  # causal over the tail
        bias = torch.cat([torch.zeros(t, start), tail], dim=1)  # the prefix: always seen
        last = lengths - 1  # (B,)
        # the last query sees its own row's keys up to its length (padding after it)
        last_bias = torch.zeros(b, t).masked_fill(key >= lengths.unsqueeze(1), NEG)
        last_bias = torch.cat([torch.zeros(b, start), last_bias], dim=1)
        last_bias = last_bias.view(b, 1, 1, 1, start + t)
        final = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            if i == final:
                hidden, _, _ = self._layer(block, hidden, start, last_bias, last)
            else:
                hidden, _, _ = self._layer(block, hidden, start, bias, None)
        return _rms(hidden[:, 0], self.norm_out, self.eps_out)  # (B, H)


def pad_rows(rows: Sequence[torch.Tensor], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (B, T) int64 ids and (B,) lengths from 1-D id tensors."""
    lengths = torch.tensor([int(r.shape[0]) for r in rows], dtype=torch.long)
    ids = torch.full((len(rows), int(lengths.max())), pad_id, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : r.shape[0]] = r
    return ids, lengths
