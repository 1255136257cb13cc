"""Leak-free splits and history features: no patient in two parts, exact time boundaries,
deterministic seeds, and no outcome ever reaching a feature of an earlier or same-day row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from noshow.data.clean import KAGGLE_COLUMNS, DataError, add_history_features, clean_kaggle_frame
from noshow.data.load import load_data
from noshow.data.splits import split_data
from noshow.data.statements import render_statements

HISTORY = ["prior_appointments", "prior_no_shows"]


def raw_rows(rows: list[tuple[int, str, str]]) -> pd.DataFrame:
    """(patient, appointment day, No-show) per row; everything else fixed."""
    return pd.DataFrame(
        [
            {
                "PatientId": float(patient),
                "AppointmentID": 1000 + i,
                "Gender": "F",
                "ScheduledDay": "2016-04-20T08:00:00Z",
                "AppointmentDay": f"{day}T00:00:00Z",
                "Age": 40,
                "Neighbourhood": "CENTRO",
                "Scholarship": 0,
                "Hipertension": 0,
                "Diabetes": 0,
                "Alcoholism": 0,
                "Handcap": 0,
                "SMS_received": 0,
                "No-show": outcome,
            }
            for i, (patient, day, outcome) in enumerate(rows)
        ],
        columns=list(KAGGLE_COLUMNS),
    )


HAND_BUILT = [
    (1, "2016-04-29", "Yes"),
    (1, "2016-04-29", "No"),  # same day as the row above: they never count each other
    (1, "2016-05-02", "Yes"),
    (1, "2016-05-03", "No"),
    (1, "2016-05-03", "Yes"),
    (1, "2016-05-31", "No"),
    (2, "2016-05-02", "Yes"),
    (2, "2016-04-29", "No"),  # earlier day listed later in the file
]


def history(frame: pd.DataFrame) -> list[tuple[int, int]]:
    return list(zip(frame["prior_appointments"], frame["prior_no_shows"], strict=True))


@pytest.fixture(scope="module")
def synthetic_frame() -> pd.DataFrame:
    return load_data("synthetic").frame


# ----------------------------------------------------------------------------- history


def test_history_counts_only_strictly_earlier_days():
    frame, _ = clean_kaggle_frame(raw_rows(HAND_BUILT))
    assert history(frame) == [(0, 0), (0, 0), (2, 1), (3, 2), (3, 2), (5, 3), (1, 0), (0, 0)]


def test_changing_an_outcome_on_day_d_leaves_day_d_and_earlier_alone():
    rows = list(HAND_BUILT)
    rows[3] = (1, "2016-05-03", "Yes")  # was "No"
    frame, _ = clean_kaggle_frame(raw_rows(rows))
    # Same as above except the later row of patient 1, which now sees one more no-show.
    assert history(frame) == [(0, 0), (0, 0), (2, 1), (3, 2), (3, 2), (5, 4), (1, 0), (0, 0)]


@pytest.mark.parametrize("day", ["2016-05-02", "2016-05-19", "2016-05-31"])
def test_flipping_a_days_outcomes_never_changes_that_day_or_earlier(synthetic_frame, day):
    changed = synthetic_frame.copy()
    on_day = changed["appointment_day"] == pd.Timestamp(day)
    assert on_day.sum() > 50
    changed.loc[on_day, "no_show"] = 1 - changed.loc[on_day, "no_show"]
    changed = add_history_features(changed)
    changed["statement"] = render_statements(changed)
    upto = synthetic_frame["appointment_day"] <= pd.Timestamp(day)
    columns = [*HISTORY, "statement"]
    pd.testing.assert_frame_equal(changed.loc[upto, columns], synthetic_frame.loc[upto, columns])
    assert not changed.loc[~upto, HISTORY].equals(synthetic_frame.loc[~upto, HISTORY])


def _assert_test_outcomes_do_not_reach_train_features(frame: pd.DataFrame) -> None:
    parts = split_data(frame, "time")
    test = parts["split"] == "test"
    changed = frame.copy()
    changed.loc[test, "no_show"] = 1 - changed.loc[test, "no_show"]
    changed = add_history_features(changed)
    pd.testing.assert_frame_equal(changed.loc[~test, HISTORY], frame.loc[~test, HISTORY])


def test_test_period_outcomes_do_not_reach_train_or_validation_features(synthetic_frame):
    _assert_test_outcomes_do_not_reach_train_features(synthetic_frame)


def test_test_period_outcomes_do_not_reach_earlier_features_on_real_file(real_data_path):
    _assert_test_outcomes_do_not_reach_train_features(load_data(real_data_path).frame)


def test_history_on_real_file_counts_same_day_rows_as_one_day(real_data_path):
    frame = load_data(real_data_path).frame
    first_day = frame[frame["appointment_day"] == frame["appointment_day"].min()]
    assert (first_day[HISTORY] == 0).all().all()
    # Patients with several appointments on one day all see the same history.
    same_day = frame.groupby(["patient_id", "appointment_day"])["prior_appointments"].nunique()
    assert (same_day == 1).all()


# ----------------------------------------------------------------------------- time split


def test_time_split_boundaries_are_exact():
    days = ["2016-05-19", "2016-05-20", "2016-05-29", "2016-05-30", "2016-06-08", "2016-04-29"]
    frame, _ = clean_kaggle_frame(raw_rows([(i, day, "No") for i, day in enumerate(days)]))
    assert split_data(frame, "time")["split"].tolist() == [
        "train", "validation", "validation", "test", "test", "train",
    ]  # fmt: skip


def test_time_split_on_real_file_matches_reference_figures(real_data_path):
    parts = split_data(load_data(real_data_path).frame, "time")
    counts = parts["split"].value_counts()
    assert (counts["train"], counts["validation"], counts["test"]) == (63_532, 11_746, 35_243)
    test_rate = parts.loc[parts["split"] == "test", "no_show"].mean()
    assert test_rate == pytest.approx(0.185, abs=5e-4)
    assert parts.loc[parts["split"] == "test", "appointment_day"].min() == pd.Timestamp(
        "2016-05-30"
    )


def test_time_split_refuses_data_outside_its_dates():
    frame, _ = clean_kaggle_frame(raw_rows([(1, "2016-05-02", "No"), (2, "2016-05-03", "Yes")]))
    with pytest.raises(DataError, match="leaves validation, test empty.*split='patient'"):
        split_data(frame, "time")


# ----------------------------------------------------------------------------- patient split


def _assert_no_patient_in_two_parts(parts: pd.DataFrame) -> None:
    per_patient = parts.groupby("patient_id")["split"].nunique()
    assert (per_patient == 1).all()


def test_patient_split_keeps_each_patient_in_one_part(synthetic_frame):
    parts = split_data(synthetic_frame, "patient", seed=0)
    _assert_no_patient_in_two_parts(parts)
    assert set(parts["split"]) == {"train", "validation", "test"}


def test_patient_split_on_real_file_is_70_10_20_of_patients(real_data_path):
    parts = split_data(load_data(real_data_path).frame, "patient", seed=0)
    _assert_no_patient_in_two_parts(parts)
    share = parts.drop_duplicates("patient_id")["split"].value_counts(normalize=True)
    assert share["train"] == pytest.approx(0.7, abs=0.01)
    assert share["validation"] == pytest.approx(0.1, abs=0.01)
    assert share["test"] == pytest.approx(0.2, abs=0.01)


def test_patient_split_is_deterministic_for_a_seed(synthetic_frame):
    first = split_data(synthetic_frame, "patient", seed=5)["split"]
    again = split_data(synthetic_frame.sample(frac=1, random_state=1), "patient", seed=5)["split"]
    pd.testing.assert_series_equal(first, again.loc[first.index])
    other = split_data(synthetic_frame, "patient", seed=6)["split"]
    assert (first != other).mean() > 0.2


# ----------------------------------------------------------------------------- random split


def test_random_split_is_stratified_80_10_10(synthetic_frame):
    parts = split_data(synthetic_frame, "random", seed=0)
    share = parts["split"].value_counts(normalize=True)
    assert share["train"] == pytest.approx(0.8, abs=0.002)
    assert share["validation"] == pytest.approx(0.1, abs=0.002)
    overall = parts["no_show"].mean()
    for rate in parts.groupby("split")["no_show"].mean():
        assert rate == pytest.approx(overall, abs=0.005)


def test_random_split_is_deterministic_for_a_seed(synthetic_frame):
    first = split_data(synthetic_frame, "random", seed=2)["split"]
    pd.testing.assert_series_equal(first, split_data(synthetic_frame, "random", seed=2)["split"])
    assert not first.equals(split_data(synthetic_frame, "random", seed=3)["split"])


# ----------------------------------------------------------------------------- statement frames


def statement_frame(split: list[str] | None = None) -> pd.DataFrame:
    frame = pd.DataFrame(
        {"record_id": np.arange(20), "statement": ["s"] * 20, "no_show": [0, 1] * 10}
    )
    if split is not None:
        frame["split"] = split
    return frame


def test_statement_frame_needs_random_split_and_says_so():
    with pytest.raises(DataError, match="needs the appointment_day column.*split='random'"):
        split_data(statement_frame(), "time")
    with pytest.raises(DataError, match="needs the patient_id column"):
        split_data(statement_frame(), "patient")
    assert set(split_data(statement_frame(), "random")["split"]) == {"train", "validation", "test"}


def test_statement_frame_with_a_split_column_keeps_it():
    given = ["train"] * 10 + ["validation"] * 5 + ["test"] * 5
    for method in ("time", "patient", "random"):
        assert split_data(statement_frame(given), method)["split"].tolist() == given


def test_split_data_returns_a_copy_and_refuses_unknown_methods(synthetic_frame):
    before = synthetic_frame.copy()
    split_data(synthetic_frame, "time")
    pd.testing.assert_frame_equal(synthetic_frame, before)
    with pytest.raises(DataError, match="Unknown split method 'weekly'"):
        split_data(synthetic_frame, "weekly")
