"""CPU inference weights (bf16 linear layers, fp32 activations) and the one-pass Compare
answer: the choice and its errors, the layer swap, and on the real bundled model with the
shipped adapters: P within a few hundredths of exact fp32, batched == single, and the
answer text read from the scoring pass equal to what generate() says."""

from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import SHIPPED

from noshow.inference.cpu import weights as cpu_weights
from noshow.inference.cpu.weights import (
    Bf16Linear,
    bf16_linears,
    hugepage_arena,
    hugepage_weights,
    transparent_hugepages,
    uses_bf16_linears,
)
from noshow.modeling.approaches import get_approach

REPO = Path(__file__).resolve().parents[1]


def test_bad_env_value_is_a_clear_predict_error(adapters, monkeypatch):
    from noshow.inference.predict import PredictError, load_predictor

    monkeypatch.setenv("NOSHOW_CPU_ENGINE", "fast-please")
    with pytest.raises(PredictError, match="NOSHOW_CPU_ENGINE='fast-please'"):
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
    from noshow.inference.predict import load_predictor

    statements = [f"A {20 + i}-year-old patient booked {i * 3} days ahead." for i in range(6)]
    exact = load_predictor(getattr(adapters, approach), device="cpu", cpu_weights="float32")
    fast = load_predictor(getattr(adapters, approach), device="cpu", cpu_weights="bfloat16")
    assert exact.weights.startswith("float32") and fast.weights.startswith("bf16 linears")
    assert fast_form(exact).dtype == torch.float32 and fast_form(fast).dtype == torch.bfloat16
    batched = np.array(fast.predict_proba(statements))
    single = np.array([fast.predict_proba([s])[0] for s in statements])
    assert np.allclose(batched, single, atol=1e-3)
    assert np.abs(batched - np.array(exact.predict_proba(statements))).max() < 0.05


def fast_form(predictor):
    """The form of the products the predictor's lean forward runs."""
    from noshow.inference.cpu.forward import FUSED_ATTR

    return getattr(predictor.model.get_decoder(), FUSED_ATTR).matmuls


def test_answer_logits_are_the_full_heads_no_yes_rows(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from noshow.modeling.approaches.generative import answer_logits, build_prompt_layout
    from noshow.modeling.models import load_tokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    layout = build_prompt_layout(load_tokenizer(tiny_model_dir))
    hidden = torch.randn(4, model.config.hidden_size)
    head = model.get_output_embeddings()
    full = head(hidden)[:, [layout.no_id, layout.yes_id]]
    assert torch.allclose(answer_logits(head, hidden, layout), full, atol=1e-5)


# ----------------------------------------------------------------------------- huge pages

THP_USABLE = hasattr(mmap, "MADV_HUGEPAGE") and transparent_hugepages() in ("always", "madvise")
needs_thp = pytest.mark.skipif(
    not THP_USABLE,
    reason=f"transparent huge pages are {transparent_hugepages()!r} here (or no MADV_HUGEPAGE)",
)
STATEMENTS = [
    f"A {30 + 7 * i}-year-old {'woman' if i % 2 else 'man'} booked {i * 5} days ahead; "
    f"{'an SMS reminder was sent' if i % 3 else 'no reminder'}."
    for i in range(6)
]


def arena_span(module) -> tuple[int, int]:
    arena = hugepage_arena(module)
    start = torch.frombuffer(arena, dtype=torch.uint8).data_ptr()
    return start, start + len(arena)


def anon_huge_bytes(start: int, end: int) -> int:
    """AnonHugePages of the mappings in /proc/self/smaps that overlap [start, end)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and not head.endswith(":"):  # a mapping's header: lo-hi perms ...
            lo, hi = (int(x, 16) for x in head.split("-"))
            inside = lo < end and start < hi
        elif inside and head == "AnonHugePages:":
            total += int(line.split()[1]) * 1024
    return total


def tiny_causal_lm(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


def test_thp_mode_is_the_bracketed_word(tmp_path, monkeypatch):
    sysfs = tmp_path / "enabled"
    sysfs.write_text("always [madvise] never\n")
    monkeypatch.setattr(cpu_weights, "THP_ENABLED", sysfs)
    assert transparent_hugepages() == "madvise"
    sysfs.write_text("[always] madvise never\n")
    assert transparent_hugepages() == "always"
    monkeypatch.setattr(cpu_weights, "THP_ENABLED", tmp_path / "absent")
    assert transparent_hugepages() == "unavailable"


@needs_thp
@pytest.mark.parametrize("bf16", [False, True])
def test_hugepage_weights_move_bit_for_bit_aligned_and_keep_ties(tiny_model_dir, bf16):
    model = tiny_causal_lm(tiny_model_dir)
    if bf16:
        bf16_linears(model.get_decoder())
    ids = torch.arange(5, 29).reshape(2, 12)
    with torch.inference_mode():
        before = model(input_ids=ids).logits
    embed = model.get_input_embeddings().weight
    tied = model.get_output_embeddings().weight is embed
    embed_ptr = embed.data_ptr()
    params = [p for n, p in model.named_parameters() if "embed_tokens" not in n]
    if tied:
        assert all(p is not embed for p in params)
    saved = [p.detach().clone() for p in params]

    moved = hugepage_weights(model)

    assert moved == sum(p.numel() * p.element_size() for p in params) > 0
    start, end = arena_span(model)
    for p, old in zip(params, saved, strict=True):
        assert start <= p.data_ptr() and p.data_ptr() + p.numel() * p.element_size() <= end
        assert p.data_ptr() % 64 == 0
        assert torch.equal(p, old) and p.dtype == old.dtype and p.is_contiguous()
    assert min(p.data_ptr() for p in params) % (2 << 20) == 0  # starts on a huge page
    assert model.get_input_embeddings().weight.data_ptr() == embed_ptr  # only gathered from
    assert (model.get_output_embeddings().weight is model.get_input_embeddings().weight) == tied
    with torch.inference_mode():
        after = model(input_ids=ids).logits
    assert torch.equal(before, after)
    assert hugepage_weights(model) == 0  # once per model
    assert hugepage_arena(model) is not None


def test_hugepage_weights_is_a_no_op_where_it_cannot_help(tiny_model_dir, monkeypatch):
    model = tiny_causal_lm(tiny_model_dir)
    ptrs = [p.data_ptr() for p in model.parameters()]
    monkeypatch.setattr(cpu_weights, "transparent_hugepages", lambda: "never")
    assert hugepage_weights(model) == 0
    monkeypatch.undo()
    monkeypatch.delattr(mmap, "MADV_HUGEPAGE", raising=False)  # as on macOS / Windows
    assert hugepage_weights(model) == 0
    monkeypatch.undo()
    monkeypatch.setenv("NOSHOW_HUGEPAGES", "0")
    assert hugepage_weights(model) == 0
    monkeypatch.undo()

    def refused(*args, **kwargs):
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(mmap, "mmap", refused)
    assert hugepage_weights(model) == 0
    assert [p.data_ptr() for p in model.parameters()] == ptrs
    assert hugepage_arena(model) is None


@pytest.mark.parametrize("approach", ["generative", "classifier"])
def test_tiny_predictor_with_huge_pages_scores_bit_for_bit(adapters, approach, monkeypatch):
    from noshow.inference.predict import load_predictor

    path = getattr(adapters, approach)
    monkeypatch.setenv("NOSHOW_HUGEPAGES", "0")
    plain = load_predictor(path, device="cpu", cpu_weights="float32")
    monkeypatch.setenv("NOSHOW_HUGEPAGES", "1")
    fast = load_predictor(path, device="cpu", cpu_weights="float32")
    assert hugepage_arena(plain.model) is None and "huge pages" not in plain.weights
    assert (", huge pages" in fast.weights) == THP_USABLE
    assert fast.weights.startswith("float32") and ", merged" in fast.weights
    assert plain.predict_proba(STATEMENTS) == fast.predict_proba(STATEMENTS)


# ----------------------------------------------------------------------------- real model


@pytest.fixture(scope="module")
def real_statements(real_data_path) -> list[str]:
    from noshow.data.load import load_data
    from noshow.data.splits import split_data

    frame = split_data(load_data(real_data_path).frame, "time", seed=0)
    test = frame[frame["split"] == "test"].sample(24, random_state=3)
    return test["statement"].tolist()


@pytest.mark.parametrize("approach", ["generative", "classifier"])
def test_shipped_adapter_bf16_is_within_hundredths_of_fp32(approach, real_statements):
    from noshow.inference.predict import load_predictor

    exact = load_predictor(SHIPPED[approach], device="cpu", cpu_weights="float32")
    fast = load_predictor(SHIPPED[approach], device="cpu", cpu_weights="bfloat16")
    p_exact = np.array(exact.predict_proba(real_statements))
    p_fast = np.array(fast.predict_proba(real_statements))
    # the bar for a faster form: |dP| <= 0.02 against fp32 on real statements
    assert np.abs(p_fast - p_exact).max() <= 0.02
    assert np.corrcoef(p_fast, p_exact)[0, 1] > 0.98
    single = np.array([fast.predict_proba([s])[0] for s in real_statements[:6]])
    assert np.abs(single - p_fast[:6]).max() < 1e-4  # a statement in a batch, as alone


@pytest.mark.parametrize("cpu_weights", ["float32", "bfloat16"])
def test_one_pass_answer_is_what_generate_says_and_p_is_unchanged(cpu_weights, real_statements):
    from noshow.inference.predict import load_predictor

    predictor = load_predictor(SHIPPED["generative"], device="cpu", cpu_weights=cpu_weights)
    for statement in real_statements[:4]:
        p, answer = predictor.predict_with_answer(statement)
        assert answer in ("Yes", "No")
        assert answer == predictor.generate(statement)  # the greedy answer, in full
        assert abs(p - predictor.predict_proba([statement])[0]) < 1e-5
    classifier = load_predictor(SHIPPED["classifier"], device="cpu", cpu_weights=cpu_weights)
    p, answer = classifier.predict_with_answer(real_statements[0])
    assert answer is None and 0.0 < p < 1.0


@pytest.mark.parametrize("cpu_weights_kind", ["float32", "bfloat16"])
@pytest.mark.parametrize("approach", ["generative", "classifier"])
def test_shipped_adapter_in_huge_pages_scores_bit_for_bit(approach, cpu_weights_kind, monkeypatch):
    from noshow.inference.predict import load_predictor

    monkeypatch.setenv("NOSHOW_HUGEPAGES", "off")
    plain = load_predictor(SHIPPED[approach], device="cpu", cpu_weights=cpu_weights_kind)
    monkeypatch.delenv("NOSHOW_HUGEPAGES")
    fast = load_predictor(SHIPPED[approach], device="cpu", cpu_weights=cpu_weights_kind)
    assert "huge pages" not in plain.weights
    assert fast.weights.replace(", huge pages", "") == plain.weights
    assert (", huge pages" in fast.weights) == THP_USABLE
    assert plain.predict_proba(STATEMENTS) == fast.predict_proba(STATEMENTS)
    if approach == "generative":
        assert fast.model.lm_head.weight is fast.model.model.embed_tokens.weight
        assert plain.predict_with_answer(STATEMENTS[0]) == fast.predict_with_answer(STATEMENTS[0])
    if THP_USABLE:
        linears = [
            m.weight for m in fast.model.get_decoder().modules() if hasattr(m, "in_features")
        ]
        start, end = arena_span(fast.model)
        assert len(linears) == 7 * fast.model.config.num_hidden_layers
        assert all(start <= w.data_ptr() < end for w in linears)


@needs_thp
def test_the_kernel_backs_the_weights_with_huge_pages():
    from noshow.inference.predict import load_predictor

    predictor = load_predictor(SHIPPED["classifier"], device="cpu", cpu_weights="float32")
    start, end = arena_span(predictor.model)
    huge = anon_huge_bytes(start, end)
    # most of the ~500 MB of fp32 decoder weights sit in 2 MiB pages
    assert huge >= 0.5 * (end - start)


# ----------------------------------------------------------------------------- NF4 base

GPU_SCORES = REPO / "tests" / "data" / "gpu_scores_shipped.json"


@pytest.mark.parametrize("shape", [(1536, 576), (192, 576), (37, 100)])
def test_nf4_round_matches_bitsandbytes_quantize_dequantize(shape):
    import bitsandbytes.functional as bnb_f

    from noshow.inference.cpu.weights import nf4_round

    torch.manual_seed(0)
    weight = torch.randn(*shape) * 0.03
    packed, state = bnb_f.quantize_4bit(
        weight.to(torch.bfloat16), blocksize=64, compress_statistics=True, quant_type="nf4"
    )
    reference = bnb_f.dequantize_4bit(packed, state).float()
    rounded = nf4_round(weight)
    assert rounded.dtype == weight.dtype and rounded.shape == weight.shape
    # bitsandbytes' C kernel snaps a few absmax values to the neighbouring 8-bit code
    # point; everything else is identical
    assert (rounded != reference).float().mean() < 0.002
    assert (rounded - reference).abs().max() < 0.05 * weight.abs().max()
    assert len(torch.unique(rounded.reshape(-1)[:64])) <= 16  # 4 bits per block of 64


def test_nf4_round_trip_rounds_the_decoder_linears_only(tiny_model_dir):
    from noshow.inference.cpu.weights import nf4_round, nf4_round_trip
    from noshow.modeling.models import load_base

    model, _ = load_base(tiny_model_dir, get_approach("generative"), "none", device="cpu")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert nf4_round_trip(model.get_decoder()) == 7 * model.config.num_hidden_layers
    for name, param in model.named_parameters():
        if name.endswith("proj.weight"):
            assert torch.equal(param, nf4_round(before[name]))
        else:  # norms and embeddings are not quantized by QLoRA either
            assert torch.equal(param, before[name])


def test_a_4bit_trained_adapter_gets_the_nf4_base_on_the_cpu_and_others_do_not(adapters):
    import json

    from noshow.inference.predict import load_predictor, read_adapter_meta

    for approach in ("generative", "classifier"):
        assert read_adapter_meta(SHIPPED[approach])["quantize"] == "4bit"
        shipped = load_predictor(SHIPPED[approach], device="cpu", cpu_weights="float32")
        assert "NF4-rounded base" in shipped.weights
    tiny = adapters.generative
    assert json.loads((Path(tiny) / "adapter" / "noshow.json").read_text())["quantize"] == "none"
    assert "NF4" not in load_predictor(tiny, device="cpu").weights


@pytest.mark.parametrize("approach", ["generative", "classifier"])
def test_shipped_adapters_on_the_cpu_score_like_on_the_gpu_they_were_trained_on(approach):
    """40 real test rows scored on the H200 (4-bit base, adapter separate) at training time.
    Merged into the unrounded base instead, the generative adapter's mean |dP| was 0.16."""
    import json

    from noshow.inference.predict import load_predictor

    rows = json.loads(GPU_SCORES.read_text())["rows"]
    predictor = load_predictor(SHIPPED[approach], device="cpu")  # the app's default weights
    statements = [r["statement"] for r in rows]
    cpu = np.array(predictor.predict_proba(statements, calibrated=False))  # as stored: raw
    gpu = np.array([r["p_gpu"][approach] for r in rows])
    assert np.abs(cpu - gpu).mean() < 0.03
    assert np.abs(cpu - gpu).max() < 0.1
    assert np.corrcoef(cpu, gpu)[0, 1] > 0.97
    # the calibrated threshold carries over: the same rows fall on the same side of it
    cpu_cal, gpu_cal = predictor.calibrator.apply(cpu), predictor.calibrator.apply(gpu)
    assert np.allclose(predictor.predict_proba(statements[:3]), cpu_cal[:3], atol=1e-9)
    same_side = (cpu_cal >= predictor.threshold) == (gpu_cal >= predictor.threshold)
    assert same_side.mean() >= 0.9


def test_a_model_in_huge_pages_can_be_deep_copied(tiny_model_dir):
    """bench_cpu_weights copies a loaded model; the copy's weights land in ordinary memory."""
    import copy

    from noshow.modeling.models import load_base

    model, _ = load_base(tiny_model_dir, get_approach("classifier"), "none", device="cpu")
    hugepage_weights(model)
    clone = copy.deepcopy(model)
    assert hugepage_arena(clone) is None
    for a, b in zip(model.parameters(), clone.parameters(), strict=True):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()


@pytest.mark.parametrize("approach", ["generative", "classifier"])
def test_answers_for_several_statements_match_one_at_a_time(approach, real_statements):
    from noshow.inference.predict import load_predictor

    predictor = load_predictor(SHIPPED[approach], device="cpu")  # the app's timed form
    together = predictor.predict_with_answers(real_statements[:5])
    alone = [predictor.predict_with_answer(s) for s in real_statements[:5]]
    assert [a for _, a in together] == [a for _, a in alone]
    assert np.abs(np.array([p for p, _ in together]) - [p for p, _ in alone]).max() <= 1e-3
