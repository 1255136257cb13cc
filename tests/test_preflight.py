"""The preflight tells the truth: its time for the quick CPU preset, measured from a 3-step
run of the real recipe on this machine, is within 1.5x of the real run (the bundled model,
the real data when present); a measurement is reused from the cache; without one the answer
says it is rough; a multi-hour CPU job is flagged as long, never simply "fits"."""

from __future__ import annotations

import time

import pytest

from noshow.config import RUN_PRESETS, preset_config
from noshow.data.load import SYNTHETIC_SOURCE, load_data
from noshow.data.splits import choose_split
from noshow.training import preflight


@pytest.fixture()
def fresh_cache(tmp_path, monkeypatch):
    path = tmp_path / "preflight.json"
    monkeypatch.setattr(preflight, "_cache_path", lambda: path)
    return path


def _rows(config) -> dict[str, int]:
    choice = choose_split(load_data(config.data.source), config.data.split)
    return choice.frame["split"].value_counts().to_dict()


def _quick(tmp_path, source: str):
    return preset_config(
        "quick-cpu",
        data={"source": source},
        train={"approach": "classifier", "output_dir": str(tmp_path / "runs")},
    )


@pytest.mark.slow
def test_quick_cpu_preset_estimate_is_within_1_5x_of_the_run(
    tmp_path, fresh_cache, bundled_model_dir
):
    from conftest import REAL_DATA

    from noshow.training.recipe import train

    source = str(REAL_DATA) if REAL_DATA.exists() else SYNTHETIC_SOURCE
    config = _quick(tmp_path, source)
    rows = _rows(config)
    estimate = preflight.estimate_resources(config, rows, measure=True)
    assert estimate["basis"].startswith("measured on this machine")
    assert estimate["fits"] is True and estimate["long"] is False
    assert set(estimate["phases_s"]) == {
        "data", "model", "training", "evaluation", "baseline", "saving",
    }  # fmt: skip
    started = time.perf_counter()
    result = train(config)
    took = time.perf_counter() - started
    assert result.state == "completed", result.error
    ratio = took / (estimate["minutes"] * 60)
    print(
        f"\n[preflight] estimated {estimate['minutes'] * 60:.0f} s, took {took:.0f} s ({ratio:.2f}x)"
    )
    assert 1 / 1.5 <= ratio <= 1.5, (estimate["phases_s"], took)
    # the second preflight of the same configuration reads the measurement back at once
    t0 = time.perf_counter()
    again = preflight.estimate_resources(config, rows, measure=True)
    assert time.perf_counter() - t0 < 5 and again["minutes"] == estimate["minutes"]


def test_without_a_measurement_the_answer_says_it_is_rough(tmp_path, fresh_cache):
    config = _quick(tmp_path, SYNTHETIC_SOURCE)
    estimate = preflight.estimate_resources(config, _rows(config), measure=False)
    assert estimate["basis"].startswith("rough")
    assert estimate["minutes"] is None and estimate["phases_s"] is None
    assert estimate["mem_gb"] > 0.5  # the fp32 base alone is ~0.5 GB


def test_a_multi_hour_cpu_job_is_long_not_simply_fitting(tmp_path, fresh_cache):
    """The default form on a CPU (every row, batch 256): measured steps of seconds make it
    hours, and the answer says so."""
    import torch

    from noshow.config import RunConfig

    config = RunConfig.from_dict(
        {"data": {"source": SYNTHETIC_SOURCE}, "train": {"output_dir": str(tmp_path / "runs")}}
    )
    key = preflight._cache_key(config, torch.device("cpu"))
    preflight._write_cache(
        key,
        {
            "device": "CPU (2 cores)", "data_s": 2.0, "setup_s": 5.0, "first_step_s": 40.0,
            "step_s": 35.0, "score_rows_per_s": 20.0, "baseline_s": 6.0,
            "save_s": 1.0, "peak_gb": 3.0, "measured_at": "2026-11-30 04:00",
        },
    )  # fmt: skip
    rows = {"train": 63_532, "validation": 11_746, "test": 35_243}
    estimate = preflight.estimate_resources(config, rows, measure=False)
    assert estimate["basis"].startswith("measured")
    assert estimate["minutes"] > 60 and estimate["long"] is True
    assert preflight.describe_minutes(estimate["minutes"]).endswith("min")
    assert "h" in preflight.describe_minutes(estimate["minutes"])


def test_the_quick_preset_is_declared_once_and_small():
    quick = RUN_PRESETS["quick-cpu"]
    assert quick["train"]["max_steps"] * quick["train"]["batch_size"] <= 200
