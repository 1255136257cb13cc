"""The Data tab's answers as a user reads them: an upload named by its own name (never the
server's temporary path), filters the loaded data cannot apply hidden or said to be
ignored, summary plots that stay meaningful under a Label filter, and Yes/No in the record
view as in the table. Pure view functions, then the running app driven by gradio_client
(bundled synthetic data, uploads of a Statement/NoShow CSV).

    .venv/bin/python -m pytest -q tests/test_data_tab.py

The browser checks (Enter in a filter box, the hidden filters on screen) are in
tests/test_browser.py.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from conftest import REPO, free_port

from noshow.app import data_plots
from noshow.app import data_views as dv
from noshow.app.common import DataCache
from noshow.app.data_tab import SOURCE_SYNTHETIC, SOURCE_UPLOAD


def statements_frame(n: int = 40) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Statement": [f"A {20 + i}-year-old patient booked {i} days ahead." for i in range(n)],
            "NoShow": ["Yes" if i % 4 == 0 else "No" for i in range(n)],
        }
    )


@pytest.fixture(scope="module")
def synthetic_entry():
    return dv.load_entry(DataCache(), "synthetic", split_method="time")


@pytest.fixture(scope="module")
def statements_entry(tmp_path_factory):
    path = tmp_path_factory.mktemp("statements") / "clinic.csv"
    statements_frame().to_csv(path, index=False)
    return dv.load_entry(DataCache(), str(path), split_method="random", label="clinic.csv")


# ----------------------------------------------------------------------------- start-up

# A fresh interpreter (as after `make run`): build the app, then list every import written
# inside a function of the package (what a request may import) that is not done yet.
FRESH_START = """
import ast, importlib, json, sys, tempfile
from pathlib import Path
from noshow.app.demo import build_demo
from noshow.training.jobs import JobManager
runs = tempfile.mkdtemp()
build_demo(jobs=JobManager(runs_dir=runs), store=None, runs_dir=runs, data_source="synthetic")
optional = set(sys.argv[1].split(","))
missing = []
for path in sorted(Path("noshow").rglob("*.py")):
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for inner in ast.walk(node):
            if isinstance(inner, ast.Import):
                names = [(a.name, None) for a in inner.names]
            elif isinstance(inner, ast.ImportFrom) and inner.level == 0:
                names = [(inner.module, a.name) for a in inner.names]
            else:
                continue
            for module, attr in names:
                if module.split(".")[0] in optional:
                    continue
                if module not in sys.modules:
                    missing.append(module)
                    continue
                before = set(sys.modules)
                getattr(sys.modules[module], attr or "__name__", None)
                if set(sys.modules) - before:  # a lazy name that imports on first use
                    missing.append(module + "." + attr)
print(json.dumps(sorted(set(missing))))
"""


def test_app_imports_what_requests_need_before_the_first_request():
    # The first page load fires several events at once, each on its own worker thread; two
    # of them importing transformers' lazy modules together showed "(cannot render the chat
    # prompt: cannot import name 'AutoTokenizer' from 'transformers' (<server path>))".
    import subprocess
    import sys

    from noshow.app.startup import OPTIONAL_IMPORTS

    done = subprocess.run(
        [sys.executable, "-c", FRESH_START, ",".join(OPTIONAL_IMPORTS)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_messages_name_no_server_path():
    from noshow.app.common import user_message

    error = ImportError(
        "cannot import name 'AutoTokenizer' from 'transformers' "
        "(/srv/app/.venv/lib/python3.11/site-packages/transformers/__init__.py)"
    )
    assert user_message(error) == (
        "Unexpected error (ImportError): cannot import name 'AutoTokenizer' from 'transformers'"
    )
    row = dv.load_entry(DataCache(), "synthetic", split_method="time").frame.iloc[0]

    class Broken:
        chat_template = "x"

        def apply_chat_template(self, *args, **kwargs):
            raise error

    prompt = dv.record_views(row, Broken()).generative_prompt
    assert prompt.startswith("(cannot render the chat prompt") and "/" not in prompt


# ----------------------------------------------------------------------------- pure views


def test_report_names_the_data_by_its_label_not_the_stored_path(statements_entry):
    text = dv.report_markdown(statements_entry)
    assert "**Source:** `clinic.csv` (Statement/NoShow file)" in text
    assert statements_entry.loaded.source not in text


def test_a_statements_file_hides_every_feature_filter_and_says_why(statements_entry):
    hidden = dv.unavailable_filters(statements_entry.frame)
    assert hidden == [n for n in dv.FILTER_COLUMNS if n not in ("split", "label")]
    assert dv.unavailable_filters_note(statements_entry.frame, "clinic.csv") == (
        "The age, gender, SMS, scholarship, neighbourhood and lead days filters are hidden: "
        "clinic.csv has statements only, without those columns. Load the Kaggle file to "
        "filter by them."
    )


def test_the_kaggle_form_hides_no_filter(synthetic_entry):
    assert dv.unavailable_filters(synthetic_entry.frame) == []
    assert dv.unavailable_filters_note(synthetic_entry.frame, "x") == ""


@pytest.mark.parametrize(
    ("name", "value", "is_set"),
    [("age_min", 0, False), ("age_min", 1, True), ("age_max", dv.AGE_MAX, False)]
    + [("lead_max", 30, True), ("gender", dv.ALL, False), ("gender", "F", True)]
    + [("sms", None, False), ("lead_min", None, False)],
)
def test_filter_is_set_only_when_it_narrows_the_rows(name, value, is_set):
    assert dv.filter_is_set(name, value) is is_set


def test_a_set_filter_the_data_lacks_is_named_as_not_applied(statements_entry):
    values = {"gender": "F", "age_min": 50, "sms": dv.ALL, "label": "No-show"}
    assert dv.ignored_filters_text(statements_entry.frame, values) == (
        " · not applied: the age and gender filter (this data has no such column)"
    )
    assert dv.ignored_filters_text(statements_entry.frame, {"age_max": dv.AGE_MAX}) == ""


def bar_heights(ax) -> list[float]:
    return [round(p.get_height(), 6) for p in ax.patches]


def test_label_filter_rates_are_over_the_other_filters_with_counts_of_the_label(
    synthetic_entry,
):
    frame = synthetic_entry.frame
    figure, caption = data_plots.summary_view(frame, {"label": "No-show", "split": "test"}, "data")
    rows = frame[frame["split"] == "test"]  # the label filter left out of the rates
    expected = data_plots.rate_table(rows, data_plots.lead_bucket(rows["lead_days"]))
    lead_ax = figure.axes[0]
    assert bar_heights(lead_ax) == [round(r, 6) for r in expected["rate"]]
    assert len(set(bar_heights(lead_ax))) > 1  # not 100% everywhere
    marks = [t.get_text() for t in lead_ax.texts]
    first = expected.iloc[0]
    assert marks[0] == f"{first['rate']:.0%}\n{int(first['no_shows']):,}/{int(first['n']):,}"
    assert caption.startswith("**Label = No-show:** within one label every no-show rate")
    assert f"over the {len(rows):,} rows that match the other filters" in caption
    assert f"({int(rows['no_show'].sum()):,} of them No-show)" in caption
    assert "rows that match the other filters" in figure.get_suptitle()


def test_showed_up_filter_counts_the_rows_that_showed_up(synthetic_entry):
    figure, caption = data_plots.summary_view(synthetic_entry.frame, {"label": "Showed up"}, "data")
    table = data_plots.rate_table(synthetic_entry.frame, "weekday")
    monday = table.loc["Monday"]
    shows = int(monday["n"] - monday["no_shows"])
    assert f"{shows:,}/{int(monday['n']):,}" in [
        t.get_text().split("\n")[1] for t in figure.axes[2].texts
    ]
    assert "every no-show rate would read 0%" in caption


def test_without_a_label_filter_the_plots_show_rates_of_the_matching_rows(synthetic_entry):
    figure, caption = data_plots.summary_view(synthetic_entry.frame, {"age_min": 60}, "data")
    n = int((synthetic_entry.frame["age"] >= 60).sum())
    assert caption.startswith(f"No-show rate by feature over the {n:,} matching rows")
    assert figure.axes[0].texts[0].get_text().split("\n")[1].startswith("n=")


def test_statements_only_plots_say_there_are_no_rates_by_feature(statements_entry):
    figure, caption = data_plots.summary_view(
        statements_entry.frame, {"label": "No-show"}, "clinic.csv"
    )
    assert [ax.get_title() for ax in figure.axes] == ["Class balance per split"]
    assert caption.startswith("clinic.csv has statements only")


def test_record_view_says_yes_no_with_the_table_words(synthetic_entry):
    row = synthetic_entry.frame.iloc[0]
    details = dv.record_views(row, SimpleNamespace()).details  # prompt not needed here
    assert f"**no-show:** {'Yes' if row['no_show'] else 'No'}" in details
    for word in ("SMS", "scholarship", "hypertension", "diabetes", "alcoholism"):
        assert re.search(rf"\*\*{word}:\*\* (Yes|No)( ·|$)", details), word
    assert "**earlier no-shows:**" in details and "sms received" not in details


# ----------------------------------------------------------------------------- the app


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from gradio_client import Client

    from noshow.app.demo import build_demo
    from noshow.training.jobs import JobManager

    runs = tmp_path_factory.mktemp("runs")
    demo = build_demo(jobs=JobManager(runs_dir=runs), store=None, runs_dir=runs,
                      data_source="synthetic")  # fmt: skip
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    yield SimpleNamespace(client=lambda: Client(url, verbose=False))
    demo.close()


def upload(client, path, method: str = "random"):
    from gradio_client import handle_file

    return client.predict(SOURCE_UPLOAD, handle_file(str(path)), "", method, api_name="/load_data")


def test_app_names_an_upload_by_its_own_name_in_every_answer(app, tmp_path):
    c = app.client()
    path = tmp_path / "clinic-export.csv"
    statements_frame().to_csv(path, index=False)
    message, _, report, _ = upload(c, path)
    table, caption, _ = c.predict(api_name="/filter_rows")
    record = c.predict(table["data"][0][0], api_name="/show_record")
    _, plot_caption = c.predict(label="No-show", api_name="/data_summary")
    assert "Loaded clinic-export.csv" in message and "`clinic-export.csv`" in report
    assert plot_caption.startswith("clinic-export.csv has statements only")
    answers = json.dumps([message, report, caption, record, plot_caption])
    server_tmp = tempfile.gettempdir()
    assert "/gradio/" not in answers and server_tmp not in answers, answers


def test_app_same_file_uploaded_under_two_names_shows_each_session_its_own(app, tmp_path):
    first, second = tmp_path / "ward-a.csv", tmp_path / "ward-b.csv"
    statements_frame(12).to_csv(first, index=False)
    second.write_bytes(first.read_bytes())
    a, b = app.client(), app.client()
    assert "Loaded ward-a.csv" in upload(a, first)[0]
    assert "Loaded ward-b.csv" in upload(b, second)[0]
    _, caption = a.predict(api_name="/data_summary")
    assert caption.startswith("ward-a.csv") and "ward-b" not in caption


def test_app_filters_the_data_lacks_are_said_not_to_apply(app, tmp_path):
    c = app.client()
    path = tmp_path / "statements.csv"
    statements_frame().to_csv(path, index=False)
    upload(c, path)
    _, caption, _ = c.predict(gender="F", lead_max=30, api_name="/filter_rows")
    assert caption == (
        "Rows 1-40 of 40 matching · page 1 of 1 · not applied: the gender and lead days "
        "filter (this data has no such column)"
    )


def test_app_plots_under_a_label_filter_say_what_the_rates_are_over(app):
    c = app.client()
    c.predict(SOURCE_SYNTHETIC, None, "", "time", api_name="/load_data")
    plot, caption = c.predict(label="No-show", split="test", api_name="/data_summary")
    assert plot is not None
    assert re.match(
        r"\*\*Label = No-show:\*\* .* over the [\d,]+ rows that match the other filters "
        r"\([\d,]+ of them No-show\)",
        caption,
    ), caption


def test_app_record_view_says_yes_no_like_the_table(app):
    c = app.client()
    table, _, _ = c.predict(api_name="/filter_rows")
    rows = pd.DataFrame(table["data"], columns=table["headers"])
    details, *_ = c.predict(int(rows["record_id"].iloc[0]), api_name="/show_record")
    assert f"**no-show:** {rows['no-show'].iloc[0]}" in details
    assert f"**SMS:** {rows['SMS'].iloc[0]}" in details
    flags = re.findall(
        r"\*\*(?:SMS|scholarship|hypertension|diabetes|alcoholism):\*\* (\S+)", details
    )
    assert len(flags) == 5 and set(flags) <= {"Yes", "No"}, details


def test_data_sliders_pass_typed_values_to_the_tab_even_after_an_update():
    """Gradio rebuilds a component from its class on each update (the data load hides and
    shows filters): the range check must stay off in the rebuilt slider too, so the tab (not
    Gradio's nameless pop-up) answers an out-of-range value, and no stub file is written."""
    from noshow.app.data_tab import UncheckedSlider

    slider = UncheckedSlider(0, 120, value=0, step=1, label="Age to")
    rebuilt = slider.__class__(**{**slider.constructor_args, "visible": False, "render": False})
    for component in (slider, rebuilt):
        assert component.preprocess(500) == 500 and component.preprocess(None) is None
        assert component.get_block_name() == "slider"
    assert not list((Path(dv.__file__).parent).glob("*.pyi"))
