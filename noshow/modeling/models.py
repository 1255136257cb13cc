"""Loading a base model for either approach: its tokenizer (with a pad token), the
quantization decided once (`choose_quantization`), the weights (`load_base`; the random-weight
preset is drawn in memory), and what was loaded (`describe_model`).

    from noshow.modeling.approaches import GENERATIVE
    from noshow.modeling.models import load_base, answer_token_ids
    model, tokenizer = load_base("smollm2-135m-instruct", GENERATIVE, quantize="none")
    no_id, yes_id = answer_token_ids(tokenizer)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch

from noshow.config import Quantize
from noshow.modeling.presets import PRESETS, ModelError, resolve
from noshow.modeling.random_models import build_random_llama_in_memory
from noshow.system.devices import bitsandbytes_ok, pick_device
from noshow.system.quiet import quiet_transformers


def answer_token_ids(tokenizer: Any) -> tuple[int, int]:
    """(no_id, yes_id): the single tokens "No" and "Yes"; ModelError when either splits."""
    ids = {}
    for word in ("No", "Yes"):
        encoded = tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(encoded) != 1:
            name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
            raise ModelError(
                f"{word!r} is {len(encoded)} tokens for the tokenizer of {name}, but the generative "
                "approach scores a single Yes/No token: use the classifier approach with this model."
            )
        ids[word] = encoded[0]
    return ids["No"], ids["Yes"]


def load_tokenizer(name: str | Path, padding_side: Literal["left", "right"] = "right") -> Any:
    """The model's tokenizer with a pad token and the requested padding side."""
    from transformers import AutoTokenizer

    if padding_side not in ("left", "right"):
        raise ModelError(f"padding_side must be 'left' or 'right', got {padding_side!r}.")
    folder = resolve(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as e:
        raise ModelError(f"Could not load a tokenizer from {folder}: {e}") from e
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # Llama ships without a pad token
    tokenizer.padding_side = padding_side
    return tokenizer


def choose_quantization(
    quantize: Quantize, device: torch.device, model: str | Path | None = None
) -> Literal["4bit", "none"]:
    """Settle "auto", once for everyone: 4-bit (QLoRA) on CUDA when bitsandbytes works, for
    every model size (measured on an H200 with CUDA graphs, the 135M model's 4-bit base
    trained 15% faster than its bf16 base and used less memory; BENCHMARKS.md), else an
    unquantized base. `model` is accepted for callers that know it; the rule needs no size."""
    del model
    if quantize not in ("auto", "4bit", "none"):
        raise ModelError(f"quantize must be 'auto', '4bit' or 'none', got {quantize!r}.")
    if quantize == "auto":
        return "4bit" if device.type == "cuda" and bitsandbytes_ok() else "none"
    if quantize == "4bit" and not bitsandbytes_ok():
        raise ModelError(
            "quantize='4bit' needs bitsandbytes: `pip install bitsandbytes==0.50.2`, "
            "or use quantize='none'."
        )
    return quantize


def scoring_quantization(trained: str | None, device: torch.device) -> Literal["4bit", "none"]:
    """How to load the base of an adapter for scoring: 4-bit on CUDA when it was trained on
    a 4-bit base ("auto" in adapters of older versions meant that), else unquantized (the
    CPU predictor rounds the base through NF4 instead, see noshow.inference.cpu.weights)."""
    if device.type == "cuda" and trained in ("4bit", "auto"):
        return choose_quantization("4bit", device)
    return "none"


def load_base(
    name: str | Path,
    approach: Any,
    quantize: Quantize = "auto",
    device: str | torch.device | None = None,
) -> tuple[Any, Any]:
    """(model, tokenizer) for `approach` (an object from `noshow.modeling.approaches`): a causal LM,
    or a 2-label sequence classifier.

    quantize: "4bit" = NF4 with double quantization and bf16 compute (QLoRA; bitsandbytes
    also runs it on the CPU, slowly); "none" = bf16 on CUDA, float32 on the CPU; "auto" =
    see `choose_quantization`.
    """
    from transformers import BitsAndBytesConfig

    dev = pick_device(device)
    mode = choose_quantization(quantize, dev, name)
    folder = resolve(name)
    tokenizer = load_tokenizer(folder)
    approach.check_tokenizer(tokenizer)  # fail before spending minutes loading weights
    preset = PRESETS.get(str(name).strip())
    if preset is not None and preset.random_shape:
        model = build_random_llama_in_memory(preset.random_shape, approach, mode, dev, tokenizer)
        approach.prepare_base(model, tokenizer)
        return model, tokenizer

    # transformers 5 renamed `torch_dtype` to `dtype` (the old name still works, with a warning).
    kwargs: dict[str, Any] = {"device_map": {"": str(dev)}, **approach.load_kwargs()}
    if mode == "4bit":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        kwargs["dtype"] = torch.bfloat16
    else:
        # CPUs without bf16 units run fp32 matmuls faster than emulated bf16.
        kwargs["dtype"] = torch.bfloat16 if dev.type == "cuda" else torch.float32
    try:
        with quiet_transformers():
            model = approach.model_class().from_pretrained(folder, **kwargs)
    except (OSError, ValueError, RuntimeError) as e:
        hint = (
            " (CUDA out of memory: try quantize='4bit' or a smaller model)"
            if "out of memory" in str(e)
            else ""
        )
        raise ModelError(
            f"Could not load {name} from {folder} as a {approach.name} model{hint}: {e}"
        ) from e
    approach.prepare_base(model, tokenizer)
    return model, tokenizer


def _count(param: torch.nn.Parameter) -> int:
    # bitsandbytes packs two 4-bit values per byte of storage.
    if hasattr(param, "quant_state"):
        return param.numel() * 2 * param.element_size()
    return param.numel()


def describe_model(model: Any) -> dict[str, Any]:
    """Facts for the UI: parameter counts, dtype, device and quantization."""
    params = list(model.parameters())
    total = sum(_count(p) for p in params)
    trainable = sum(_count(p) for p in params if p.requires_grad)
    floats = [p.dtype for p in params if p.is_floating_point()]
    config = getattr(model, "config", None)
    quant = getattr(config, "quantization_config", None)
    if quant is not None and not isinstance(quant, dict):
        quant = quant.to_dict()
    quantized = bool(quant) and bool(quant.get("load_in_4bit") or quant.get("_load_in_4bit"))
    return {
        "name": getattr(config, "name_or_path", "") or type(model).__name__,
        "architecture": type(model).__name__,
        "parameters_total": total,
        "parameters_trainable": trainable,
        "dtype": str(floats[0]).replace("torch.", "") if floats else "none",
        "device": str(params[0].device) if params else "none",
        "quantized": quantized,
        "quantization": f"4-bit {quant.get('bnb_4bit_quant_type', '')}".strip()
        if quantized
        else "none",
    }
