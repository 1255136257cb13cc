"""Random-weight Llamas (noshow/modeling/random_models.py): the tiny test model, the 8B
shape the benchmarks use, and the reason neither may zero an embedding row: a zero row
for the token that opens every prompt made the 8B-shaped generative model's gradients
non-finite at step 1 (reproduced here at a width a CPU runs in seconds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from noshow.modeling.approaches import get_approach
from noshow.modeling.models import load_tokenizer
from noshow.modeling.presets import ModelError
from noshow.modeling.random_models import (
    build_random_llama,
    build_random_llama_in_memory,
    draw_random_llama,
    llama_8b_config,
)


def test_build_random_llama_is_reproducible_for_a_seed(tmp_path, bundled_model_dir):
    from safetensors.torch import load_file

    def weights(folder: Path) -> dict:
        return load_file(folder / "model.safetensors")

    a = weights(build_random_llama(tmp_path / "a", load_tokenizer(bundled_model_dir), seed=1))
    b = weights(build_random_llama(tmp_path / "b", load_tokenizer(bundled_model_dir), seed=1))
    c = weights(build_random_llama(tmp_path / "c", load_tokenizer(bundled_model_dir), seed=2))
    key = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(a[key], b[key]) and not torch.equal(a[key], c[key])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial folders


def test_build_random_llama_refuses_a_non_empty_folder(tmp_path, bundled_model_dir):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(ModelError, match="empty folder"):
        build_random_llama(tmp_path, load_tokenizer(bundled_model_dir))
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_the_8b_shape_is_llama_3_1_8b():
    config = llama_8b_config()
    assert (config.hidden_size, config.intermediate_size, config.num_hidden_layers) == (
        4096,
        14_336,
        32,
    )
    assert (config.num_attention_heads, config.num_key_value_heads, config.vocab_size) == (
        32,
        8,
        128_256,
    )
    assert config.rope_parameters["rope_theta"] == 500_000.0


def test_random_llama_in_memory_4bit_quantizes_every_decoder_linear_and_no_head():
    bnb = pytest.importorskip("bitsandbytes")
    from noshow.modeling.models import load_tokenizer

    tokenizer = load_tokenizer("smollm2-135m-instruct")
    model = build_random_llama_in_memory(
        "tiny", get_approach("generative"), "4bit", torch.device("cpu"), tokenizer
    )
    decoder_linears = [
        m for m in model.get_decoder().layers.modules() if isinstance(m, torch.nn.Linear)
    ]
    assert len(decoder_linears) == 2 * 7  # 2 layers x (q, k, v, o, gate, up, down)
    for m in decoder_linears:
        assert isinstance(m, bnb.nn.Linear4bit)
        assert m.weight.quant_type == "nf4" and m.weight.bnb_quantized
    assert not isinstance(model.lm_head, bnb.nn.Linear4bit)
    assert model.is_loaded_in_4bit
    # No forward here: bitsandbytes' CPU 4-bit kernel needs output widths divisible by its
    # block size, which the tiny shape's 8-wide k/v projections are not; the 8B shape runs
    # forward and backward in tests/test_gpu.py.
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)


def deep_narrow_config(vocab_size: int):
    """32 layers like Llama 3.1 8B, at a width a CPU trains in seconds (hidden 256): deep
    enough for a gradient amplified once per layer to overflow float32."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=32,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
    )


def pad_opens_the_prompt_tokenizer():
    """The bundled tokenizer as some transformers versions convert it: the pad token is
    <|im_start|>, the first token of every chat prompt."""
    tokenizer = load_tokenizer("smollm2-135m-instruct")
    tokenizer.pad_token = "<|im_start|>"
    return tokenizer


def first_step_gradients(model, tokenizer) -> list[torch.Tensor]:
    """The LoRA gradients of one generative training step on four real-length statements."""
    from noshow.config import RunConfig
    from noshow.modeling.approaches import get_approach
    from noshow.modeling.batching import make_batch
    from noshow.modeling.lora import attach_lora

    spec = get_approach("generative")
    model, _ = attach_lora(model, RunConfig(), spec)
    cpu = torch.device("cpu")
    bound = spec.bind(model, tokenizer, max_length=256, device=cpu)
    statements = [
        "A 62-year-old woman has an appointment on a Friday, booked 12 days ahead. She has "
        "hypertension and received an SMS reminder.",
        "A 9-year-old boy has an appointment on the same day it was booked.",
    ] * 2
    enc = bound.encode(statements, [0, 1, 1, 0], [0, 1, 2, 3], train=True)
    assert enc.input_ids[0][0] == tokenizer.pad_token_id  # the prompt opens with the pad token
    batch = make_batch(enc, np.arange(4), bound.pad_id, cpu, np.full(4, 0.25, np.float32))
    bound.batch_loss(model, batch).backward()
    return [p.grad for p in model.parameters() if p.requires_grad]


def test_no_embedding_row_is_zeroed_for_the_pad_token():
    tokenizer = pad_opens_the_prompt_tokenizer()
    model = build_random_llama_in_memory(
        "tiny", get_approach("generative"), "none", torch.device("cpu"), tokenizer
    )
    rows = model.get_input_embeddings().weight
    assert rows[tokenizer.pad_token_id].abs().sum() > 0
    assert model.config.pad_token_id == tokenizer.pad_token_id  # set, after the weights


def test_a_32_layer_random_llama_whose_pad_opens_the_prompt_trains_with_finite_gradients():
    tokenizer = pad_opens_the_prompt_tokenizer()
    config = deep_narrow_config(len(tokenizer))
    model = build_random_llama_in_memory(
        config, get_approach("generative"), "none", torch.device("cpu"), tokenizer
    )
    grads = first_step_gradients(model, tokenizer)
    assert all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_a_zeroed_pad_row_at_the_prompt_start_overflows_the_backward_of_32_layers():
    """The cause, shown: transformers' initialisation zeroes the row of `pad_token_id`; with
    <|im_start|> as the pad, position 0 stays exactly zero through every layer, and
    RMSNorm's backward there multiplies the gradient by 1/sqrt(eps) per layer."""
    from transformers import LlamaForCausalLM

    tokenizer = pad_opens_the_prompt_tokenizer()
    config = deep_narrow_config(len(tokenizer))
    config.pad_token_id = tokenizer.pad_token_id  # set before the weights: the row is zeroed
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    assert model.get_input_embeddings().weight[tokenizer.pad_token_id].abs().sum() == 0
    grads = first_step_gradients(model, tokenizer)
    assert not all(torch.isfinite(g).all() for g in grads)


def test_draw_random_llama_leaves_the_callers_random_state_alone():
    from transformers import LlamaForCausalLM

    from noshow.modeling.random_models import random_llama_config

    tokenizer = load_tokenizer("smollm2-135m-instruct")
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    draw_random_llama(LlamaForCausalLM, random_llama_config(len(tokenizer)), tokenizer, seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_the_random_8b_preset_is_a_model_every_entry_point_takes():
    """`llama-3.1-8b-random` resolves to the bundled tokenizer's folder and counts 8B
    parameters, so the recipe, the preflight and the CLI take it like any preset."""
    from noshow.modeling.presets import PRESETS, local_folder, parameter_count, resolve

    preset = PRESETS["llama-3.1-8b-random"]
    assert preset.random_shape == "8b" and not preset.gated
    assert resolve(preset.name) == resolve("smollm2-135m-instruct")
    assert local_folder(preset.name) == local_folder("smollm2-135m-instruct")
    assert parameter_count(preset.name) == preset.parameters


def test_load_base_draws_a_random_preset_in_memory(monkeypatch):
    """load_base builds the preset's shape with random weights (the 8B shape is swapped for
    the tiny one here: 8B does not fit a CI machine)."""
    import noshow.modeling.models as models

    calls = []

    def tiny_instead(shape, approach, quantize, device, tokenizer, seed=0):
        calls.append((shape, approach.name, quantize))
        return build_random_llama_in_memory("tiny", approach, quantize, device, tokenizer, seed)

    monkeypatch.setattr(models, "build_random_llama_in_memory", tiny_instead)
    model, tokenizer = models.load_base(
        "llama-3.1-8b-random", get_approach("classifier"), quantize="none", device="cpu"
    )
    assert calls == [("8b", "classifier", "none")]
    assert model.config.pad_token_id == tokenizer.pad_token_id  # the head pools by it
    assert model.config.num_labels == 2
