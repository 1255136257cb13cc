"""Bad data, as a table: every input names its expected message (or that it loads), and each
case checks that nothing was written beside the file and the file itself is unchanged.

- `load_data` on wrong headers, shuffled/extra columns, an empty cell in each column, dates
  in other formats, ages as text, 0-byte / binary / non-UTF-8 / ZIP / UTF-16 files, a file
  over the size limit, and a 1-million-row CSV (time and peak memory bounded; marked slow).
- The app's upload path (Data tab, public demo mode) on the same kinds of files: a message,
  and the previously loaded data kept; an upload over the size limit is refused by the server.
- CSV exports (labels, Compare batch predictions, prepare_data's statements.csv) never hold a
  cell a spreadsheet would run as a formula.

    .venv/bin/python -m pytest -q tests/robustness/test_robust_data.py
"""

from __future__ import annotations

import html
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from robust_helpers import REPO, formula_cells, half_written, launch_app, tree

from noshow.data.clean import KAGGLE_COLUMNS, DataError
from noshow.data.load import load_data

ROWS = 300


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    """A small, valid raw Kaggle table (synthetic rows with the real schema)."""
    from noshow.data.synthetic import make_synthetic

    return make_synthetic(n_rows=ROWS, seed=5)


def csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode("utf-8")


def with_cell(raw: pd.DataFrame, column: str, value: str, row: int = 5) -> bytes:
    frame = raw.astype(str)
    frame.loc[row, column] = value
    return csv_bytes(frame)


def with_dates(raw: pd.DataFrame, fmt: str) -> bytes:
    frame = raw.copy()
    frame["ScheduledDay"] = pd.to_datetime(frame["ScheduledDay"]).dt.strftime(fmt)
    return csv_bytes(frame)


def statements_csv(statements: list[str]) -> bytes:
    labels = ["Yes" if i % 3 == 0 else "No" for i in range(len(statements))]
    return csv_bytes(pd.DataFrame({"Statement": statements, "NoShow": labels}))


@dataclass(frozen=True)
class Case:
    make: Callable[[pd.DataFrame], bytes]
    """The file's bytes, from the valid raw table."""
    expect: tuple[str, ...] = ()
    """Substrings of the DataError message; empty = the file loads."""
    check: Callable[[pd.DataFrame, object], None] | None = None
    """For files that load: (raw, LoadedData) -> assertions."""
    suffix: str = ".csv"
    max_bytes: int | None = None


def same_as_original(raw, loaded) -> None:
    original = tmp_file("original.csv", csv_bytes(raw))
    pd.testing.assert_frame_equal(loaded.frame, load_data(original).frame)


def notes_mention(text: str) -> Callable:
    def check(raw, loaded) -> None:
        assert any(text in note for note in loaded.report.notes), loaded.report.notes
        assert loaded.report.rows_read == ROWS

    return check


def tmp_file(name: str, data: bytes) -> Path:
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="noshow-robust-")) / name
    path.write_bytes(data)
    return path


CASES = {
    "wrong header (lower case)": Case(
        lambda r: csv_bytes(r.rename(columns=str.lower)),
        ("is missing column(s)", "Columns found: patientid", "Accepted forms"),
    ),
    "wrong header (American spelling)": Case(
        lambda r: csv_bytes(r.rename(columns={"Hipertension": "Hypertension"})),
        ("found 'Hypertension' where 'Hipertension' is expected",),
    ),
    "no header row": Case(
        lambda r: r.to_csv(index=False, header=False).encode(), ("is missing column(s)",)
    ),
    "unrelated table": Case(
        lambda r: b"Name,Colour\nana,blue\n", ("Statement (text) and NoShow (Yes/No)",)
    ),
    "header only": Case(lambda r: csv_bytes(r.head(0)), ("has a header", "but no data rows")),
    "shuffled columns": Case(
        lambda r: csv_bytes(r[list(reversed(r.columns))]), check=same_as_original
    ),
    "extra columns": Case(
        lambda r: csv_bytes(r.assign(Comment="x", Clinic=1)),
        check=notes_mention("Ignored extra column(s): Comment, Clinic"),
    ),
    "dates as DD/MM/YYYY": Case(
        lambda r: with_dates(r, "%d/%m/%Y"),
        ("column 'ScheduledDay' must hold ISO dates", "on line 2", f"({ROWS} rows in all)"),
    ),
    "dates as MM/DD/YYYY HH:MM": Case(
        lambda r: with_dates(r, "%m/%d/%Y %H:%M"), ("must hold ISO dates", "on line 2")
    ),
    "dates as DD.MM.YYYY": Case(lambda r: with_dates(r, "%d.%m.%Y"), ("must hold ISO dates",)),
    "dates as 'Apr 29, 2016'": Case(lambda r: with_dates(r, "%b %d, %Y"), ("ISO dates",)),
    "dates without time (ISO)": Case(
        lambda r: with_dates(r, "%Y-%m-%d"),
        check=lambda r, loaded: (loaded.frame["scheduled_at"].dt.hour == 0).all(),
    ),
    "age as a word": Case(
        lambda r: with_cell(r, "Age", "thirty"),
        ("column 'Age' must hold whole numbers, but has 'thirty' on line 7",),
    ),
    "age with decimals": Case(lambda r: with_cell(r, "Age", "34.5"), ("has 34.5 on line 7",)),
    "age as 34.0": Case(
        lambda r: with_cell(r, "Age", "34.0"),
        check=lambda r, loaded: (loaded.frame["age"] >= 0).all(),
    ),
    "0-byte file": Case(lambda r: b"", ("is empty (0 bytes)",)),
    "blank lines only": Case(lambda r: b"\n \n\n", ("holds only blank lines",)),
    "binary file": Case(
        lambda r: bytes(range(256)) * 40, ("looks like a binary file, not CSV text",)
    ),
    "PNG image named .csv": Case(
        lambda r: b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 200, ("binary file",)
    ),
    "Excel file named .csv": Case(lambda r: b"PK\x03\x04" + b"\x01" * 300, ("ZIP or Excel",)),
    "Latin-1 text": Case(
        lambda r: r.assign(Neighbourhood="SÃO PEDRO").to_csv(index=False).encode("latin-1"),
        ("is not UTF-8 text", "on line 2", "iconv"),
    ),
    "UTF-16 text": Case(lambda r: r.to_csv(index=False).encode("utf-16"), ("UTF-16 text",)),
    "semicolon separators": Case(
        lambda r: r.to_csv(index=False, sep=";").encode(), ("uses ';' as separator",)
    ),
    "ragged rows": Case(
        lambda r: csv_bytes(r.head(5)) + b"1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16\n",
        ("is not valid CSV",),
    ),
    "corrupt Parquet": Case(
        lambda r: b"PAR1" + b"\x00" * 100, ("not a readable Parquet file",), suffix=".parquet"
    ),
    "over the size limit": Case(
        lambda r: csv_bytes(r), ("kB, over the 1 kB limit", "Use a smaller file"), max_bytes=1000
    ),
    "Statement/NoShow with an empty statement": Case(
        lambda r: b"Statement,NoShow\nA patient.,No\n ,Yes\n",
        ("column 'Statement' is empty on 1 row(s) (line 3)",),
    ),
    "Statement/NoShow with labels 1/0": Case(
        lambda r: b"Statement,NoShow\nA patient.,1\nAnother.,0\n",
        ("must be Yes (missed) or No (attended)", "1 on line 2, 0 on line 3"),
    ),
    "Statement/NoShow with formulas and other languages": Case(
        lambda r: statements_csv(
            ['=HYPERLINK("http://x","y")', "+1+1", "Paciente de 34 anos.", "患者预约。"] * 5
        ),
        check=lambda r, loaded: loaded.frame["statement"].iloc[0].startswith("=HYPERLINK"),
    ),
}
# An empty cell in each Kaggle column (line 7 of the file).
for _column in KAGGLE_COLUMNS:
    if _column == "Neighbourhood":  # allowed: the statement leaves the place out
        CASES[f"empty {_column}"] = Case(
            lambda r: with_cell(r, "Neighbourhood", ""),
            check=notes_mention("1 row(s) have an empty Neighbourhood"),
        )
    else:
        CASES[f"empty {_column}"] = Case(
            lambda r, c=_column: with_cell(r, c, ""),
            (f"column '{_column}' must hold", "but has an empty cell on line 7"),
        )


@pytest.mark.parametrize("name", list(CASES))
def test_load_data_input(name, raw, tmp_path):
    case = CASES[name]
    path = tmp_path / f"input{case.suffix}"
    path.write_bytes(case.make(raw))
    before = tree(tmp_path)
    kwargs = {"max_bytes": case.max_bytes} if case.max_bytes else {}
    if case.expect:
        with pytest.raises(DataError) as err:
            load_data(path, **kwargs)
        message = str(err.value)
        assert message.startswith(str(path)), message  # names the file
        for part in case.expect:
            assert part in message, message
        assert "Traceback" not in message
    else:
        loaded = load_data(path, **kwargs)
        case.check(raw, loaded)
    assert tree(tmp_path) == before  # load_data never writes, the input is unchanged


@pytest.mark.slow
def test_a_million_row_csv_loads_within_bounded_time_and_memory(tmp_path):
    """1,000,000 rows (about 100 MB): 50 copies of 20,000 synthetic rows with fresh
    AppointmentIDs. Loaded in a child process so its peak memory is its own; measured on the
    2-core CI machine: about 8 s and 1.8 GB above the interpreter (bounds are 3x that)."""
    path = tmp_path / "million.csv"
    script = textwrap.dedent(
        f"""
        import json, resource, time
        from noshow.data.synthetic import make_synthetic
        raw = make_synthetic(n_rows=20_000, seed=1)
        header, *body = raw.to_csv(index=False).splitlines()
        with open({str(path)!r}, "w") as f:
            f.write(header + "\\n")
            for k in range(50):
                for line in body:
                    patient, appointment, rest = line.split(",", 2)
                    f.write(f"{{patient}},{{int(appointment) + k * 10_000_000}},{{rest}}\\n")
        from noshow.data.load import load_data
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        loaded = load_data({str(path)!r})
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({{"rows_read": loaded.report.rows_read, "rows": len(loaded.frame),
                          "seconds": seconds, "peak_delta_mb": (peak - base) / 1024}}))
        """
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", script],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
    finally:
        path.unlink(missing_ok=True)  # 100 MB: not kept in pytest's last three temp folders
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["rows_read"] == 1_000_000
    assert result["rows"] > 990_000  # a few synthetic rows are dropped as booked-after
    assert result["seconds"] < 120, result  # a hang guard, not a speed goal (BENCHMARKS.md)
    assert result["peak_delta_mb"] < 5_500, result
    print(f"\n1M-row CSV: {result}")


# ----------------------------------------------------------------------------- the upload path

UPLOAD_LIMIT = 200_000


@pytest.fixture(scope="module")
def data_app(tmp_path_factory):
    """The public-demo app (uploads allowed, server paths not), uploads capped at 200 kB."""
    served = launch_app(
        tmp_path_factory.mktemp("upload-runs"), demo_mode=True, max_file_size=UPLOAD_LIMIT
    )
    yield served
    served.client.close()
    served.demo.close()


UPLOADS = {
    "good Kaggle file": (lambda r: csv_bytes(r), "Loaded upload.csv: "),
    "0-byte file": (lambda r: b"", "is empty (0 bytes)"),
    "binary file": (lambda r: bytes(range(256)) * 40, "looks like a binary file"),
    "Latin-1 text": (
        lambda r: r.assign(Neighbourhood="SÃO PEDRO").to_csv(index=False).encode("latin-1"),
        "is not UTF-8 text",
    ),
    "wrong header": (lambda r: csv_bytes(r.rename(columns=str.lower)), "is missing column(s)"),
    "dates in another format": (lambda r: with_dates(r, "%d/%m/%Y"), "must hold ISO dates"),
    "age as text": (lambda r: with_cell(r, "Age", "thirty"), "'thirty' on line 7"),
    "formulas in statements": (
        lambda r: statements_csv(["=1+1", "@SUM(A1)", "-3 days", "Normal."] * 5),
        "Loaded upload.csv: 20 rows",
    ),
}


@pytest.mark.parametrize("name", list(UPLOADS))
def test_app_upload(name, raw, data_app, tmp_path):
    """Each bad upload answers with its message and keeps the data already on screen."""
    from gradio_client import Client, handle_file

    make, expected = UPLOADS[name]
    client = Client(data_app.url, verbose=False)  # one browser session per case
    first, *_ = client.predict("Bundled synthetic", None, "", "time", api_name="/load_data")
    assert "Loaded bundled synthetic data" in first
    _, shown, _ = client.predict(api_name="/filter_rows")
    path = tmp_path / "upload.csv"
    path.write_bytes(make(raw))
    message, *_ = client.predict(
        "Upload a file", handle_file(str(path)), "", "random", api_name="/load_data"
    )
    message = html.unescape(message)
    assert expected in message, message
    assert "/gradio/" not in message  # the upload's name, not the server's temp path
    if "Loaded" not in expected:
        assert "noshow-msg-error" in message and "Still showing bundled synthetic data" in message
        _, caption, _ = client.predict(api_name="/filter_rows")
        assert caption == shown  # the synthetic rows are still there
    client.close()


def test_app_upload_over_the_size_limit_is_refused_before_it_is_stored(raw, data_app, tmp_path):
    import httpx

    big = csv_bytes(pd.concat([raw] * 20))
    assert len(big) > UPLOAD_LIMIT
    response = httpx.post(
        data_app.url + "gradio_api/upload", files={"files": ("big.csv", big)}, timeout=30
    )
    assert response.status_code == 413
    assert "maximum allowed size" in response.text


def test_launch_settings_cap_uploads_at_the_data_limit():
    from noshow.app.demo import launch_kwargs
    from noshow.data.load import MAX_BYTES

    assert launch_kwargs()["max_file_size"] == MAX_BYTES


# ----------------------------------------------------------------------------- CSV exports

FORMULAS = [
    '=HYPERLINK("http://evil.example","click")',
    "=cmd|' /C calc'!A0",
    "+1+1",
    "-2+3",
    "@SUM(A1:A9)",
    "\t=1+1",
    "\r=1+1",
]


def export_labels(tmp_path: Path) -> Path:
    from noshow.labels.export import export_csv
    from noshow.labels.store import LabelStore

    with LabelStore(tmp_path / "labels.sqlite") as store:
        for i, text in enumerate(FORMULAS):
            store.submit(i, "no_show", f"{text} (annotator)"[:100], statement=text, note=text)
        return export_csv(store, tmp_path / "labels.csv")


def export_compare_predictions(tmp_path: Path) -> Path:
    from noshow.app.compare_batch import write_predictions_csv

    frame = pd.DataFrame(
        {
            "record_id": range(len(FORMULAS)),
            "statement": FORMULAS,
            "p_generative": [-0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
            "lead_days": [-1, 0, 1, 2, 3, 4, 5],
        }
    )
    return write_predictions_csv(frame, folder=tmp_path)


def export_prepared_statements(tmp_path: Path) -> Path:
    from noshow.data.export import export_statements

    source = tmp_path / "statements-in.csv"
    source.write_bytes(statements_csv(FORMULAS * 6))
    export_statements(load_data(source), "random", tmp_path / "prepared", formats=("csv",))
    return tmp_path / "prepared" / "statements.csv"


@pytest.mark.parametrize(
    "export",
    [export_labels, export_compare_predictions, export_prepared_statements],
    ids=["labels export", "Compare batch CSV", "prepare_data statements.csv"],
)
def test_csv_exports_never_hold_a_runnable_formula(export, tmp_path):
    path = export(tmp_path)
    assert formula_cells(path) == []
    text = path.read_text(encoding="utf-8-sig")
    assert "'=HYPERLINK" in text and "'+1+1" in text  # escaped, not dropped
    assert half_written(tmp_path) == []


def test_prepared_parquet_keeps_the_exact_text(tmp_path):
    from noshow.data.export import export_statements

    source = tmp_path / "statements-in.csv"
    source.write_bytes(statements_csv(FORMULAS * 6))
    export_statements(load_data(source), "random", tmp_path / "prepared")
    table = pd.read_parquet(tmp_path / "prepared" / "statements.parquet")
    assert set(table["Statement"]) == {f.strip() for f in FORMULAS}


def test_app_refuses_a_file_over_the_limit_without_reading_it_first(raw, tmp_path, monkeypatch):
    """The Data tab keys its cache by a hash of the file's bytes; a file over the limit must
    be refused by its size alone (hashing 5 GB would stall the app for a minute)."""
    from noshow.app import data_views
    from noshow.app.common import DataCache
    from noshow.data import load as data

    path = tmp_path / "big.csv"
    path.write_bytes(csv_bytes(raw))
    monkeypatch.setattr(data, "MAX_BYTES", 1000)
    monkeypatch.setattr(data.load_data, "__kwdefaults__", {"max_bytes": 1000})

    def no_hashing(path):
        raise AssertionError("the file was read before its size was checked")

    monkeypatch.setattr(data_views, "file_fingerprint", no_hashing)
    with pytest.raises(DataError, match="over the 1 kB limit"):
        data_views.load_entry(DataCache(), str(path))
