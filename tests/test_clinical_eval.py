"""What a clinic acts on (noshow.evaluation.decision, subgroups, clinical): net benefit,
capacity and subgroup figures checked against values computed by hand on ten literal rows,
their cluster-robust intervals, the sentences, and the sections of eval.json on a small run.

    .venv/bin/python -m pytest -q tests/test_clinical_eval.py
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from noshow.evaluation.clinical import clinical_report
from noshow.evaluation.decision import (
    POLICY_NAMES,
    TREAT_ALL,
    capacity_table,
    cluster_ratio,
    decision_curves,
    describe_capacity,
    describe_decision_curves,
    net_benefit,
    net_benefit_all,
)
from noshow.evaluation.subgroups import subgroup_report

# Ten appointments: three no-shows, P from one model; patients in pairs.
Y = np.array([1, 1, 0, 0, 0, 1, 0, 0, 0, 0])
P = np.array([0.9, 0.6, 0.55, 0.3, 0.2, 0.15, 0.1, 0.05, 0.4, 0.35])
PATIENTS = np.array(["a", "a", "b", "b", "c", "c", "d", "d", "e", "e"])


# ----------------------------------------------------------------------------- net benefit


def test_net_benefit_matches_the_hand_computed_values():
    # pt 0.2: P >= 0.2 calls rows 0,1,2,3,4,8,9: TP 2, FP 5 -> 2/10 - 5/10 x 0.2/0.8
    # pt 0.5: rows 0,1,2: TP 2, FP 1 -> 2/10 - 1/10 x 1
    np.testing.assert_allclose(net_benefit(Y, P, [0.2, 0.5]), [0.075, 0.1])
    # everyone: 3/10 - 7/10 x odds
    np.testing.assert_allclose(net_benefit_all(Y, [0.2, 0.5]), [0.125, -0.4])


def test_decision_curves_name_the_best_policy_at_each_threshold():
    curves = decision_curves(Y, {"m": P}, thresholds=[0.2, 0.5, 0.95])
    np.testing.assert_allclose(curves["models"]["m"]["net_benefit"][:2], [0.075, 0.1])
    np.testing.assert_allclose(curves[TREAT_ALL]["net_benefit"][:2], [0.125, -0.4])
    # 0.95: nobody is called by the model, so it ties with calling no one (the simpler wins)
    assert curves["best"] == [TREAT_ALL, "m", "call_no_one"]
    low, high = curves["models"]["m"]["low"][1], curves["models"]["m"]["high"][1]
    assert low < 0.1 < high


def test_net_benefit_interval_is_the_cluster_robust_one_by_hand():
    # pt 0.5, rows as clusters: contributions c = [1, 1, -1, 0, ...] (x 1/10 for the mean);
    # residuals c - 0.1, var = 10/9 x sum(resid^2) / 10^2
    c = np.array([1, 1, -1, 0, 0, 0, 0, 0, 0, 0], dtype=float)
    se = np.sqrt(10 / 9 * ((c - 0.1) ** 2).sum()) / 10
    curves = decision_curves(Y, {"m": P}, thresholds=[0.5])
    assert curves["models"]["m"]["high"][0] - 0.1 == pytest.approx(1.959964 * se, rel=1e-5)
    # by patient: the pair sums (2 - 0.2, -1 - 0.2, -0.2, -0.2, -0.2), G = 5
    pairs = np.array([1.8, -1.2, -0.2, -0.2, -0.2])
    se_p = np.sqrt(5 / 4 * (pairs**2).sum()) / 10
    curves = decision_curves(Y, {"m": P}, thresholds=[0.5], groups=PATIENTS)
    assert curves["models"]["m"]["high"][0] - 0.1 == pytest.approx(1.959964 * se_p, rel=1e-5)


def test_decision_sentence_names_the_range_where_a_model_is_the_better_policy():
    t = [0.10, 0.11, 0.12, 0.2, 0.35, 0.36, 0.5]
    best = ["call_everyone"] * 2 + ["classifier"] * 3 + ["call_no_one"] * 2
    names = {**POLICY_NAMES, "classifier": "classifier adapter", "hybrid": "hybrid"}
    assert describe_decision_curves(best, t, names) == (
        "Between 12% and 35% the classifier adapter is the better policy (the highest net "
        "benefit); below 12% calling everyone is; above 35% calling no one is."
    )
    shared = ["call_everyone"] * 2 + ["classifier", "hybrid", "classifier"] + ["call_no_one"] * 2
    assert describe_decision_curves(shared, t, names).startswith(
        "Between 12% and 35% acting on a model is the better policy; the highest net benefit "
        "goes to the classifier adapter at 2, the hybrid at 1 of those 3 thresholds"
    )
    assert describe_decision_curves(["call_no_one"] * 7, t, names) == (
        "No model does better than calling everyone or no one at any threshold from 10% to 50%."
    )


def test_thresholds_outside_zero_and_one_are_refused():
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        net_benefit(Y, P, [0.0, 0.5])


# ----------------------------------------------------------------------------- capacity


def test_recall_at_k_and_calls_per_no_show_match_the_hand_computed_values():
    cap = capacity_table(Y, {"m": P}, shares=[0.1, 0.2, 0.3])
    rows = cap["models"]["m"]
    # top 10%: row 0 (a no-show); 20%: rows 0, 1 (both); 30%: rows 0, 1, 2 (two of three)
    assert [(r["called"], r["reached"]) for r in rows] == [(1, 1), (2, 2), (3, 2)]
    assert [r["recall"] for r in rows] == pytest.approx([1 / 3, 2 / 3, 2 / 3])
    assert [r["calls_per_no_show"] for r in rows] == pytest.approx([1.0, 1.0, 1.5])
    assert [r["precision"] for r in rows] == pytest.approx([1.0, 1.0, 2 / 3])
    assert cap["random"][1]["calls_per_no_show"] == pytest.approx(10 / 3)


def test_recall_interval_is_the_delta_method_ratio_by_hand():
    # top 20%, R = 2/3: z = num - R x den over the no-shows: 1/3, 1/3, -2/3
    se_rows = np.sqrt(10 / 9 * (1 / 9 + 1 / 9 + 4 / 9)) / 3
    # by patient: pair a sums to 2/3, pair c to -2/3; G = 5
    se_patients = np.sqrt(5 / 4 * (4 / 9 + 4 / 9)) / 3
    called = (P >= 0.6).astype(float)
    for groups, se in ((None, se_rows), (PATIENTS, se_patients)):
        codes = np.arange(10) if groups is None else np.unique(groups, return_inverse=True)[1]
        ratio = cluster_ratio(called * Y, Y, codes, int(codes.max()) + 1)
        assert ratio["se"][0] == pytest.approx(se, rel=1e-9)
        cap = capacity_table(Y, {"m": P}, shares=[0.2], groups=groups)
        row = cap["models"]["m"][0]
        assert row["recall_low"] == pytest.approx(max(0.0, 2 / 3 - 1.959964 * se), rel=1e-5)
        # calls per no-show's bounds: the recall's, inverted
        assert row["calls_per_no_show_low"] == pytest.approx(2 / (row["recall_high"] * 3))


def test_capacity_sentence_gives_reach_calls_and_the_random_reference():
    cap = capacity_table(Y, {"m": P}, shares=[0.2])
    text = describe_capacity(cap, 0.2, {"m": "classifier adapter"})
    assert text.startswith(
        "Calling the top 20% (2 of 10 appointments) by the classifier adapter reaches 67% of "
        "the no-shows (95% CI "
    )
    assert "one no-show per 1.0 calls" in text
    assert "Calling 20% at random reaches 20% of the no-shows: one per 3.3 calls." in text


# ----------------------------------------------------------------------------- subgroups


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [10, 12, 15, 70, 80, 30, 35, 40, 45, 50],
            "gender": ["F"] * 5 + ["M"] * 5,
        }
    )


def test_subgroup_rates_match_the_hand_computed_values():
    report = subgroup_report(_frame(), Y, {"m": P}, {"m": 0.5})
    by = {g["group"]: g for g in report["groups"]}
    women, men = by["women"]["models"]["m"], by["men"]["models"]["m"]
    # women: rows 0-4; men: rows 5-9
    assert (women["observed"], women["predicted"], women["flagged"]) == pytest.approx(
        (0.4, 0.51, 0.6)
    )
    assert (men["observed"], men["predicted"], men["flagged"]) == pytest.approx((0.2, 0.21, 0.0))
    assert women["gap"] == pytest.approx(0.4 - 0.51)
    # observed rate's interval, rows as clusters: var = 5/4 x sum((y - 0.4)^2) / 5^2
    se = np.sqrt(5 / 4 * 1.2) / 5
    assert women["observed_high"] == pytest.approx(0.4 + 1.959964 * se, rel=1e-5)
    assert by["patients aged 0-17"]["n"] == 3 and by["patients aged 65+"]["n"] == 2
    assert report["overall"]["m"]["auc"] == pytest.approx(16 / 21)  # 16 of 21 pairs ordered


def test_subgroup_auc_interval_is_compare_aucs_clustered_delong():
    from noshow.evaluation.intervals import compare_auc

    scores = {"m": P, "b": P[::-1].copy()}
    report = subgroup_report(_frame(), Y, scores, {"m": 0.5, "b": 0.5}, groups=PATIENTS)
    reference = compare_auc(Y, scores, groups=PATIENTS)["auc"]
    for key in scores:
        got = report["overall"][key]
        want = reference[key]
        assert (got["auc"], got["auc_low"], got["auc_high"]) == pytest.approx(
            (want["estimate"], want["low"], want["high"])
        )


def test_a_group_off_beyond_its_interval_is_named_in_words():
    rng = np.random.default_rng(0)
    n = 4000
    frame = pd.DataFrame({"age": rng.integers(0, 90, n), "gender": rng.choice(["F", "M"], n)})
    p = np.full(n, 0.2)
    y = (rng.random(n) < np.where(frame["age"] < 18, 0.35, 0.17)).astype(int)
    report = subgroup_report(frame, y, {"m": p}, {"m": 0.5}, names={"m": "classifier adapter"})
    text = " ".join(report["findings"])
    assert "For patients aged 0-17 the classifier adapter predicts 20% no-shows where 3" in text
    assert "points too low" in text
    assert not any("women" in f or "men" in f for f in report["findings"])


def test_small_neighbourhoods_are_pooled():
    frame = pd.DataFrame(
        {
            "age": [30] * 12,
            "gender": ["F"] * 12,
            "neighbourhood": ["CENTRO"] * 8 + ["BONFIM", "JABOUR", "ITARARÉ", "BONFIM"],
        }
    )
    y = np.array([1, 0] * 6)
    report = subgroup_report(frame, y, {"m": np.linspace(0.1, 0.9, 12)}, {"m": 0.5}, min_rows=5)
    places = [g["group"] for g in report["groups"] if g["by"] == "neighbourhood"]
    assert places == ["patients from Centro", "patients from other neighbourhoods"]


# ----------------------------------------------------------------------------- eval.json


def test_clinical_report_on_a_small_run_uses_the_rows_and_thresholds_given():
    frame = _frame().assign(patient_id=PATIENTS)
    q = P[::-1].copy()
    sections = clinical_report(
        frame, Y, {"m": P, "b": q}, {"m": 0.5, "b": 0.3}, groups=PATIENTS, names={"m": "M"}
    )
    assert set(sections) == {"net_benefit", "capacity", "subgroups", "seconds"}
    t = sections["net_benefit"]["thresholds"]
    np.testing.assert_allclose(
        sections["net_benefit"]["models"]["b"]["net_benefit"], net_benefit(Y, q, t)
    )
    assert sections["subgroups"]["overall"]["b"]["flagged"] == pytest.approx((q >= 0.3).mean())
    json.dumps(sections)


def test_evaluate_run_writes_net_benefit_capacity_and_subgroups_for_every_model():
    from noshow.data.load import load_data
    from noshow.data.splits import split_data
    from noshow.evaluation.report import evaluate_run

    frame = split_data(load_data("synthetic").frame, "time")
    train, val, test = (
        frame[frame["split"] == s].reset_index(drop=True) for s in ("train", "validation", "test")
    )
    rng = np.random.default_rng(0)
    p_val = np.clip(0.2 + 0.3 * val["no_show"] + rng.normal(0, 0.2, len(val)), 0.01, 0.99)
    p_test = np.clip(0.2 + 0.3 * test["no_show"] + rng.normal(0, 0.2, len(test)), 0.01, 0.99)
    run = evaluate_run(train, val, test, p_val.to_numpy(), p_test.to_numpy())
    report = run.report
    scored = run.scores[run.scores["split"] == "test"]
    y = scored["label"].to_numpy()
    assert set(report["net_benefit"]["models"]) == {"model", "hybrid", "stacked", "baseline"}
    for key, column in (
        ("model", "p_no_show"),
        ("baseline", "p_baseline"),
        ("hybrid", "p_hybrid"),
        ("stacked", "p_stacked"),
    ):
        curve = report["net_benefit"]["models"][key]["net_benefit"]
        expected = net_benefit(y, scored[column], report["net_benefit"]["thresholds"])
        np.testing.assert_allclose(curve, expected)
        top10 = report["capacity"]["models"][key][1]
        assert top10["share"] == 0.1 and top10["called"] == round(0.1 * len(y))
        flagged = report["subgroups"]["overall"][key]["flagged"]
        assert flagged == pytest.approx((scored[column] >= report[key]["threshold"]).mean())
    groups = {g["by"] for g in report["subgroups"]["groups"]}
    assert groups == {"age", "gender", "sms", "scholarship", "neighbourhood", "lead", "history"}
    assert "the better policy" in report["net_benefit"]["text"]
    assert "clinical_s" in report["quality_timings"]
    json.dumps(report)


# ----------------------------------------------------------------------------- model card


def test_model_card_reports_net_benefit_capacity_subgroups_and_the_tripod_items():
    from noshow.inference.card_clinical import clinical_card, render_clinical_sections

    frame = _frame().assign(patient_id=PATIENTS)
    sections = clinical_report(frame, Y, {"model": P}, {"model": 0.5}, groups=PATIENTS)
    report = {**sections, "model": {"n": 10, "positives": 3}}
    card = {"clinical": clinical_card(report, rows_note="ten literal rows"), "weights": {}}
    assert card["clinical"]["net_benefit"]["thresholds"][:2] == [0.05, 0.10]
    text = "\n".join(render_clinical_sections(card))
    for heading in ("## Net benefit", "## Capacity", "## Subgroups", "TRIPOD+AI"):
        assert heading in text
    # pt 0.5 (the table's last row): this adapter 10.0 net no-shows per 100, everyone -40.0
    assert re.search(r"\| 50% \| 10\.0 \(-?\d+\.\d to \d+\.\d\) \| -40\.0 \| 0\.0 \|", text)
    assert "| top 10% | 33% (" in text and "| all appointments | 10 | 3 |" in text
    assert render_clinical_sections({"clinical": None}) == []
