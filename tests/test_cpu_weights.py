"""CPU inference weights (bf16 linear layers, fp32 activations) and the one-pass Compare
answer: the choice and its errors, the layer swap, and on the real bundled model with the
shipped adapters: P within a few hundredths of exact fp32, batched == single, and the
answer text read from the scoring pass equal to what generate() says."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from noshow.cpu_weights import (
    Bf16Linear,
    bf16_linears,
    cpu_weights_choice,
    native_bf16,
    uses_bf16_linears,
)

REPO = Path(__file__).resolve().parents[1]
SHIPPED = {
    "generative": REPO / "adapters" / "generative-smollm2-135m",
    "classifier": REPO / "adapters" / "classifier-smollm2-135m",
}


def test_choice_reads_argument_then_env_and_auto_follows_the_cpu(monkeypatch):
    monkeypatch.delenv("NOSHOW_CPU_WEIGHTS", raising=False)
    assert cpu_weights_choice() == ("bfloat16" if native_bf16() else "float32")
    assert cpu_weights_choice("fp32") == "float32"
    assert cpu_weights_choice(" BF16 ") == "bfloat16"
    monkeypatch.setenv("NOSHOW_CPU_WEIGHTS", "float32")
    assert cpu_weights_choice() == "float32"
    assert cpu_weights_choice("bfloat16") == "bfloat16"  # the argument wins
    with pytest.raises(ValueError, match="auto, float32, bfloat16"):
        cpu_weights_choice("int4")


def test_bad_env_value_is_a_clear_predict_error(adapters, monkeypatch):
    from noshow.predict import PredictError, load_predictor

    monkeypatch.setenv("NOSHOW_CPU_WEIGHTS", "fast-please")
    with pytest.raises(PredictError, match="NOSHOW_CPU_WEIGHTS='fast-please'"):
        load_predictor(adapters.classifier, device="cpu")


def test_bf16_linear_rounds_inputs_and_weights_only():
    torch.manual_seed(0)
    linear = torch.nn.Linear(16, 8, bias=True)
    x = torch.randn(3, 16)
    got = Bf16Linear(linear)(x)
    want = F.linear(x.bfloat16(), linear.weight.bfloat16(), linear.bias.bfloat16()).float()
    assert got.dtype == torch.float32
    assert torch.equal(got, want)
    assert (got - linear(x)).abs().max() < 0.05  # close to fp32, not equal


def test_swap_touches_the_decoder_linears_and_leaves_the_heads(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    layers = model.config.num_hidden_layers
    assert bf16_linears(model.get_decoder()) == 7 * layers  # q k v o gate up down
    assert uses_bf16_linears(model)
    assert type(model.get_output_embeddings()) is torch.nn.Linear
    assert model.get_output_embeddings().weight.dtype == torch.float32


@pytest.mark.parametrize("approach", ["generative", "classifier"])
def test_tiny_adapter_in_bf16_agrees_batched_and_single_and_near_fp32(adapters, approach):
    from noshow.predict import load_predictor

    statements = [f"A {20 + i}-year-old patient booked {i * 3} days ahead." for i in range(6)]
    exact = load_predictor(getattr(adapters, approach), device="cpu", cpu_weights="float32")
    fast = load_predictor(getattr(adapters, approach), device="cpu", cpu_weights="bfloat16")
    assert "float32" in exact.weights and "bf16 linears" in fast.weights
    assert not uses_bf16_linears(exact.model) and uses_bf16_linears(fast.model)
    batched = np.array(fast.predict_proba(statements))
    single = np.array([fast.predict_proba([s])[0] for s in statements])
    assert np.allclose(batched, single, atol=1e-3)
    assert np.abs(batched - np.array(exact.predict_proba(statements))).max() < 0.05


def test_answer_logits_are_the_full_heads_no_yes_rows(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from noshow.generative import answer_logits, build_prompt_layout
    from noshow.models import load_tokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    layout = build_prompt_layout(load_tokenizer(tiny_model_dir))
    hidden = torch.randn(4, model.config.hidden_size)
    head = model.get_output_embeddings()
    full = head(hidden)[:, [layout.no_id, layout.yes_id]]
    assert torch.allclose(answer_logits(head, hidden, layout), full, atol=1e-5)


# ----------------------------------------------------------------------------- real model


@pytest.fixture(scope="module")
def real_statements(real_data_path) -> list[str]:
    from noshow.data import load_data, split_data

    frame = split_data(load_data(real_data_path).frame, "time", seed=0)
    test = frame[frame["split"] == "test"].sample(24, random_state=3)
    return test["statement"].tolist()


@pytest.mark.parametrize("approach", ["generative", "classifier"])
def test_shipped_adapter_bf16_is_within_hundredths_of_fp32(approach, real_statements):
    from noshow.predict import load_predictor

    exact = load_predictor(SHIPPED[approach], device="cpu", cpu_weights="float32")
    fast = load_predictor(SHIPPED[approach], device="cpu", cpu_weights="bfloat16")
    p_exact = np.array(exact.predict_proba(real_statements))
    p_fast = np.array(fast.predict_proba(real_statements))
    # 400 statements gave max |dP| 0.011 (generative) and 0.024 (classifier); the order of
    # the statements by risk barely moves
    assert np.abs(p_fast - p_exact).max() < 0.04
    assert np.corrcoef(p_fast, p_exact)[0, 1] > 0.98
    single = np.array([fast.predict_proba([s])[0] for s in real_statements[:6]])
    assert np.allclose(single, p_fast[:6], atol=1e-6)  # one row per batch: bit-for-bit


@pytest.mark.parametrize("cpu_weights", ["float32", "bfloat16"])
def test_one_pass_answer_is_what_generate_says_and_p_is_unchanged(cpu_weights, real_statements):
    from noshow.predict import load_predictor

    predictor = load_predictor(SHIPPED["generative"], device="cpu", cpu_weights=cpu_weights)
    for statement in real_statements[:4]:
        p, answer = predictor.predict_with_answer(statement)
        assert answer in ("Yes", "No")
        assert answer == predictor.generate(statement)  # the greedy answer, in full
        assert abs(p - predictor.predict_proba([statement])[0]) < 1e-5
    classifier = load_predictor(SHIPPED["classifier"], device="cpu", cpu_weights=cpu_weights)
    p, answer = classifier.predict_with_answer(real_statements[0])
    assert answer is None and 0.0 < p < 1.0
