"""The stacked models on the Compare tab (noshow.app.compare_stacked): cards from a fitted
model, the reasons when there is none, the models refitted from the tiny adapters'
stacked.json (each adapter's and both together), and the running app's stacked cards
through gradio_client.

    .venv/bin/python -m pytest -q tests/test_compare_stacked.py
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from noshow.app.compare_cards import compare_summary, render_compare_html
from noshow.app.compare_slots import BOTH, CLASSIFIER, GENERATIVE, STACKED, model_name
from noshow.app.compare_stacked import (
    NO_FACTS_FOR_STACKED,
    FittedStacked,
    StackedCache,
    add_stacked_scores,
    score_stacked,
)
from noshow.data.examples import EXAMPLES
from noshow.evaluation.stacking import ADAPTER, BASELINE


class Recorder:
    """A stand-in stacked model: P = mean of its inputs, remembering what it was given."""

    def __init__(self, inputs, threshold=0.4, n_trees=3, rows=500):
        self.inputs, self.threshold, self.n_trees, self.rows = inputs, threshold, n_trees, rows
        self.seen = []

    def predict(self, frame, p):
        self.seen.append({k: list(v) for k, v in p.items()})
        return np.mean([np.asarray(p[k], float) for k in self.inputs], axis=0)


class Half:
    def predict(self, frame):
        return np.full(len(frame), 0.5)


def _source(models):
    return lambda predictors: dict(models)


def test_stacked_cards_take_the_rows_facts_and_each_adapters_p():
    single = Recorder([BASELINE, ADAPTER])
    both = Recorder([BASELINE, GENERATIVE, CLASSIFIER])
    source = _source(
        {
            CLASSIFIER: FittedStacked(model=single, baseline=Half()),
            BOTH: FittedStacked(model=both, baseline=Half()),
            GENERATIVE: FittedStacked(error="still being fitted"),
        }
    )
    row = dict(EXAMPLES[0].row)
    slots = score_stacked({}, {GENERATIVE: [0.3], CLASSIFIER: [0.9]}, [row], source)
    assert slots[CLASSIFIER][0]["p"] == pytest.approx((0.5 + 0.9) / 2)
    assert single.seen == [{BASELINE: [0.5], ADAPTER: [0.9]}]
    assert slots[BOTH][0]["p"] == pytest.approx((0.5 + 0.3 + 0.9) / 3)
    assert slots[BOTH][0]["label"] == 1 and slots[BOTH][0]["threshold"] == 0.4
    assert "3 trees" in slots[BOTH][0]["blend"] and "500 validation" in slots[BOTH][0]["blend"]
    assert slots[GENERATIVE][0]["error"] == "still being fitted"
    no_facts = score_stacked({}, {GENERATIVE: [0.3], CLASSIFIER: [0.9]}, [None], source)
    assert no_facts[BOTH][0]["error"] == NO_FACTS_FOR_STACKED
    why = "could not read the age from the text"  # a typed statement's facts, not all read
    unread = score_stacked({}, {GENERATIVE: [0.3], CLASSIFIER: [0.9]}, [None], source, why)
    assert unread[BOTH][0]["error"] == NO_FACTS_FOR_STACKED.removesuffix(".") + f" ({why})."
    one_missing = score_stacked({}, {GENERATIVE: [None], CLASSIFIER: [0.9]}, [row], source)
    assert "needs the adapters' scores" in one_missing[BOTH][0]["error"]
    result = {"statement": "s", STACKED: {k: v[0] for k, v in slots.items()}}
    html = render_compare_html(result)
    assert "Stacked: both adapters + tabular" in html and "Stacked: classifier + tabular" in html
    assert compare_summary(result)[STACKED][CLASSIFIER]["p"] == pytest.approx(0.7)
    assert score_stacked({}, {}, [row], None) == {}


def test_a_batch_adds_each_stacked_model_and_its_comparisons():
    rows = pd.DataFrame([EXAMPLES[i].row for i in range(4)])
    scores = {GENERATIVE: np.array([0.1, 0.2, 0.3, 0.4]), CLASSIFIER: np.full(4, 0.6)}
    scores["hybrid_classifier"] = np.full(4, 0.5)
    source = _source(
        {
            CLASSIFIER: FittedStacked(model=Recorder([BASELINE, ADAPTER]), baseline=Half()),
            BOTH: FittedStacked(error="the two adapters share 3 validation rows"),
        }
    )
    thresholds, notes = {}, []
    adapters = {GENERATIVE: None, CLASSIFIER: None}
    pairs = add_stacked_scores(adapters, scores, thresholds, notes, rows, source)
    np.testing.assert_allclose(scores["stacked_classifier"], 0.55)
    assert thresholds["stacked_classifier"] == 0.4
    assert pairs == [
        ("stacked_classifier", CLASSIFIER),
        ("stacked_classifier", "hybrid_classifier"),
    ]
    assert notes == [
        "Stacked: both adapters + tabular left out: the two adapters share 3 validation rows"
    ]
    assert model_name("stacked_both") == "stacked (both adapters + tabular)"
    assert model_name("stacked_classifier") == "stacked (classifier + tabular)"


@pytest.fixture(scope="module")
def entry():
    from noshow.data.load import load_data
    from noshow.data.splits import split_data

    frame = split_data(load_data("synthetic").frame, "time")  # what the tiny runs used
    return SimpleNamespace(key="synthetic", frame=frame)


def test_the_models_refit_from_the_adapters_stacked_json(adapters, entry):
    from noshow.app.compare_baseline import BaselineCache
    from noshow.evaluation.stacking import Stacked
    from noshow.inference.predict import resolve_adapter_dir

    predictors = {
        approach: SimpleNamespace(
            stacked=Stacked.load(resolve_adapter_dir(getattr(adapters, approach))),
            adapter_dir=getattr(adapters, approach),
        )
        for approach in (GENERATIVE, CLASSIFIER)
    }
    spec = predictors[CLASSIFIER].stacked
    assert spec.model is None and len(spec.record_ids) == spec.rows == 64
    cache = StackedCache(BaselineCache())
    fitted = cache.source(entry, None)(predictors)
    assert set(fitted) == {GENERATIVE, CLASSIFIER, BOTH}
    for key, model in fitted.items():
        assert model.error is None, (key, model.error)
    assert fitted[CLASSIFIER].model.n_trees == spec.n_trees
    assert fitted[BOTH].model.inputs == (BASELINE, GENERATIVE, CLASSIFIER)
    assert fitted[BOTH].model.validation_p is not None  # cross-fitted here
    assert cache.source(entry, None)(predictors)[BOTH] is fitted[BOTH]  # fitted once
    rows = entry.frame[entry.frame["split"] == "test"].head(5)
    p = {GENERATIVE: [0.2] * 5, CLASSIFIER: [0.3] * 5}
    slots = score_stacked(predictors, p, rows, cache.source(entry, None))
    assert all(0 <= s["p"] <= 1 for key in slots for s in slots[key])
    other = SimpleNamespace(key="other", frame=entry.frame.iloc[:100])  # another data set
    missing = cache.source(other, None)(predictors)
    assert "not in the loaded data" in missing[CLASSIFIER].error


@pytest.fixture(scope="module")
def app(tiny_adapters_client):
    return tiny_adapters_client


def test_app_shows_each_stacked_model_and_both_adapters_together(app, adapters):
    deadline = time.monotonic() + 180
    while True:  # refitted in the background on first use
        html, summary, _ = app.predict(
            EXAMPLES[3].statement, adapters.generative, adapters.classifier, api_name="/compare"
        )
        stacked = summary[STACKED]
        if all(s["p"] is not None for s in stacked.values()) or time.monotonic() > deadline:
            break
        assert all("still being fitted" in s["error"] for s in stacked.values() if s["p"] is None)
        time.sleep(1)
    assert set(stacked) == {GENERATIVE, CLASSIFIER, BOTH}
    for slot in stacked.values():
        assert 0 <= slot["p"] <= 1 and slot["label"] == int(slot["p"] >= slot["threshold"])
    for title in ("Stacked: generative + tabular", "Stacked: both adapters + tabular"):
        assert title in html
    _, free_text, _ = app.predict(
        "Missed her last two visits.", adapters.generative, adapters.classifier, api_name="/compare"
    )
    assert free_text[STACKED] == {}  # without facts, no stacked model is asked for
