"""Where a NaN starts: with `NOSHOW_CHECK_FINITE=1` the loop stops at the first step whose
gradients are not finite and names (a) the first module, in backward order, whose output
gradient was not finite (where the backward first went wrong) and (b) the trainable weights
whose gradients are not finite. For a new model or shape; it costs a host read per module
and step, and the step runs eagerly (a CUDA graph cannot stop to look).

    watch = GradientWatch(model)        # hooks every module's outputs
    loss.backward()
    watch.first_bad                     # "model.layers.17.input_layernorm" or None
    watch.close()

`torch.autograd.detect_anomaly()` names the backward *operation* that first produced a NaN
(slower still); this names the module, which is what a reader of the model code needs.
"""

from __future__ import annotations

import os

import torch


def check_finite_requested() -> bool:
    """True when NOSHOW_CHECK_FINITE asks for the check (read when a run starts)."""
    return os.environ.get("NOSHOW_CHECK_FINITE", "") not in ("", "0")


class GradientWatch:
    """Records the first module, in backward order, whose output gradient is not finite."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.first_bad: str | None = None
        self._handles = [
            module.register_forward_hook(self._on_forward(name))
            for name, module in model.named_modules()
            if name  # the model itself: its output is the loss's input, seen by the loss
        ]

    def _on_forward(self, name: str):
        def hook(module, inputs, output):
            for tensor in _tensors(output):
                if tensor.requires_grad:
                    tensor.register_hook(self._on_gradient(name))

        return hook

    def _on_gradient(self, name: str):
        def hook(grad: torch.Tensor) -> None:
            if self.first_bad is None and not torch.isfinite(grad).all():
                self.first_bad = name

        return hook

    def reset(self) -> None:
        self.first_bad = None

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def _tensors(output) -> list[torch.Tensor]:
    """The tensors of a module's output (a tensor, a tuple/list, or a ModelOutput)."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        return [t for t in output if isinstance(t, torch.Tensor)]
    return []


def describe_non_finite(step: int, loss: torch.Tensor, names, params, watch) -> str | None:
    """The message for a step whose loss or gradients are not finite; None when all are."""
    bad = [n for n, p in zip(names, params, strict=True) if not torch.isfinite(p.grad).all()]
    if not bad and torch.isfinite(loss).all():
        return None
    where = (
        f"the first module in backward order with a non-finite output gradient: {watch.first_bad}; "
        if watch is not None and watch.first_bad
        else ""
    )
    return (
        f"Step {step}: loss {float(loss):.4g}; {where}non-finite gradients in {len(bad)} "
        f"weights, first {bad[:4]}"
    )
