"""LoRA on a base model in memory: peft adapters on every linear layer by default, the base
frozen, trainable weights in fp32 (optimizer state in fp32; autocast does bf16 matmuls), and
gradient checkpointing only where memory needs it.

    from noshow.modeling.lora import attach_lora
    model, checkpointing = attach_lora(base, config, approach)
"""

from __future__ import annotations

import random

import numpy as np
import torch

from noshow.config import ConfigError, RunConfig


def attach_lora(base: torch.nn.Module, config: RunConfig, approach) -> tuple[torch.nn.Module, bool]:
    """(peft model, gradient checkpointing on?) for `approach` (its task type and extra
    modules to train, e.g. the classifier's score head)."""
    from peft import LoraConfig, get_peft_model

    lc = config.lora
    peft_config = LoraConfig(
        r=lc.r,
        lora_alpha=lc.alpha,
        lora_dropout=lc.dropout,
        target_modules=lc.target_modules,
        task_type=approach.task_type,
        bias="none",
        **approach.lora_extra(),
    )
    try:
        model = get_peft_model(base, peft_config)
    except ValueError as e:  # e.g. a target module the model does not have
        raise ConfigError(f"LoRA could not be attached: {e}") from e
    for p in model.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
    return model, use_gradient_checkpointing(model, config)


def use_gradient_checkpointing(model: torch.nn.Module, config: RunConfig) -> bool:
    """Checkpointing trades ~30% more compute for memory: worth it only for big models."""
    mode = config.train.gradient_checkpointing
    n_params = sum(p.numel() for p in model.parameters())
    # 4-bit params count as packed pairs; 1.5e9 packed ~ a 3B model
    on = mode == "on" or (mode == "auto" and n_params > 1.5e9)
    if on:
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:  # transformers before activation_checkpointing_* (GPU images may lag the pin)
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    return on


def checkpointing_on(model: torch.nn.Module) -> bool:
    """Whether activation (gradient) checkpointing is on for `model`."""
    return any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules())


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every trainable weight (checkpoints, tests of what moved)."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
