"""The facts behind a score (noshow.app.compare_facts): each fact at its typical value,
every model's P again, the change in P per fact and model; the what-if scores through the
same function; the batch's average; and the app's second event that draws the bars.

    .venv/bin/python -m pytest -q tests/test_compare_facts.py
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_compare import SmsModel, sms_loader

from noshow.app.compare_baseline import Baseline
from noshow.app.compare_facts import (
    batch_fact_effects,
    fact_changes,
    fact_effects,
    plot_effects,
    typical_values,
)
from noshow.data.examples import EXAMPLES


def test_typical_values_are_the_train_splits_median_numbers_and_most_common_values():
    frame = pd.DataFrame(
        {
            "age": [0, 0, 0, 40, 50, 60, 70, 99],  # most common 0, median 45
            "sms_received": [1, 1, 1, 0, 0, 0, 0, 0],
            "weekday": ["Monday"] * 3 + ["Friday"] * 5,
            "split": ["train"] * 7 + ["test"],
        }
    )
    typical = typical_values(frame)
    assert typical == {"SMS reminder": "no", "Weekday": "Friday", "Age": "40"}


def test_each_facts_effect_is_p_now_minus_p_with_the_fact_typical():
    row = EXAMPLES[2].row  # SMS reminder: yes
    baseline = Baseline(model=SmsModel(), threshold=0.3, train_rows=10)
    typical = {"SMS reminder": "no", "Weekday": row["weekday"]}
    result = fact_effects(
        row, {"generative": "g", "classifier": "c"}, typical, baseline=baseline, source=sms_loader()
    )
    [sms] = result["facts"]
    assert (sms["fact"], sms["value"], sms["typical"]) == ("SMS reminder", "yes", "no")
    # with a reminder P is 0.3 / 0.25 / 0.2, without it 0.4 / 0.45 / 0.5
    assert sms["effects"] == pytest.approx(
        {"generative": -0.1, "classifier": -0.2, "baseline": -0.3}
    )
    assert result["p"] == pytest.approx({"generative": 0.3, "classifier": 0.25, "baseline": 0.2})
    assert any("Weekday is already typical" in k for k in result["kept"])
    figure = plot_effects(result, {"generative": "generative"})
    assert [t.get_text() for t in figure.axes[0].get_yticklabels()] == [
        "SMS reminder: yes (typical no)"
    ]


def test_a_typical_value_that_breaks_the_row_is_left_out_with_the_reason():
    row = {**EXAMPLES[2].row, "prior_appointments": 4, "prior_no_shows": 2}
    changes, kept = fact_changes(row, {"Earlier appointments": "0"})
    assert changes == [] and "cannot exceed earlier appointments" in kept[0]


def test_batch_average_is_the_mean_absolute_change_over_the_rows():
    rows = pd.DataFrame([EXAMPLES[2].row, {**EXAMPLES[2].row, "sms_received": 0}])
    baseline = Baseline(model=SmsModel(), threshold=0.3, train_rows=10)

    def score(model, statements):
        return (
            np.where(["an SMS" in s for s in statements], 0.3, 0.4)
            if model == "generative"
            else None
        )

    result = batch_fact_effects(rows, score, {"SMS reminder": "no"}, baseline)
    [sms] = result["facts"]
    assert sms["rows"] == 1  # the second row has no reminder already
    assert sms["mean_abs"] == pytest.approx({"generative": 0.1, "baseline": 0.3})
    assert sms["mean"] == pytest.approx({"generative": -0.1, "baseline": -0.3})


def test_the_what_if_and_the_facts_bars_score_through_one_function(monkeypatch):
    """A fact's bar is minus the what-if's change to its typical value: both go through
    compare_facts.score_rows, and the what-if's P are that function's P."""
    from noshow.app import compare_facts, compare_single
    from noshow.app.compare_cards import what_if_summary

    calls = []
    real = compare_facts.score_rows

    def spy(rows, *args, **kwargs):
        calls.append(len(rows))
        return real(rows, *args, **kwargs)

    monkeypatch.setattr(compare_single, "score_rows", spy)
    row = EXAMPLES[2].row  # SMS reminder: yes
    baseline = Baseline(model=SmsModel(), threshold=0.3, train_rows=10)
    paths = {"generative": "g", "classifier": "c"}
    change = compare_single.what_if(
        row, "SMS reminder", "no", "g", "c", baseline=baseline, source=sms_loader()
    )
    assert calls == [2]  # before and after, in one call
    bars = fact_effects(row, paths, {"SMS reminder": "no"}, baseline=baseline, source=sms_loader())
    [sms] = bars["facts"]
    deltas = {k: v["delta"] for k, v in what_if_summary(change)["models"].items()}
    assert deltas == pytest.approx({k: -v for k, v in sms["effects"].items()})
