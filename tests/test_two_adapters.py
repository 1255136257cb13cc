"""Both adapters together (noshow.evaluation.two_adapters, scripts/stack_adapters.py) and the
model card's sections on the hybrid variants and calibration that follows the clinic
(noshow.inference.card_quality), on stand-in scores and on the tiny adapters trained here.

    .venv/bin/python -m pytest -q tests/test_two_adapters.py
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from noshow.evaluation.stacking import StackingError
from noshow.evaluation.two_adapters import BOTH, evaluate_two_adapters

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world():
    """The synthetic time split, the tuned baseline's P, and two stand-in adapters that each
    see the label through independent noise (so together they know more than either)."""
    from noshow.data.load import load_data
    from noshow.data.splits import split_data
    from noshow.evaluation.baseline import tune_tabular_baseline

    frame = split_data(load_data("synthetic").frame, "time")
    parts = {s: frame[frame["split"] == s] for s in ("train", "validation", "test")}
    tuned = tune_tabular_baseline(parts["train"], parts["validation"], workers=1)
    rows = pd.concat([parts["validation"], parts["test"]])
    y = rows["no_show"].to_numpy()
    base = tuned.predict(rows)
    rng = np.random.default_rng(0)

    def adapter():
        z = np.log(base / (1 - base)) + 1.2 * (y - 0.2) + rng.normal(0, 1.5, len(y))
        return 1 / (1 + np.exp(-z))

    def predictions(p):
        return pd.DataFrame(
            {
                "record_id": rows["record_id"].to_numpy(),
                "split": rows["split"].to_numpy(),
                "label": y,
                "p_no_show": p,
                "p_baseline": base,
            }
        )

    return frame, predictions(adapter()), predictions(adapter()), tuned.params


def test_both_adapters_together_beat_each_and_every_difference_has_its_interval(world):
    frame, a, b, params = world
    section, stacked = evaluate_two_adapters(
        frame, {"generative": a, "classifier": b}, baseline_params=params
    )
    assert stacked.inputs == ("baseline", "generative", "classifier")
    assert stacked.fold_unit == "day" and section["model"]["baseline_params"] == params
    metrics = section["metrics"]
    assert set(metrics) == {BOTH, "generative", "classifier", "p_baseline"}
    assert metrics[BOTH]["roc_auc"] > max(
        metrics["generative"]["roc_auc"], metrics["classifier"]["roc_auc"]
    )
    assert [(d["a"], d["b"]) for d in section["differences"]] == [
        (BOTH, "generative"),
        (BOTH, "classifier"),
        (BOTH, "p_baseline"),
    ]
    for d in section["differences"]:
        assert d["low"] <= d["estimate"] <= d["high"] and d["text"]
    assert section["intervals"]["unit"] == "group"
    assert set(section["recalibration"]["models"][BOTH]["ece"]) == {"once", "rolling"}
    json.dumps(section)


def test_two_runs_that_disagree_on_labels_or_share_no_rows_are_refused(world):
    frame, a, b, _ = world
    relabelled = b.assign(label=1 - b["label"])
    with pytest.raises(StackingError, match="disagree on"):
        evaluate_two_adapters(frame, {"generative": a, "classifier": relabelled})
    apart = b.assign(record_id=b["record_id"] + 10**9)
    with pytest.raises(StackingError, match="share 0 validation"):
        evaluate_two_adapters(frame, {"generative": a, "classifier": apart})


def _script(name: str):
    spec = importlib.util.spec_from_file_location(
        f"noshow_{name}_cli", REPO / "scripts" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stacked_runs_reach_the_model_card(adapters, tmp_path):
    from noshow.inference import ship as shipping

    runs = {}
    for approach in ("generative", "classifier"):  # copies: the fixture's runs stay as they are
        runs[approach] = tmp_path / "runs" / Path(getattr(adapters, approach)).name
        shutil.copytree(getattr(adapters, approach), runs[approach])
    out = tmp_path / "two.json"
    code = _script("stack_adapters").main(
        [str(runs["generative"]), str(runs["classifier"]), "--json", str(out), "--into-runs"]
    )
    assert code == 0
    section = json.loads(out.read_text())
    assert section["adapters"] == ["generative", "classifier"]
    assert json.loads((runs["classifier"] / "eval.json").read_text())["two_adapters"] == section

    dest = shipping.ship_adapter(
        runs["classifier"],
        tmp_path / "adapters" / "classifier-tiny",
        find_data=False,
        allow_synthetic=True,
        allow_local_base=True,
        log=lambda _: None,
    )
    assert (dest / "stacked.json").exists()  # shipped with the adapter, listed in its card
    card = shipping.read_card(dest)
    assert "stacked.json" in card["weights"]["files"]
    assert card["test_metrics"]["stacked"]["roc_auc_low"] is not None
    readme = (dest / "README.md").read_text(encoding="utf-8")
    for text in (
        "| Stacked (tabular model + adapter score) |",
        "## Stacked model",
        "between stacked (tabular model + adapter score) and",  # its differences, in words
        "## Both adapters together",
        "| both adapters + tabular (stacked) |",
        "## Calibration that follows the clinic",
        "| This adapter | ",
        "Recalibrated as outcomes arrive",
        "## Your clinic's no-show rate",
        "clinic_rate=0.15",
        "--clinic-rate 0.15",
    ):
        assert text in readme, text
