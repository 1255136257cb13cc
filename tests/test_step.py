"""The training step's pieces on the CPU: the fixed-shape batch loss equals the masked
reference loss (padding, filler rows, class weights, micro-batches), the flat gradient buffer
clips like torch's clip_grad_norm_, the engine choice, and the compiled engine (torch.compile
runs on a CPU too) against eager: same loss and gradients, batched == single scores, and a
saved adapter reloads to identical predictions. CUDA graphs themselves need a GPU
(tests/test_gpu.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from noshow.config import LoraSettings, RunConfig, TrainConfig
from noshow.modeling.approaches import get_approach
from noshow.modeling.batching import class_row_weights, make_batch
from noshow.training.step import FlatGrads, StepRunner, choose_engine, compile_layers

CPU = torch.device("cpu")
STATEMENTS = [
    "A 30-year-old woman booked 5 days ahead.",
    "A man of 71 booked the same day, no SMS.",
    "A 9-year-old boy with a scholarship booked 40 days ahead for a Monday.",
    "A 52-year-old woman with hypertension and diabetes booked 12 days ahead.",
    "x",
]
LABELS = np.array([1, 0, 1, 0, 0])


def _setup(tiny_model_dir, approach: str, class_weighting: bool = False):
    from noshow.modeling.lora import attach_lora, set_seed
    from noshow.modeling.models import load_base

    spec = get_approach(approach)
    config = RunConfig(
        lora=LoraSettings(r=4, alpha=8, dropout=0.0),
        train=TrainConfig(approach=approach, model=str(tiny_model_dir), quantize="none"),
    )
    set_seed(0)
    base, tok = load_base(tiny_model_dir, spec, "none", device=CPU)
    model, _ = attach_lora(base, config, spec)
    with torch.no_grad():  # give the zero-initialised LoRA B something to pass gradients
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    bound = spec.bind(
        model, tok, max_length=256, device=CPU, class_weight=2.5 if class_weighting else None
    )
    enc = bound.encode(STATEMENTS, LABELS, np.arange(len(STATEMENTS)), train=True)
    return model, bound, enc


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("approach", ["generative", "classifier"])
def test_fixed_shape_batch_loss_equals_the_masked_reference_loss(tiny_model_dir, approach):
    """Right padding without a mask, a length bucket and a zero-weight filler row change
    nothing: the step's loss is the class-weighted mean of the masked reference."""
    model, bound, enc = _setup(tiny_model_dir, approach, class_weighting=True)
    idx = np.array([0, 1, 2, 3])
    reference, _ = bound.loss(model, enc, idx, CPU)
    weights = bound.row_weights(enc.labels[idx])
    batch = make_batch(enc, idx, bound.pad_id, CPU, weights / weights.sum(), rows=6, multiple=16)
    assert batch.shape[0] == 6 and batch.shape[1] % 16 == 0
    assert batch.weight[4:].tolist() == [0.0, 0.0]
    torch.testing.assert_close(bound.batch_loss(model, batch), reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("approach", ["generative", "classifier"])
def test_micro_batches_add_up_to_the_whole_step_gradient(tiny_model_dir, approach):
    model, bound, enc = _setup(tiny_model_dir, approach, class_weighting=True)
    idx = np.arange(5)
    w = bound.row_weights(enc.labels[idx])
    w = w / w.sum()
    bound.batch_loss(model, make_batch(enc, idx, bound.pad_id, CPU, w)).backward()
    whole = _grads(model)
    model.zero_grad(set_to_none=True)
    for part in (slice(0, 2), slice(2, 5)):
        batch = make_batch(enc, idx[part], bound.pad_id, CPU, w[part], rows=3, multiple=16)
        bound.batch_loss(model, batch).backward()
    for name, g in _grads(model).items():
        torch.testing.assert_close(g, whole[name], atol=1e-6, rtol=1e-4)


def test_class_row_weights_weigh_only_no_shows():
    assert class_row_weights(np.array([1, 0, 1]), 3.0).tolist() == [3.0, 1.0, 3.0]
    assert class_row_weights(np.array([1, 0]), None).tolist() == [1.0, 1.0]


def test_flat_grads_are_views_that_zero_and_clip_like_torch():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))
    params = list(net.parameters())
    grads = FlatGrads(params, extra_slots=2)
    assert grads.buffer.numel() == sum(p.numel() for p in params) + 2
    (net(torch.randn(16, 4)).pow(2).sum() * 50).backward()
    grads.check()  # backward added into the views, it did not replace them
    twin = [torch.nn.Parameter(p.detach().clone()) for p in params]
    for t, p in zip(twin, params, strict=True):
        t.grad = p.grad.clone()
    ref_norm = torch.nn.utils.clip_grad_norm_(twin, max_norm=1.0)
    assert ref_norm > 1.0  # so clipping really scales
    norm = grads.clip_(1.0)
    torch.testing.assert_close(norm, ref_norm)
    for p, t in zip(params, twin, strict=True):
        torch.testing.assert_close(p.grad, t.grad)
    assert grads.extras.tolist() == [0.0, 0.0]
    grads.zero()
    assert all(float(p.grad.abs().sum()) == 0 for p in params)


def test_engine_choice_is_eager_on_the_cpu_and_never_graphs_with_checkpointing():
    cuda = torch.device("cuda")
    assert choose_engine("auto", CPU, False) == "eager"
    assert choose_engine("cuda-graphs", CPU, False) == "eager"
    assert choose_engine("auto", cuda, False) == "cuda-graphs"
    assert choose_engine("auto", cuda, True) == "compile"
    assert choose_engine("compile+cuda-graphs", cuda, True) == "compile"
    assert choose_engine("cuda-graphs", cuda, True) == "eager"
    with pytest.raises(ValueError, match="engine must be one of"):
        choose_engine("warp", CPU, False)


@pytest.mark.parametrize("approach", ["generative", "classifier"])
def test_compiled_step_gives_the_eager_loss_and_gradients(tiny_model_dir, approach):
    model, bound, enc = _setup(tiny_model_dir, approach)
    idx = np.arange(4)
    w = np.full(4, 0.25, dtype=np.float32)
    batch = make_batch(enc, idx, bound.pad_id, CPU, w, rows=4, multiple=16)
    params = [p for p in model.parameters() if p.requires_grad]
    grads = FlatGrads(params)
    eager_loss = StepRunner(model, bound.batch_loss, "eager", grads)(batch)
    eager = grads.grads.clone()
    grads.zero()
    compiled = StepRunner(model, bound.batch_loss, "compile", grads)
    compiled_loss = compiled(batch)
    assert compiled.engine == "compile"  # it did not fall back
    torch.testing.assert_close(compiled_loss, eager_loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grads.grads, eager, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("approach", ["generative", "classifier"])
def test_compiled_scoring_batched_equals_single_and_reloads_identically(
    tiny_model_dir, tmp_path, approach
):
    from peft import PeftModel

    from noshow.modeling.lora import set_seed
    from noshow.modeling.models import load_base

    model, bound, _ = _setup(tiny_model_dir, approach)
    enc = bound.encode(STATEMENTS, LABELS, np.arange(5), train=False)
    model.eval()
    eager = bound.score(enc)
    compile_layers(model)
    batched = bound.score(enc)
    singles = np.array(
        [bound.score(bound.encode([s], [0], [0], train=False))[0] for s in STATEMENTS]
    )
    np.testing.assert_allclose(batched, eager, atol=1e-5)
    np.testing.assert_allclose(singles, batched, atol=1e-5)

    model.save_pretrained(tmp_path / "adapter")
    set_seed(1)  # a different random head init must not matter: the adapter carries it
    spec = get_approach(approach)
    base, tok = load_base(tiny_model_dir, spec, "none", device=CPU)
    again = PeftModel.from_pretrained(base, str(tmp_path / "adapter")).eval()
    compile_layers(again)
    reloaded = spec.bind(again, tok, max_length=256, device=CPU).score(enc)
    np.testing.assert_allclose(reloaded, batched, atol=1e-6)
