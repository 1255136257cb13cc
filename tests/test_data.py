"""Loading, validation, cleaning and features (noshow.data.load) and the synthetic generator."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import noshow.data.load as data_module
from noshow.data.clean import (
    AGE_BANDS,
    FEATURE_COLUMNS,
    KAGGLE_COLUMNS,
    DataError,
    clean_kaggle_frame,
)
from noshow.data.load import load_data
from noshow.data.synthetic import make_synthetic

DEFAULTS = {
    "PatientId": 111.0,
    "Gender": "F",
    "ScheduledDay": "2016-04-29T08:00:00Z",
    "AppointmentDay": "2016-04-29T00:00:00Z",
    "Age": 30,
    "Neighbourhood": "CENTRO",
    "Scholarship": 0,
    "Hipertension": 0,
    "Diabetes": 0,
    "Alcoholism": 0,
    "Handcap": 0,
    "SMS_received": 0,
    "No-show": "No",
}


def raw_frame(rows: list[dict]) -> pd.DataFrame:
    """Raw Kaggle-schema rows; AppointmentID defaults to 1000 + position."""
    filled = [{**DEFAULTS, "AppointmentID": 1000 + i, **r} for i, r in enumerate(rows)]
    return pd.DataFrame(filled, columns=list(KAGGLE_COLUMNS))


def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False)
    return path


def write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


HEADER = ",".join(KAGGLE_COLUMNS)
GOOD_LINE = "111,1000,F,2016-04-29T08:00:00Z,2016-04-29T00:00:00Z,30,CENTRO,0,0,0,0,0,0,No"


# ----------------------------------------------------------------------------- real file


def test_real_file_matches_reference_figures(real_data_path):
    loaded = load_data(real_data_path)
    report = loaded.report
    assert (loaded.kind, loaded.is_synthetic, loaded.has_features) == ("kaggle", False, True)
    assert report.rows_read == 110_527
    assert report.dropped_negative_age == 1
    assert report.dropped_negative_lead == 5
    assert report.rows_kept == len(loaded.frame) == 110_521
    assert report.no_show_rate == pytest.approx(0.2019, abs=5e-5)
    raw = pd.read_csv(real_data_path, usecols=["No-show"])
    assert (raw["No-show"] == "Yes").mean() == pytest.approx(0.2019, abs=5e-5)


def test_real_file_has_the_contract_columns_and_types(real_data_path):
    frame = load_data(real_data_path).frame
    assert list(frame.columns) == list(FEATURE_COLUMNS)
    assert frame["patient_id"].dtype == np.int64
    assert frame["record_id"].is_unique
    assert pd.api.types.is_datetime64_any_dtype(frame["scheduled_at"])
    assert (frame["appointment_day"] == frame["appointment_day"].dt.normalize()).all()
    assert set(frame["gender"]) == {"F", "M"}
    assert frame["lead_days"].min() == 0
    assert frame["booking_hour"].between(0, 23).all()
    assert set(frame["age_band"]) == set(AGE_BANDS)
    assert set(frame["weekday"]) == {
        "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday",
    }  # fmt: skip
    assert (frame["handicap"] > 1).sum() == 199
    assert frame["handicap"].max() == 4
    assert set(np.unique(frame[["scholarship", "sms_received", "no_show"]])) == {0, 1}
    assert (frame["prior_no_shows"] <= frame["prior_appointments"]).all()
    assert frame["statement"].str.len().min() > 100


def test_real_file_loads_in_seconds_and_is_cached(real_data_path):
    data_module.clear_cache()
    start = time.perf_counter()
    load_data(real_data_path)
    first = time.perf_counter() - start
    start = time.perf_counter()
    load_data(real_data_path)
    second = time.perf_counter() - start
    assert first < 15  # about 2 s on a free 2-core machine
    assert second < 0.5


# ----------------------------------------------------------------------------- cache


def test_load_data_returns_copies_the_caller_may_change(tmp_path):
    path = write_csv(tmp_path / "k.csv", raw_frame([{}, {"Age": 50}]))
    first = load_data(path)
    first.frame.loc[0, "age"] = 99
    first.report.notes.append("mine")
    second = load_data(path)
    assert second.frame.loc[0, "age"] == 30
    assert "mine" not in second.report.notes


def test_load_data_rereads_a_changed_file(tmp_path):
    path = write_csv(tmp_path / "k.csv", raw_frame([{}]))
    assert len(load_data(path).frame) == 1
    write_csv(path, raw_frame([{}, {}]))
    assert len(load_data(path).frame) == 2


# ----------------------------------------------------------------------------- discovery


def test_discovery_prefers_the_env_var(tmp_path, monkeypatch):
    path = write_csv(tmp_path / "env.csv", raw_frame([{}, {}, {}]))
    monkeypatch.setenv("NOSHOW_DATA", str(path))
    loaded = load_data()
    assert loaded.source == str(path)
    assert len(loaded.frame) == 3


def test_discovery_reports_an_env_var_pointing_nowhere(tmp_path, monkeypatch):
    monkeypatch.setenv("NOSHOW_DATA", str(tmp_path / "missing.csv"))
    with pytest.raises(DataError, match="NOSHOW_DATA points to .*missing.csv"):
        load_data()


def test_discovery_uses_the_repo_data_file_without_env(tmp_path, monkeypatch):
    path = write_csv(tmp_path / "KaggleV2-May-2016.csv", raw_frame([{}, {}]))
    monkeypatch.delenv("NOSHOW_DATA", raising=False)
    monkeypatch.setattr(data_module, "DEFAULT_DATA_PATH", path)
    assert load_data().source == str(path)


def test_discovery_falls_back_to_synthetic(tmp_path, monkeypatch):
    monkeypatch.delenv("NOSHOW_DATA", raising=False)
    monkeypatch.setattr(data_module, "DEFAULT_DATA_PATH", tmp_path / "absent.csv")
    loaded = load_data()
    assert (loaded.kind, loaded.is_synthetic) == ("synthetic", True)
    assert loaded.source == "synthetic (generated, seed 0)"


# ----------------------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_for_a_seed():
    pd.testing.assert_frame_equal(make_synthetic(500, seed=3), make_synthetic(500, seed=3))
    assert not make_synthetic(500, seed=3).equals(make_synthetic(500, seed=4))


def test_synthetic_uses_the_raw_kaggle_schema():
    raw = make_synthetic(300)
    assert list(raw.columns) == list(KAGGLE_COLUMNS)
    assert len(raw) == 300
    assert raw["ScheduledDay"].str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ").all()
    assert raw["AppointmentDay"].str.fullmatch(r"\d{4}-\d\d-\d\dT00:00:00Z").all()
    assert raw["PatientId"].dtype == np.float64
    assert set(raw["No-show"]) == {"Yes", "No"}


def test_synthetic_appointments_fall_on_weekdays_of_the_real_range():
    days = pd.to_datetime(make_synthetic()["AppointmentDay"]).dt.tz_localize(None)
    assert days.min() >= pd.Timestamp("2016-04-29")
    assert days.max() <= pd.Timestamp("2016-06-08")
    assert (days.dt.dayofweek < 5).all()
    assert (days >= pd.Timestamp("2016-05-30")).mean() > 0.15  # the time split has a test part


def test_synthetic_load_is_flagged_and_cleaned_like_the_real_file():
    loaded = load_data("synthetic")
    assert (loaded.kind, loaded.is_synthetic, loaded.has_features) == ("synthetic", True, True)
    assert loaded.source == "synthetic (generated, seed 0)"
    assert loaded.report.rows_read == 6000
    assert loaded.report.dropped_negative_age == 1
    assert loaded.report.dropped_negative_lead == 1
    assert list(loaded.frame.columns) == list(FEATURE_COLUMNS)
    assert 0.17 < loaded.report.no_show_rate < 0.23


def test_synthetic_no_show_rate_follows_realistic_effects():
    frame = load_data("synthetic").frame
    rate = frame.groupby(frame["lead_days"] > 0)["no_show"].mean()
    assert rate[True] > rate[False] + 0.1
    by_band = frame.groupby("age_band")["no_show"].mean()
    assert by_band["18-34"] > by_band["35-49"] > by_band["65+"]
    by_scholarship = frame.groupby("scholarship")["no_show"].mean()
    assert by_scholarship[1] > by_scholarship[0]


def test_synthetic_history_features_carry_signal():
    frame = load_data("synthetic").frame
    returning = frame[frame["prior_appointments"] > 0]
    assert len(returning) > 0.2 * len(frame)
    missed_before = returning["prior_no_shows"] > 0
    assert returning[missed_before]["no_show"].mean() > returning[~missed_before]["no_show"].mean()


# ----------------------------------------------------------------------------- cleaning


def test_cleaning_computes_lead_weekday_hour_and_age_band():
    raw = raw_frame(
        [
            {"ScheduledDay": "2016-04-28T23:59:59Z", "Age": 17},
            {"ScheduledDay": "2016-04-29T06:05:00Z", "Age": 18},
            {"ScheduledDay": "2016-03-30T12:00:00Z", "Age": 34},
            {"Age": 35},
            {"Age": 49},
            {"Age": 50},
            {"Age": 64},
            {"Age": 65},
            {"Age": 0},
        ]
    )
    frame, _ = clean_kaggle_frame(raw)
    assert frame["lead_days"].tolist()[:3] == [1, 0, 30]
    assert frame["booking_hour"].tolist()[:3] == [23, 6, 12]
    assert set(frame["weekday"]) == {"Friday"}
    assert frame["age_band"].tolist() == [
        "0-17", "18-34", "18-34", "35-49", "35-49", "50-64", "50-64", "65+", "0-17",
    ]  # fmt: skip


def test_cleaning_drops_negative_age_and_negative_lead_and_counts_them():
    raw = raw_frame(
        [
            {"Age": -1},
            {"ScheduledDay": "2016-04-30T09:00:00Z"},
            {"Age": -1, "ScheduledDay": "2016-04-30T09:00:00Z"},  # counted once, as age
            {"No-show": "Yes"},
            {},
        ]
    )
    frame, report = clean_kaggle_frame(raw)
    assert (report.rows_read, report.rows_kept) == (5, 2)
    assert (report.dropped_negative_age, report.dropped_negative_lead) == (2, 1)
    assert report.no_show_rate == 0.5
    assert frame["record_id"].tolist() == [1003, 1004]


def test_cleaning_keeps_handicap_counts_and_maps_labels():
    frame, _ = clean_kaggle_frame(raw_frame([{"Handcap": 3, "No-show": "Yes"}, {}]))
    assert frame["handicap"].tolist() == [3, 0]
    assert frame["no_show"].tolist() == [1, 0]
    assert "3 disabilities" in frame["statement"].iloc[0]


def test_report_to_dict_has_the_contract_keys(tmp_path):
    report = load_data(write_csv(tmp_path / "k.csv", raw_frame([{}]))).report.to_dict()
    assert set(report) == {
        "rows_read", "rows_kept", "dropped_negative_age", "dropped_negative_lead",
        "no_show_rate", "notes",
    }  # fmt: skip


# ----------------------------------------------------------------------------- accepted forms


def test_kaggle_columns_in_any_order_with_extras_load_and_note_the_extras(tmp_path):
    raw = raw_frame([{}, {"Age": 70, "No-show": "Yes"}])
    plain = load_data(write_csv(tmp_path / "plain.csv", raw))
    shuffled = raw[list(reversed(KAGGLE_COLUMNS))].assign(Comment="x")
    other = load_data(write_csv(tmp_path / "shuffled.csv", shuffled))
    pd.testing.assert_frame_equal(plain.frame, other.frame)
    assert any("Comment" in note for note in other.report.notes)


def test_kaggle_columns_in_parquet_load(tmp_path):
    raw = make_synthetic(200, seed=1)
    from_csv = load_data(write_csv(tmp_path / "s.csv", raw)).frame
    raw.to_parquet(tmp_path / "s.parquet")
    from_parquet = load_data(tmp_path / "s.parquet")
    assert from_parquet.kind == "kaggle"
    pd.testing.assert_frame_equal(from_csv, from_parquet.frame)


def test_statement_csv_loads_without_features(tmp_path):
    path = write_text(
        tmp_path / "st.csv",
        'Statement,NoShow\n"A woman, 30.",Yes\nA man.,No\n',
    )
    loaded = load_data(path)
    assert (loaded.kind, loaded.has_features, loaded.is_synthetic) == ("statements", False, False)
    assert list(loaded.frame.columns) == ["record_id", "statement", "no_show"]
    assert loaded.frame["statement"].tolist() == ["A woman, 30.", "A man."]
    assert loaded.frame["no_show"].tolist() == [1, 0]
    assert loaded.frame["record_id"].tolist() == [0, 1]


def test_statement_parquet_keeps_a_valid_split_and_record_ids(tmp_path):
    pd.DataFrame(
        {
            "record_id": [7, 8, 9],
            "Statement": ["a", "b", "c"],
            "NoShow": ["No", "Yes", "No"],
            "split": ["train", "validation", "test"],
        }
    ).to_parquet(tmp_path / "st.parquet")
    frame = load_data(tmp_path / "st.parquet").frame
    assert frame["split"].tolist() == ["train", "validation", "test"]
    assert frame["record_id"].tolist() == [7, 8, 9]


def test_statement_file_with_an_invalid_split_drops_it_with_a_note(tmp_path):
    path = write_text(tmp_path / "st.csv", "Statement,NoShow,split\na,No,train\nb,Yes,holdout\n")
    loaded = load_data(path)
    assert "split" not in loaded.frame.columns
    assert any("'holdout'" in note for note in loaded.report.notes)


# ----------------------------------------------------------------------------- bad input


def assert_data_error(path, *fragments, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        load_data(path, **kwargs)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def test_missing_kaggle_columns_are_named_with_the_accepted_forms(tmp_path):
    raw = raw_frame([{}]).drop(columns=["Age", "No-show"])
    assert_data_error(
        write_csv(tmp_path / "k.csv", raw), "Age, No-show", "Kaggle form", "Statement (text)"
    )


def test_misspelled_column_gets_a_hint(tmp_path):
    raw = raw_frame([{}]).rename(columns={"Hipertension": "Hypertension"})
    assert_data_error(write_csv(tmp_path / "k.csv", raw), "found 'Hypertension'")


def test_unrelated_columns_list_both_forms(tmp_path):
    path = write_text(tmp_path / "x.csv", "a,b\n1,2\n")
    assert_data_error(path, "Statement, NoShow", "Columns found: a, b", "Accepted forms")


def test_unparseable_date_names_column_value_and_line(tmp_path):
    text = f"{HEADER}\n{GOOD_LINE}\n" + GOOD_LINE.replace(
        "2016-04-29T08:00:00Z", "29/04/2016 08:00"
    ).replace("1000", "1001")
    assert_data_error(
        write_text(tmp_path / "k.csv", text + "\n"),
        "'ScheduledDay'",
        "'29/04/2016 08:00'",
        "line 3",
    )


def test_unparseable_age_names_column_value_and_line(tmp_path):
    lines = [GOOD_LINE.replace("1000", str(1000 + i)) for i in range(3)]
    lines[2] = lines[2].replace(",30,", ",thirty,")
    text = HEADER + "\n" + "\n".join(lines) + "\n"
    assert_data_error(write_text(tmp_path / "k.csv", text), "'Age'", "'thirty'", "line 4")


def test_empty_cell_is_reported_as_empty(tmp_path):
    text = f"{HEADER}\n{GOOD_LINE.replace(',30,', ',,')}\n"
    assert_data_error(write_text(tmp_path / "k.csv", text), "'Age'", "an empty cell", "line 2")


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("Gender", "X", "F or M"),
        ("Handcap", 5, "from 0 to 4"),
        ("SMS_received", 2, "0 or 1"),
        ("No-show", "Maybe", "Yes or No"),
        ("AppointmentDay", "soon", "ISO dates"),
    ],
)
def test_out_of_range_values_are_refused(tmp_path, column, value, expected):
    path = write_csv(tmp_path / "k.csv", raw_frame([{}, {column: value}]))
    assert_data_error(path, f"'{column}'", expected, "line 3")


def test_duplicate_appointment_ids_are_refused(tmp_path):
    path = write_csv(tmp_path / "k.csv", raw_frame([{"AppointmentID": 5}, {"AppointmentID": 5}]))
    assert_data_error(path, "'AppointmentID'", "unique")


def test_zero_byte_file_is_refused(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    assert_data_error(path, "is empty (0 bytes)")


def test_header_only_file_is_refused(tmp_path):
    assert_data_error(write_text(tmp_path / "h.csv", HEADER + "\n"), "no data rows")


def test_blank_lines_only_file_is_refused(tmp_path):
    assert_data_error(write_text(tmp_path / "b.csv", "\n\n  \n"), "only blank lines")


def test_non_utf8_text_is_refused_with_the_line(tmp_path):
    text = f"{HEADER}\n{GOOD_LINE}\n{GOOD_LINE.replace('CENTRO', 'SÃO PEDRO').replace('1000', '1001')}\n"
    path = tmp_path / "latin1.csv"
    path.write_bytes(text.encode("latin-1"))
    assert_data_error(path, "not UTF-8", "line 3", "CSV UTF-8")


def test_binary_file_is_refused(tmp_path):
    path = tmp_path / "blob.csv"
    path.write_bytes(bytes(range(256)) * 8)
    assert_data_error(path, "binary")


def test_excel_file_is_refused_with_advice(tmp_path):
    path = tmp_path / "sheet.xlsx"
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    assert_data_error(path, "Excel", "CSV UTF-8")


def test_corrupt_parquet_is_refused(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"PAR1 not really parquet")
    assert_data_error(path, "not a readable Parquet file")


def test_semicolon_csv_is_refused_with_advice(tmp_path):
    path = write_text(tmp_path / "semi.csv", "Statement;NoShow\na;Yes\n")
    assert_data_error(path, "';' as separator")


def test_file_over_max_bytes_is_refused(tmp_path):
    path = write_csv(tmp_path / "k.csv", raw_frame([{}] * 20))
    assert_data_error(path, "over the", "limit", max_bytes=100)


def test_statement_labels_other_than_yes_no_are_listed(tmp_path):
    path = write_text(tmp_path / "st.csv", "Statement,NoShow\na,Yes\nb,1\nc,Maybe\nd,no\n")
    message = assert_data_error(path, "'NoShow'", "'1' on line 3", "'Maybe' on line 4")
    assert "2 row(s)" in message  # lower-case "no" is accepted


def test_empty_statements_are_refused(tmp_path):
    path = write_text(tmp_path / "st.csv", 'Statement,NoShow\na,Yes\n"  ",No\n,No\n')
    assert_data_error(path, "'Statement' is empty on 2 row(s)", "line 3, line 4")


def test_missing_path_is_refused(tmp_path):
    assert_data_error(tmp_path / "nope.csv", "does not exist")


def test_directory_is_refused(tmp_path):
    assert_data_error(tmp_path, "is a folder")


def test_load_data_writes_nothing(tmp_path):
    good = write_csv(tmp_path / "k.csv", raw_frame([{}, {}]))
    bad = write_text(tmp_path / "bad.csv", "a,b\n1,2\n")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    load_data(good)
    with pytest.raises(DataError):
        load_data(bad)
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert after == before


def test_errors_never_leak_a_pandas_traceback_type(tmp_path):
    # A malformed row (too many fields) must surface as DataError, not pandas' ParserError.
    path = write_text(tmp_path / "k.csv", f"{HEADER}\n{GOOD_LINE}\n{GOOD_LINE},extra,cells\n")
    message = assert_data_error(path, "not valid CSV")
    assert re.search(r"line 3", message)
