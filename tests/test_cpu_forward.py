"""The lean CPU forward (noshow.cpu_forward): same hidden states as transformers' Llama
forward for one unpadded row, the original forward for everything else, weights shared
with the model, and on the shipped adapters the same scores and answers within bf16
rounding, through `load_predictor` as the app uses it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHIPPED

from noshow.approaches import get_approach
from noshow.cpu_forward import (
    FUSED_ATTR,
    install_fast_forward,
    supported,
    uninstall_fast_forward,
)
from noshow.cpu_weights import bf16_linears, hugepage_weights, transparent_hugepages

REPO = Path(__file__).resolve().parents[1]


def tiny_decoder(tiny_model_dir, bf16: bool = False):
    from noshow.models import load_base

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
    assert state.prefix.tolist() == [prefix] and len(state.prefix_kv) == len(decoder.layers)
    for ids, ref in zip((with_prefix, other, only_prefix), reference, strict=True):
        assert torch.allclose(last_hidden(decoder, ids), ref, atol=1e-4, rtol=1e-4)


def test_everything_but_one_unmasked_row_takes_the_original_forward(tiny_model_dir, monkeypatch):
    import noshow.cpu_forward as cf

    decoder = tiny_decoder(tiny_model_dir)
    ids = torch.randint(5, 200, (2, 12))
    mask = torch.ones_like(ids)
    mask[0, :3] = 0
    reference_batch = last_hidden(decoder, ids, attention_mask=mask)
    install_fast_forward(decoder)
    calls = []
    monkeypatch.setattr(cf, "_fast_forward", lambda *a: calls.append(1) or 1 / 0)
    assert torch.equal(last_hidden(decoder, ids, attention_mask=mask), reference_batch)
    one = ids[:1]
    last_hidden(decoder, one, attention_mask=mask[:1])  # a padded row
    last_hidden(decoder, one, position_ids=torch.arange(12).unsqueeze(0) + 1)
    last_hidden(decoder, one, output_hidden_states=True)
    with torch.enable_grad():
        decoder(input_ids=one, use_cache=False)  # training: gradients need the real graph
    assert calls == []
    with pytest.raises(ZeroDivisionError):
        last_hidden(decoder, one)  # and one plain row does take the fast path


def test_unmerged_lora_and_other_models_are_left_alone(tiny_model_dir):
    from peft import LoraConfig, get_peft_model

    from noshow.models import load_base

    model, _ = load_base(tiny_model_dir, get_approach("generative"), "none", device="cpu")
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"]))
    decoder = peft_model.get_base_model().get_decoder()
    assert "LoRA not merged" in supported(decoder)
    assert install_fast_forward(decoder) is False
    assert getattr(decoder, FUSED_ATTR, None) is None
    assert supported(torch.nn.Linear(2, 2)) == "not a Llama decoder"


def test_fused_weights_are_views_of_the_model_weights_when_they_lie_back_to_back(tiny_model_dir):
    from noshow.models import load_base

    model, _ = load_base(tiny_model_dir, get_approach("classifier"), "none", device="cpu")
    bf16_linears(model.get_decoder())
    arena = hugepage_weights(model)
    decoder = model.get_decoder()
    install_fast_forward(decoder)
    layer, state = decoder.layers[0], getattr(decoder, FUSED_ATTR).layers[0]
    q, k, v = (getattr(layer.self_attn, n).weight for n in ("q_proj", "k_proj", "v_proj"))
    assert torch.equal(state.qkv, torch.cat([q, k, v]))
    shares = state.qkv.data_ptr() == q.data_ptr()
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
    from noshow.cpu_weights import native_bf16
    from noshow.predict import load_predictor

    if not native_bf16():
        pytest.skip("the fused forward is installed with bf16 weights (native bf16 CPUs)")
    predictor = load_predictor(SHIPPED[approach], device="cpu")
    assert predictor.weights.endswith(", fused forward")
    statements = [r["statement"] for r in gpu_rows[:12]]
    fast = np.array(predictor.predict_proba(statements))
    answer = predictor.predict_with_answer(statements[0])[1]
    decoder = predictor.model.get_decoder()
    assert uninstall_fast_forward(decoder)
    plain = np.array(predictor.predict_proba(statements))
    # bf16 products round differently for different row counts; the generative prompt's
    # cached prefix comes from a 24-row product: measured max 0.0056 (generative), 0.0001
    assert np.abs(fast - plain).max() < 0.012  # (classifier); bf16 vs fp32 itself: 0.012
    if approach == "generative":
        assert answer == predictor.generate(statements[0])
