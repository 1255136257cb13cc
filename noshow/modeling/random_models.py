"""Llamas with random weights: the tiny model the tests train (2 layers, hidden 16), and the
Llama-3.1-8B shape the benchmarks time without a download (built straight on the device,
4-bit NF4 when asked). Both take their token ids from a real tokenizer, so "Yes"/"No" are
real single tokens.

    from noshow.modeling.random_models import build_random_llama, build_random_llama_in_memory
    folder = build_random_llama(tmp_path / "tiny", tokenizer)  # saved, loads like a hub model
    model = build_random_llama_in_memory("8b", GENERATIVE, "4bit", device, tokenizer)

A stand-in for pretrained weights has no zeroed embedding row. transformers' initialisation
zeroes the row of `config.pad_token_id`; when the pad token also opens every chat prompt
(`<|im_start|>` was the pad of the bundled tokenizer as some transformers versions convert
it), position 0 then carries an exactly-zero residual stream through every layer, and
RMSNorm's backward at a zero input multiplies the gradient by 1/sqrt(eps) (~316) once per
layer: 32 layers overflow float32 and every LoRA gradient comes out NaN at step 1. So the
pad id is set only after the weights are drawn, as in a loaded checkpoint.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch

from noshow.modeling.presets import BUNDLED_VOCAB_SIZE, ModelError

SHAPES = ("tiny", "8b")


def random_llama_config(vocab_size: int | None = None) -> Any:
    """The tiny test Llama's config: 2 layers, hidden 16, the bundled vocabulary."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size or BUNDLED_VOCAB_SIZE,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        tie_word_embeddings=True,
    )


def llama_8b_config() -> Any:
    """Llama 3.1 8B's shape (16 GB in bf16)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=128_256,
        hidden_size=4096,
        intermediate_size=14_336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=131_072,
        rms_norm_eps=1e-5,
        rope_theta=500_000.0,
        tie_word_embeddings=False,
    )


def draw_random_llama(model_class, config, tokenizer, *, seed: int, dtype=None, device=None):
    """`model_class(config)` with random weights drawn from a private RNG stream (building a
    model leaves the caller's seeding alone), the tokenizer's special ids set afterwards so
    that no embedding row is zeroed (see the module docstring)."""
    config.pad_token_id = None
    gpus = [torch.cuda.current_device()] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=gpus):
        torch.manual_seed(seed)  # seeds the CUDA generators too
        with torch.device(device or "cpu"):
            model = model_class._from_config(config, dtype=dtype) if dtype else model_class(config)
    for holder in (model.config, getattr(model, "generation_config", None)):
        if holder is not None:  # a classifier has no generation config
            holder.pad_token_id = tokenizer.pad_token_id
    model.config.eos_token_id = tokenizer.eos_token_id
    model.config.bos_token_id = tokenizer.bos_token_id
    return model


def build_random_llama(folder: str | Path, tokenizer, seed: int = 0) -> Path:
    """Save a randomly initialised tiny Llama + `tokenizer` (a real one, e.g. the bundled
    model's) into `folder` (empty or new), for tests."""
    from transformers import LlamaForCausalLM

    target = Path(folder).expanduser()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ModelError(f"{target} is not an empty folder: choose a new or empty folder.")
    config = random_llama_config(vocab_size=len(tokenizer))
    config.architectures = ["LlamaForCausalLM"]
    model = draw_random_llama(LlamaForCausalLM, config, tokenizer, seed=seed)

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.parent / f".{target.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        os.replace(partial, target)  # rename(2) may replace an empty folder
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return target


def build_random_llama_in_memory(
    shape: str | Any, approach, quantize: str, device, tokenizer, seed: int = 0
):
    """A Llama of `shape` ("8b", "tiny" or a LlamaConfig) with random weights, built directly
    on `device` (bf16 on CUDA or when 4-bit, fp32 on the CPU, like `load_base`), 4-bit NF4
    when asked. "tiny" sizes its vocabulary to `tokenizer`; "8b" keeps Llama 3.1's 128,256
    rows (the seed pays for the head over every token, so its width matters). `approach` is
    an object from `noshow.modeling.approaches` (its model class and load settings)."""
    from transformers import LlamaForCausalLM, LlamaForSequenceClassification

    if isinstance(shape, str):
        if shape not in SHAPES:
            raise ModelError(f"shape must be one of {', '.join(SHAPES)}, got {shape!r}.")
        config = llama_8b_config() if shape == "8b" else random_llama_config(len(tokenizer))
    else:
        config = shape
    if len(tokenizer) > config.vocab_size:
        raise ModelError(
            f"The tokenizer has {len(tokenizer)} tokens, more than the model's {config.vocab_size}."
        )
    for key, value in approach.load_kwargs().items():
        setattr(config, key, value)
    causal = approach.task_type == "CAUSAL_LM"
    model_class = LlamaForCausalLM if causal else LlamaForSequenceClassification
    dtype = torch.bfloat16 if (device.type == "cuda" or quantize == "4bit") else torch.float32
    model = draw_random_llama(model_class, config, tokenizer, seed=seed, dtype=dtype, device=device)
    if quantize == "4bit":
        from transformers.utils.quantization_config import QuantizationMethod

        quantize_decoder_linears(model, compute_dtype=torch.bfloat16)
        # The flags a `from_pretrained(quantization_config=...)` model carries: peft picks its
        # 4-bit LoRA layers and prepare_model_for_kbit_training by them, and the Trainer
        # leaves the model where it is.
        model.is_loaded_in_4bit = True
        model.quantization_method = QuantizationMethod.BITS_AND_BYTES
    model.eval()
    return model


def quantize_decoder_linears(model, compute_dtype) -> int:
    """Swap every nn.Linear inside the decoder layers for a bitsandbytes NF4 `Linear4bit`
    (double quantization, as `load_base` asks transformers for), quantizing on the weight's
    own device and dropping each bf16 weight as soon as its 4-bit copy exists, so peak
    memory stays near the bf16 model's. Heads (lm_head, score) stay unquantized, as
    transformers leaves them. Returns the number of layers swapped."""
    import bitsandbytes as bnb

    swapped = 0
    for layer in model.model.layers:  # LlamaForCausalLM and LlamaForSequenceClassification
        names = [
            n
            for n, m in layer.named_modules()
            if isinstance(m, torch.nn.Linear) and not isinstance(m, bnb.nn.Linear4bit)
        ]
        for name in names:
            parent_name, _, attr = name.rpartition(".")
            parent = layer.get_submodule(parent_name) if parent_name else layer
            linear = getattr(parent, attr)
            q = bnb.nn.Linear4bit(
                linear.in_features,
                linear.out_features,
                bias=linear.bias is not None,
                compute_dtype=compute_dtype,
                compress_statistics=True,
                quant_type="nf4",
                quant_storage=torch.uint8,
                device="meta",  # no throw-away allocation: the real weight comes next
            )
            weight = linear.weight.data
            q.weight = bnb.nn.Params4bit(
                weight,
                requires_grad=False,
                compress_statistics=True,
                quant_type="nf4",
                quant_storage=torch.uint8,
                module=q,
            ).to(weight.device)  # .to() quantizes
            if linear.bias is not None:
                q.bias = torch.nn.Parameter(linear.bias.data, requires_grad=False)
            setattr(parent, attr, q)
            del linear, weight
            swapped += 1
    return swapped
