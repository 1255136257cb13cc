"""NOSHOW_CHECK_FINITE=1 (noshow/training/finite.py): a non-finite gradient stops the run at
its first step, naming the first module in backward order whose output gradient was not
finite and the weights whose gradients are not."""

from __future__ import annotations

import numpy as np
import torch

from noshow.config import DataConfig, LoraSettings, RunConfig, TrainConfig
from noshow.training.finite import GradientWatch, check_finite_requested, describe_non_finite


class Sqrt(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(x)  # finite at 0, its derivative is not


def toy_model() -> torch.nn.Sequential:
    """first -> root -> last: `first` outputs zeros, so the backward first turns non-finite
    at first's output (d sqrt/dx at 0 is inf), not at root's or last's."""
    model = torch.nn.Sequential()
    model.add_module("first", torch.nn.Linear(2, 2))
    model.add_module("root", Sqrt())
    model.add_module("last", torch.nn.Linear(2, 1))
    with torch.no_grad():
        model.first.weight.zero_()
        model.first.bias.zero_()
    return model


def test_the_watch_names_the_first_module_in_backward_order_with_a_non_finite_gradient():
    model = toy_model()
    watch = GradientWatch(model)
    model(torch.ones(3, 2)).sum().backward()
    assert watch.first_bad == "first"
    message = describe_non_finite(
        1, torch.tensor(0.5), ["first.weight", "last.weight"],
        [model.first.weight, model.last.weight], watch,
    )  # fmt: skip
    assert "first module in backward order with a non-finite output gradient: first" in message
    assert "non-finite gradients in 1 weights, first ['first.weight']" in message
    watch.close()


def test_the_watch_stays_quiet_when_every_gradient_is_finite():
    model = toy_model()
    with torch.no_grad():
        model.first.bias.fill_(1.0)  # sqrt(1): finite derivative
    watch = GradientWatch(model)
    model(torch.ones(3, 2)).sum().backward()
    assert watch.first_bad is None
    params = list(model.parameters())
    assert describe_non_finite(1, torch.tensor(0.5), ["w"] * 4, params, watch) is None


def test_the_switch_is_read_when_asked_not_at_import(monkeypatch):
    monkeypatch.delenv("NOSHOW_CHECK_FINITE", raising=False)
    assert not check_finite_requested()
    monkeypatch.setenv("NOSHOW_CHECK_FINITE", "1")
    assert check_finite_requested()
    monkeypatch.setenv("NOSHOW_CHECK_FINITE", "0")
    assert not check_finite_requested()


def test_a_run_with_the_check_stops_at_step_1_and_names_the_module(monkeypatch, tmp_path):
    """The loop with the switch on, on a model whose first step gives NaN gradients (a
    32-layer Llama with a zeroed row for the token that opens every prompt: see
    tests/test_random_models.py)."""
    from test_random_models import deep_narrow_config
    from transformers import LlamaForCausalLM

    from noshow.modeling.approaches import get_approach
    from noshow.modeling.lora import attach_lora
    from noshow.modeling.models import load_tokenizer
    from noshow.training.loop import fit
    from noshow.training.session import TrainingSession

    monkeypatch.setenv("NOSHOW_CHECK_FINITE", "1")
    monkeypatch.setenv("NOSHOW_LABELS_DB", str(tmp_path / "labels.sqlite"))
    tokenizer = load_tokenizer("smollm2-135m-instruct")
    tokenizer.pad_token = "<|im_start|>"
    config = deep_narrow_config(len(tokenizer))
    config.pad_token_id = tokenizer.pad_token_id  # zeroes the row at position 0
    torch.manual_seed(0)
    spec = get_approach("generative")
    run = RunConfig(
        data=DataConfig(max_train_rows=8),
        lora=LoraSettings(r=4, alpha=8, dropout=0.0),
        train=TrainConfig(max_steps=3, batch_size=4, output_dir=str(tmp_path / "runs")),
    )
    model, _ = attach_lora(LlamaForCausalLM(config), run, spec)
    cpu = torch.device("cpu")
    bound = spec.bind(model, tokenizer, max_length=256, device=cpu)
    statements = ["A 30-year-old woman has an appointment on a Monday."] * 4
    enc = bound.encode(statements, np.array([0, 1, 0, 1]), np.arange(4), train=True)
    session = TrainingSession(run, None, None, None)
    with session:
        fit(session, model, enc, bound, None, cpu)
    assert session.state == "failed"
    assert "Step 1:" in session.error
    assert "first module in backward order with a non-finite output gradient" in session.error
    assert "layers." in session.error  # a decoder module, named
    log = (session.run_dir / "train.log").read_text()
    assert "NOSHOW_CHECK_FINITE" in log
