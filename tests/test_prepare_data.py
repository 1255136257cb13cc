"""Exporting the Statement/NoShow data set (noshow.data.export.export_statements) and its CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import datasets
import pandas as pd
import pytest

from noshow.data.clean import DataError
from noshow.data.export import export_statements
from noshow.data.load import load_data
from noshow.data.splits import split_data
from noshow.data.synthetic import make_synthetic

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "prepare_data.py"
EXPORT_COLUMNS = ["record_id", "Statement", "NoShow", "split"]


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("src") / "small.csv"
    make_synthetic(400, seed=1).to_csv(path, index=False)
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300
    )


def test_export_writes_parquet_csv_and_datasetdict(tmp_path, small_csv):
    loaded = load_data(small_csv)
    out = tmp_path / "prepared"
    summary = export_statements(loaded, "time", out)
    parquet = pd.read_parquet(out / "statements.parquet")
    csv = pd.read_csv(out / "statements.csv")
    assert list(parquet.columns) == EXPORT_COLUMNS
    pd.testing.assert_frame_equal(parquet, csv, check_dtype=False)
    assert len(parquet) == loaded.report.rows_kept
    assert set(parquet["NoShow"]) == {"Yes", "No"}
    expected = split_data(loaded.frame, "time")
    assert parquet["split"].tolist() == expected["split"].tolist()
    assert parquet["Statement"].tolist() == expected["statement"].tolist()
    dataset = datasets.load_from_disk(str(out / "hf"))
    assert set(dataset) == {"train", "validation", "test"}
    for name in ("train", "validation", "test"):
        assert dataset[name].num_rows == summary["rows"][name] == (parquet["split"] == name).sum()
        assert dataset[name].column_names == ["record_id", "Statement", "NoShow"]
    assert json.loads((out / "summary.json").read_text())["rows"] == summary["rows"]
    assert summary["template_version"] == "v1"


def test_export_summary_reports_rates_and_drops(tmp_path, small_csv):
    summary = export_statements(load_data(small_csv), "patient", tmp_path / "out")
    parquet = pd.read_parquet(tmp_path / "out" / "statements.parquet")
    for name, rate in summary["no_show_rate"].items():
        part = parquet[parquet["split"] == name]
        assert rate == pytest.approx((part["NoShow"] == "Yes").mean())
    assert summary["cleaning"]["dropped_negative_age"] == 1
    assert summary["cleaning"]["dropped_negative_lead"] == 1
    assert summary["split_method"] == "patient"


def test_exported_file_loads_back_with_its_split(tmp_path, small_csv):
    export_statements(load_data(small_csv), "random", tmp_path / "out", formats=["parquet"])
    assert not (tmp_path / "out" / "statements.csv").exists()
    reloaded = load_data(tmp_path / "out" / "statements.parquet")
    assert reloaded.kind == "statements"
    original = pd.read_parquet(tmp_path / "out" / "statements.parquet")
    assert reloaded.frame["record_id"].tolist() == original["record_id"].tolist()
    kept = split_data(reloaded.frame, "time")  # the file's own split wins
    assert kept["split"].tolist() == original["split"].tolist()


def test_export_replaces_its_own_earlier_output(tmp_path, small_csv):
    loaded = load_data(small_csv)
    export_statements(loaded, "time", tmp_path / "out")
    export_statements(loaded, "random", tmp_path / "out", formats=["csv"])
    assert not (tmp_path / "out" / "statements.parquet").exists()
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["split_method"] == "random"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folders left


def test_export_refuses_to_replace_a_folder_it_did_not_write(tmp_path, small_csv):
    out = tmp_path / "data"
    out.mkdir()
    (out / "KaggleV2-May-2016.csv").write_text("precious")
    with pytest.raises(DataError, match="prepare_data did not write"):
        export_statements(load_data(small_csv), "time", out)
    assert (out / "KaggleV2-May-2016.csv").read_text() == "precious"


def test_failed_export_leaves_no_half_written_folder(tmp_path, small_csv, monkeypatch):
    loaded = load_data(small_csv)
    export_statements(loaded, "time", tmp_path / "out")
    before = (tmp_path / "out" / "statements.csv").read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(datasets.DatasetDict, "save_to_disk", fail)
    with pytest.raises(OSError, match="disk full"):
        export_statements(loaded, "random", tmp_path / "out")
    with pytest.raises(OSError, match="disk full"):
        export_statements(loaded, "random", tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()
    assert (tmp_path / "out" / "statements.csv").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_export_refuses_unknown_formats(tmp_path, small_csv):
    with pytest.raises(DataError, match="Unknown export format.*xlsx"):
        export_statements(load_data(small_csv), "time", tmp_path / "out", formats=["xlsx"])
    assert not (tmp_path / "out").exists()


def test_cli_prints_a_summary_table(tmp_path, small_csv):
    out = tmp_path / "prepared"
    result = run_cli("--source", str(small_csv), "--split", "patient", "--out", str(out))
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.strip()}
    summary = json.loads((out / "summary.json").read_text())
    for name in ("train", "validation", "test"):
        assert rows[name][1] == f"{summary['rows'][name]:,}"
        assert rows[name][2] == f"{summary['no_show_rate'][name]:.1%}"
    assert "dropped 1 with Age < 0 and 1 booked after" in result.stdout
    assert (out / "statements.parquet").exists() and (out / "statements.csv").exists()


def test_cli_reports_bad_input_without_a_traceback(tmp_path):
    result = run_cli("--source", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()


def test_cli_on_real_file_matches_reference_figures(tmp_path, real_data_path):
    out = tmp_path / "prepared"
    result = run_cli("--source", str(real_data_path), "--split", "time", "--out", str(out))
    assert result.returncode == 0, result.stderr
    test_line = next(line for line in result.stdout.splitlines() if line.startswith("test"))
    assert test_line.split()[1:] == ["35,243", "18.5%"]
    assert "Rows read 110,527; dropped 1 with Age < 0 and 5 booked after" in result.stdout
    assert datasets.load_from_disk(str(out / "hf"))["test"].num_rows == 35_243
