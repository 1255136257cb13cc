"""The lean CPU forward (noshow.inference.cpu.forward): same hidden states as transformers' Llama
forward for one row and for padded batches (each statement as alone), in every form of the
products, the original forward for everything else, weights shared with the model, and on
the shipped adapters the same scores and answers, through `load_predictor` as the app uses
it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHIPPED

from noshow.inference.cpu.forward import (
    FUSED_ATTR,
    Matmuls,
    build_fast_path,
    install_fast_forward,
    onednn_available,
    rows_independent,
    supported,
    uninstall_fast_forward,
)
from noshow.inference.cpu.weights import bf16_linears, hugepage_weights, transparent_hugepages
from noshow.modeling.approaches import get_approach

REPO = Path(__file__).resolve().parents[1]


def tiny_decoder(tiny_model_dir, bf16: bool = False):
    from noshow.modeling.models import load_base

    model, _ = load_base(tiny_model_dir, get_approach("generative"), "none", device="cpu")
    model.eval()
    if bf16:
        bf16_linears(model.get_decoder())
    return model.get_decoder()


def last_hidden(decoder, ids, **kwargs) -> torch.Tensor:
    with torch.inference_mode():
        return decoder(input_ids=ids, use_cache=False, **kwargs).last_hidden_state[:, -1]


@pytest.mark.parametrize("bf16", [False, True])
def test_one_row_matches_the_transformers_forward(tiny_model_dir, bf16):
    decoder = tiny_decoder(tiny_model_dir, bf16)
    ids = torch.randint(5, 200, (1, 37))
    reference = last_hidden(decoder, ids)
    assert install_fast_forward(decoder)
    fast = last_hidden(decoder, ids, attention_mask=torch.ones_like(ids))
    tolerance = 2e-2 if bf16 else 1e-4  # fused products round bf16 inputs once, not 3 times
    assert torch.allclose(fast, reference, atol=tolerance, rtol=tolerance)
    assert not torch.equal(fast, torch.zeros_like(fast))


def test_a_cached_prefix_gives_the_same_hidden_state(tiny_model_dir):
    """The generative prompts all start with the chat template's system turn: its keys and
    values are computed once, and a prompt that starts with it runs the rest only."""
    decoder = tiny_decoder(tiny_model_dir)
    prefix = [7, 8, 9, 10, 11, 12, 13]
    with_prefix = torch.tensor([prefix + [40, 41, 42, 43, 44]])
    other = torch.tensor([[7, 8, 9, 50, 11, 12, 13, 40, 41, 42]])  # differs inside the prefix
    only_prefix = torch.tensor([prefix])
    reference = [last_hidden(decoder, ids) for ids in (with_prefix, other, only_prefix)]
    assert install_fast_forward(decoder, prefix_ids=prefix)
    state = getattr(decoder, FUSED_ATTR)
    assert state.prefix.tolist() == prefix and len(state.prefix_kv) == len(decoder.layers)
    for ids, ref in zip((with_prefix, other, only_prefix), reference, strict=True):
        assert torch.allclose(last_hidden(decoder, ids), ref, atol=1e-4, rtol=1e-4)


FORMS = [
    Matmuls(torch.float32, onednn=False),
    Matmuls(torch.float32, onednn=True),
    Matmuls(torch.bfloat16, onednn=False),
    Matmuls(torch.bfloat16, onednn=True),
]


@pytest.mark.parametrize("matmuls", FORMS, ids=lambda m: m.label)
@pytest.mark.parametrize("left", [False, True], ids=["right-padded", "left-padded"])
def test_a_padded_batch_scores_each_statement_as_alone(tiny_model_dir, matmuls, left):
    """Concurrent Compares share one forward: the statements of a padded batch (positions
    counting real tokens, as pad_batch builds them) run as one sequence of their tokens;
    each one's last hidden state is what it gets alone, and what transformers gives."""
    from noshow.modeling.batching import last_token_index, pad_batch

    if matmuls.onednn and onednn_available(matmuls.dtype):
        pytest.skip(onednn_available(matmuls.dtype))
    decoder = tiny_decoder(tiny_model_dir)
    prefix = [7, 8, 9, 10]
    rows = [prefix + list(range(20, 20 + n)) for n in (3, 11, 6)] + [[5, 6, 7, 8, 9]]
    ids, mask, pos = pad_batch(rows, pad_id=0, device=torch.device("cpu"), left=left)
    at = last_token_index(mask)
    reference = decoder(input_ids=ids, attention_mask=mask, position_ids=pos).last_hidden_state
    reference = reference[torch.arange(len(rows)), at]
    state = build_fast_path(decoder, matmuls, prefix_ids=prefix)
    assert install_fast_forward(decoder, state=state)
    with torch.inference_mode():
        out = decoder(input_ids=ids, attention_mask=mask, position_ids=pos).last_hidden_state
        alone = torch.cat([last_hidden(decoder, torch.tensor([r])) for r in rows])
    batched = out[torch.arange(len(rows)), at]
    assert torch.allclose(batched, alone, atol=1e-5, rtol=1e-5)
    if rows_independent(state):
        assert torch.equal(batched, alone)
    tolerance = 2e-2 if matmuls.dtype == torch.bfloat16 else 1e-4
    assert torch.allclose(batched, reference, atol=tolerance, rtol=tolerance)
    others = torch.ones_like(mask, dtype=torch.bool)
    others[torch.arange(len(rows)), at] = False
    assert not out[others].any()  # only the positions scoring reads are computed


def test_everything_else_takes_the_original_forward(tiny_model_dir, monkeypatch):
    import noshow.inference.cpu.forward as cf

    decoder = tiny_decoder(tiny_model_dir)
    ids = torch.randint(5, 200, (2, 12))
    holes = torch.ones_like(ids)
    holes[0, 4] = 0  # not one block of real tokens
    reference = last_hidden(decoder, ids, attention_mask=holes)
    install_fast_forward(decoder)
    calls = []
    monkeypatch.setattr(cf, "_fast_forward", lambda *a: calls.append(1) or 1 / 0)
    assert torch.equal(last_hidden(decoder, ids, attention_mask=holes), reference)
    one = ids[:1]
    last_hidden(decoder, one, position_ids=torch.arange(12).unsqueeze(0) + 1)
    last_hidden(decoder, one, output_hidden_states=True)
    last_hidden(decoder, one, attention_mask=torch.zeros_like(one))  # no real token
    with torch.enable_grad():
        decoder(input_ids=one, use_cache=False)  # training: gradients need the real graph
    assert calls == []
    with pytest.raises(ZeroDivisionError):
        last_hidden(decoder, ids)  # and a plain batch does take the fast path


def test_unmerged_lora_and_other_models_are_left_alone(tiny_model_dir):
    from peft import LoraConfig, get_peft_model

    from noshow.modeling.models import load_base

    model, _ = load_base(tiny_model_dir, get_approach("generative"), "none", device="cpu")
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"]))
    decoder = peft_model.get_base_model().get_decoder()
    assert "LoRA not merged" in supported(decoder)
    assert install_fast_forward(decoder) is False
    assert getattr(decoder, FUSED_ATTR, None) is None
    assert supported(torch.nn.Linear(2, 2)) == "not a Llama decoder"


def test_fused_weights_are_views_of_the_model_weights_when_they_lie_back_to_back(tiny_model_dir):
    from noshow.modeling.models import load_base

    model, _ = load_base(tiny_model_dir, get_approach("classifier"), "none", device="cpu")
    bf16_linears(model.get_decoder())
    arena = hugepage_weights(model)
    decoder = model.get_decoder()
    install_fast_forward(decoder)
    layer, state = decoder.layers[0], getattr(decoder, FUSED_ATTR).layers[0]
    q, k, v = (getattr(layer.self_attn, n).weight for n in ("q_proj", "k_proj", "v_proj"))
    assert torch.equal(state.qkv.weight, torch.cat([q, k, v]))
    shares = state.qkv.weight.data_ptr() == q.data_ptr()
    if arena and transparent_hugepages() in ("always", "madvise"):
        assert shares  # no second copy of the weights
    assert uninstall_fast_forward(decoder) and getattr(decoder, FUSED_ATTR) is None
    assert "forward" not in vars(decoder)


# ----------------------------------------------------------------------------- real model


@pytest.fixture(scope="module")
def gpu_rows() -> list[dict]:
    return json.loads((REPO / "tests" / "data" / "gpu_scores_shipped.json").read_text())["rows"]


@pytest.mark.parametrize("approach", ["generative", "classifier"])
def test_shipped_adapters_score_alike_with_and_without_the_fast_forward(approach, gpu_rows):
    from noshow.inference.predict import load_predictor

    predictor = load_predictor(SHIPPED[approach], device="cpu", cpu_weights="float32")
    assert ", fused forward" in predictor.weights
    statements = [r["statement"] for r in gpu_rows[:12]]
    fast = np.array(predictor.predict_proba(statements))
    answer = predictor.predict_with_answer(statements[0])[1]
    decoder = predictor.model.get_decoder()
    assert uninstall_fast_forward(decoder)
    plain = np.array(predictor.predict_proba(statements))
    assert np.abs(fast - plain).max() < 1e-4  # fp32 either way: float rounding only
    if approach == "generative":
        assert answer == predictor.generate(statements[0])
