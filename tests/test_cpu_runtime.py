"""The CPU form chosen by timing at load (noshow.inference.cpu.runtime): the tie rule that keeps it
never slower than fp32 and fp32 where nothing beats it, the candidates a CPU gets, one timing
per process and model shape, the override, and on the shipped adapters every candidate form
within the issue's |dP| <= 0.02 of exact fp32 on real statements."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SHIPPED

from noshow.inference.cpu import runtime as cpu_runtime
from noshow.inference.cpu.forward import FUSED_ATTR
from noshow.inference.cpu.runtime import (
    CANDIDATES,
    candidate_forms,
    choose_cpu_path,
    forget_choices,
    pick_fastest,
)
from noshow.inference.cpu.weights import native_bf16
from noshow.modeling.approaches import get_approach


@pytest.fixture(autouse=True)
def fresh_choices():
    forget_choices()
    yield
    forget_choices()


def test_the_fastest_wins_only_by_more_than_the_tie_margin():
    assert pick_fastest({"float32": 100, "float32-onednn": 97, "bfloat16": 52}) == "bfloat16"
    assert pick_fastest({"float32": 100, "float32-onednn": 97, "bfloat16": 96}) == "float32"
    assert pick_fastest({"float32": 100, "float32-onednn": 90, "bfloat16": 120}) == (
        "float32-onednn"
    )
    assert pick_fastest({"float32": 100, "bfloat16": 150}) == "float32"  # never slower


def test_auto_times_fp32_and_what_this_cpu_can_run_a_name_builds_one():
    forms = candidate_forms("auto")
    assert next(iter(forms)) == "float32" and forms["float32"] == CANDIDATES["float32"]
    assert ("bfloat16" in forms) == native_bf16()  # emulated bf16 is never worth timing
    only = candidate_forms("bfloat16")
    assert list(only) == ["bfloat16"] and only["bfloat16"].dtype == torch.bfloat16


def tiny_decoder(tiny_model_dir):
    from noshow.modeling.models import load_base

    model, _ = load_base(tiny_model_dir, get_approach("generative"), "none", device="cpu")
    return model.eval().get_decoder()


def test_the_timing_runs_once_per_process_and_model_shape(tiny_model_dir, monkeypatch):
    decoder = tiny_decoder(tiny_model_dir)
    timed = []
    real = cpu_runtime.time_paths

    def counting(decoder, states, sample_ids, rounds=cpu_runtime.TIMED_ROUNDS):
        timed.append(sorted(states))
        return real(decoder, states, sample_ids, rounds=2)

    monkeypatch.setattr(cpu_runtime, "time_paths", counting)
    sample = list(range(5, 45))
    first = choose_cpu_path(decoder, sample, prefix_ids=[5, 6, 7])
    assert timed == [sorted(candidate_forms("auto"))] and first.how == "timed"
    assert set(first.timings_ms) == set(candidate_forms("auto"))
    assert first.name == pick_fastest(first.timings_ms)
    assert first.describe().startswith("timed fastest: ")
    second = choose_cpu_path(tiny_decoder(tiny_model_dir), sample, prefix_ids=[5, 6, 7])
    assert len(timed) == 1 and second.how == "timed earlier" and second.name == first.name
    named = choose_cpu_path(decoder, sample, requested="float32")
    assert len(timed) == 1 and named.name == "float32" and named.describe() == "set by name"


def test_a_named_form_is_what_the_predictor_runs_and_says(adapters, monkeypatch):
    from noshow.inference.predict import load_predictor

    monkeypatch.setenv("NOSHOW_CPU_WEIGHTS", "float32-onednn")
    predictor = load_predictor(adapters.classifier, device="cpu")
    state = getattr(predictor.model.get_decoder(), FUSED_ATTR)
    assert state.matmuls.dtype == torch.float32
    assert predictor.weights.startswith("float32") and "set by name" in predictor.weights


@pytest.fixture(scope="module")
def real_statements(real_data_path) -> list[str]:
    from noshow.data.load import load_data
    from noshow.data.splits import split_data

    frame = split_data(load_data(real_data_path).frame, "time", seed=0)
    test = frame[frame["split"] == "test"].sample(40, random_state=11)
    return test["statement"].tolist()


@pytest.mark.parametrize("approach", ["generative", "classifier"])
def test_every_candidate_scores_within_two_hundredths_of_exact_fp32(approach, real_statements):
    """The bar a faster form must meet to be timed at all: |dP| <= 0.02 against fp32 on real
    statements, batched scores equal to single ones within 1e-3."""
    from noshow.inference.cpu.forward import install_fast_forward, uninstall_fast_forward
    from noshow.inference.predict import load_predictor

    predictor = load_predictor(SHIPPED[approach], device="cpu", cpu_weights="float32")
    decoder = predictor.model.get_decoder()
    uninstall_fast_forward(decoder)
    exact = np.array(predictor.predict_proba(real_statements))  # transformers' fp32 forward
    prefix = tuple(predictor.bound.prefix_ids)
    for name in candidate_forms("auto"):
        path = choose_cpu_path(decoder, [], prefix_ids=prefix, requested=name)
        install_fast_forward(decoder, state=path.state)
        predictor.single_rows = not path.batch_equals_single
        batched = np.array(predictor.predict_proba(real_statements))
        assert np.abs(batched - exact).max() <= 0.02, name
        single = np.array([predictor.predict_proba([s])[0] for s in real_statements[:4]])
        assert np.abs(single - batched[:4]).max() <= 1e-3, name
