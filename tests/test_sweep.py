"""The quality sweep (noshow/training/sweep.py): trials in order of importance, a table that
a second sweep resumes from, a budget that stops starting trials, and a choice made on
validation ROC-AUC alone. Training is replaced by a function that returns what a run
returns (the sweep's own logic is what is tested; the recipe has its own tests), except in
the last test, where the real recipe trains the tiny model."""

from __future__ import annotations

import json
import time
from pathlib import Path

from noshow.config import RunConfig
from noshow.training.runs import RunResult
from noshow.training.sweep import (
    SEARCH,
    Trial,
    choose,
    plan,
    read_table,
    run_folder,
    run_sweep,
)


def fake_train(validation_auc: dict[str, float], seen: list[RunConfig]):
    """A `train` that writes an eval.json and reports the validation AUC given per key."""

    def train(config: RunConfig) -> RunResult:
        seen.append(config)
        t, lora = config.train, config.lora
        key = _key(config)
        run_dir = Path(t.output_dir) / f"run-{len(seen)}"
        run_dir.mkdir(parents=True)
        test = {"roc_auc": 0.70 + len(seen) / 1000, "roc_auc_low": 0.69, "roc_auc_high": 0.71}
        metrics = {
            "model": {**test, "ece": 0.03},
            "model_uncalibrated": {"ece": 0.04},
            "baseline": {"roc_auc": 0.73},
            "hybrid": {"roc_auc": 0.731},
            "validation": {"model": {"roc_auc": validation_auc.get(key, 0.7), "ece": 0.01}},
        }
        (run_dir / "eval.json").write_text(json.dumps(metrics))
        assert lora.alpha == 2 * lora.r  # alpha follows r at the defaults' ratio
        return RunResult(run_dir=run_dir, state="completed", metrics=metrics)

    return train


def _key(config: RunConfig) -> str:
    d, t, lora = config.data, config.train, config.lora
    default = RunConfig()
    changes = []
    for name, value in (("lr", t.lr), ("epochs", t.epochs), ("batch_size", t.batch_size)):
        if value != getattr(default.train, name):
            changes.append(f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}")
    if lora.r != default.lora.r:
        changes.append(f"lora_r={lora.r}")
    return "/".join([t.approach, d.split, *sorted(changes)])


def test_the_plan_starts_with_the_defaults_of_both_approaches_on_both_splits():
    trials = plan()
    assert [t.key for t in trials[:4]] == [
        "generative/time",
        "classifier/time",
        "generative/patient",
        "classifier/patient",
    ]
    searched = [t for t in trials if t.stage == "search"]
    assert len(searched) == 2 * sum(len(v) for v in SEARCH.values())
    assert searched[0].approach != searched[1].approach  # both approaches advance together
    assert len({t.key for t in trials}) == len(trials)


def test_a_sweep_resumes_from_its_table_and_runs_no_trial_twice(tmp_path):
    seen: list[RunConfig] = []
    train = fake_train({}, seen)
    first = run_sweep("synthetic", tmp_path, budget_s=1e9, stages=("defaults",), train=train)
    assert first.ran == [t.key for t in plan()[:4]]
    again = run_sweep("synthetic", tmp_path, budget_s=1e9, stages=("defaults",), train=train)
    assert again.ran == [] and len(seen) == 4
    assert len(read_table(tmp_path)) == 4
    assert all(not Path(r["run_dir"]).is_absolute() for r in read_table(tmp_path))


def test_the_budget_stops_starting_trials_once_the_slowest_would_not_fit(tmp_path):
    seen: list[RunConfig] = []
    quick = fake_train({}, seen)

    def slow_train(config):  # each trial takes 0.3 s
        time.sleep(0.3)
        return quick(config)

    progress = run_sweep("synthetic", tmp_path, budget_s=0.5, train=slow_train)
    assert len(seen) == 1  # after one trial of 0.3 s, a second would end past 0.5 s
    assert progress.not_started and progress.not_started[0] == plan()[1].key


def test_the_choice_reads_validation_only_and_the_chosen_trials_test_figures(tmp_path):
    better = "classifier/time/lr=0.002"
    seen: list[RunConfig] = []
    train = fake_train({"classifier/time": 0.74, better: 0.76}, seen)
    run_sweep("synthetic", tmp_path, budget_s=1e9, stages=("defaults", "search"), train=train)
    chosen = choose(read_table(tmp_path), tmp_path)
    assert chosen[("classifier", "time")]["key"] == better
    test = chosen[("classifier", "time")]["test"]
    assert test["baseline"]["roc_auc"] == 0.73 and test["ece_uncalibrated"] == 0.04
    # a table made on another machine keeps absolute paths: its runs are found here
    row = {"run_dir": "/root/elsewhere/runs/run-3"}
    assert run_folder(row, tmp_path) == tmp_path / "runs" / "run-3"


def test_settings_that_beat_the_defaults_on_validation_are_tried_together(tmp_path):
    seen: list[RunConfig] = []
    train = fake_train({"generative/time": 0.70, "generative/time/lr=0.002": 0.72,
                        "generative/time/lora_r=64": 0.71}, seen)  # fmt: skip
    run_sweep("synthetic", tmp_path, budget_s=1e9, train=train)
    combined = [r for r in read_table(tmp_path) if r["stage"] == "combined"]
    keys = {r["key"] for r in combined}
    assert keys == {"generative/time/lora_r=64/lr=0.002", "generative/patient/lora_r=64/lr=0.002"}


def test_a_trial_config_changes_only_what_it_names():
    trial = Trial("classifier", "patient", (("lora_r", 64), ("lr", 2e-3)))
    config = trial.config("synthetic", Path("/tmp/sweep"))
    default = RunConfig()
    assert (config.lora.r, config.lora.alpha, config.train.lr) == (64, 128, 2e-3)
    assert config.train.batch_size == default.train.batch_size
    assert config.data.split == "patient" and config.train.approach == "classifier"
    assert config.train.output_dir == "/tmp/sweep/runs"


def test_a_real_sweep_of_the_tiny_model_writes_its_table(tmp_path, tiny_model_dir, monkeypatch):
    """The real recipe under the sweep: the defaults' stage at a tiny size."""
    monkeypatch.setenv("NOSHOW_LABELS_DB", str(tmp_path / "labels.sqlite"))
    base = RunConfig.from_dict(
        {
            "data": {"max_train_rows": 48, "max_eval_rows": 40},
            "lora": {"r": 4, "alpha": 8},
            "train": {
                "model": str(tiny_model_dir),
                "quantize": "none",
                "max_steps": 2,
                "batch_size": 8,
            },
        }  # fmt: skip
    )
    run_sweep("synthetic", tmp_path, budget_s=1e9, stages=("defaults",), base=base)
    table = read_table(tmp_path)
    assert [r["state"] for r in table] == ["completed"] * 4
    assert all(r["validation"]["roc_auc"] is not None for r in table)
    chosen = choose(table, tmp_path)
    assert set(chosen) == {
        (a, s) for a in ("generative", "classifier") for s in ("time", "patient")
    }
    assert all(c["test"]["model"]["roc_auc"] is not None for c in chosen.values())
