"""scripts/bench_quality.py end to end on the synthetic data: the baselines' figures, and an
"adapter" whose scores come from the score cache (so no model is loaded), with the files
--save-to writes.
Run with `.venv/bin/python -m pytest -q tests/test_bench_quality.py`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from noshow.evaluation.calibration import Calibrator
from noshow.evaluation.hybrid import Hybrid
from noshow.evaluation.stacking import Stacked

REPO = Path(__file__).resolve().parents[1]


def test_bench_quality_prints_and_saves_every_figure(tmp_path):
    from noshow.data.load import load_data
    from noshow.data.splits import split_data

    frame = split_data(load_data("synthetic").frame, "time")
    rows = frame[frame["split"].isin(["validation", "test"])]
    rng = np.random.default_rng(0)
    z = 0.03 * rows["lead_days"] + 0.8 * rows["prior_no_shows"] - 1.8
    p = 1 / (1 + np.exp(-(z.to_numpy() + rng.normal(0, 0.7, len(rows)))))
    cache = tmp_path / "cache"
    cache.mkdir()
    pd.DataFrame({"record_id": rows["record_id"], "p": p}).to_csv(
        cache / "scores_stand-in.csv", index=False
    )
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "bench_quality.py"),
            "--data",
            "synthetic",
            "--split",
            "time",
            "--adapters",
            str(tmp_path / "stand-in"),
            "--cache",
            str(cache),
            "--json",
            str(tmp_path / "figures.json"),
            "--save-to",
            str(tmp_path / "fitted"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    figures = json.loads((tmp_path / "figures.json").read_text())
    tuning = figures["time/baselines"]["tuning"]
    assert len(tuning["trials"]) == 4 and tuning["validation_auc"] > 0.5
    assert set(figures["time/baselines"]["methods"]) == {
        "delong/row",
        "delong/patient",
        "bootstrap/row",
        "bootstrap/patient",
    }
    report = figures["time/stand-in"]
    assert report["model"]["n"] == (frame["split"] == "test").sum()
    assert (
        report["hybrid_alternatives"]["blend (shipped)"]["test_auc"] == report["hybrid"]["roc_auc"]
    )
    assert "chosen {'neighbourhood'" in out.stdout and "this adapter" in out.stdout
    assert Calibrator.load(tmp_path / "fitted" / "stand-in").threshold == report["threshold"]
    assert Hybrid.load(tmp_path / "fitted" / "stand-in").to_dict() == report["hybrid_model"]
    stacked = Stacked.load(tmp_path / "fitted" / "stand-in")  # the stacked model, to refit
    assert stacked.summary() == report["stacked_model"]
    assert Calibrator.load(tmp_path / "fitted" / "stand-in").base_rate > 0  # for a clinic rate
    assert "test ECE, model (window" in out.stdout
