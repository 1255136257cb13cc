"""Load, as a smoke test: scripts/load_test.py with 3 users for 5 s against the public-demo app
(two tiny adapters) finishes with zero errors and prints its Markdown table; its users'
answers are judged by scripts/load_users.py. The full run (20 users x 60 s, `make
bench-load`) and its figures are in BENCHMARKS.md ("The app under load").

    .venv/bin/python -m pytest -q tests/robustness/test_robust_load.py
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest
from robust_helpers import REPO, launch_app


@pytest.fixture(scope="module")
def load_test():
    spec = importlib.util.spec_from_file_location("noshow_load_test", REPO / "scripts/load_test.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def load_users(load_test):
    """scripts/load_users.py, imported as load_test.py imports it (scripts/ on the path)."""
    import load_users

    return load_users


def test_three_users_for_five_seconds_get_every_answer(load_test, adapters, capsys):
    served = launch_app(adapters.runs, demo_mode=True)
    try:
        code = load_test.main(
            ["--url", served.url, "--users", "3", "--duration", "5"]
            + ["--generative", adapters.generative, "--classifier", adapters.classifier]
        )
    finally:
        served.client.close()
        served.demo.close()
    out = capsys.readouterr().out
    assert code == 0, out
    row = next(line for line in out.splitlines() if line.startswith("| 3 | 5 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    requests, errors = int(cells[2].replace(",", "")), int(cells[3])
    assert errors == 0 and requests >= 3, out
    assert "## Load test: Compare, 3 users x 5 s" in out
    trip = next(x for x in out.splitlines() if x.startswith("- gradio_client round trip (p50"))
    assert float(trip.rsplit(":", 1)[1].replace("ms", "").replace(",", "")) > 0, trip
    http = next(x for x in out.splitlines() if x.startswith("- one Compare over plain HTTP"))
    total, scoring = (
        float(x.split()[0].replace(",", ""))
        for x in http.split(": ")[-1].split(", of which scoring both adapters ")
    )
    assert 0 < scoring <= total, http


def test_compare_answers_while_the_app_trains_a_job(load_test, adapters, capsys, tmp_path):
    """--while-training: a real `python app.py`, a training job on the bundled model in its
    background thread, one user's Compares answered throughout, the job still running at
    the end of the window and cancelled after it."""
    runs = tmp_path / "runs"  # the job's run folder lands here, not in the shared fixture
    shutil.copytree(adapters.runs, runs)
    gen, clf = (runs / Path(p).name for p in (adapters.generative, adapters.classifier))
    code = load_test.main(
        ["--users", "1", "--duration", "6", "--while-training", "--runs-dir", str(runs)]
        + ["--generative", str(gen), "--classifier", str(clf)]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "## Load test: Compare, 1 users x 6 s while a job trains" in out
    line = next(x for x in out.splitlines() if x.startswith("- while training: run "))
    assert "state at the end running" in line, line
    row = next(x for x in out.splitlines() if x.startswith("| 1 | 6 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert int(cells[3]) == 0 and int(cells[2].replace(",", "")) >= 1, out


def test_report_counts_errors_and_percentiles(load_test, load_users):
    samples = [load_users.Sample(0.0, s / 1000, True, 10.0) for s in range(1, 101)]
    samples.append(load_users.Sample(0.0, 5.0, False, None, "ReadTimeout: no answer"))
    report = load_test.Report(users=2, duration_s=10, samples=samples, first_request_s=1.5)
    text = load_test.markdown(report, "python scripts/load_test.py --users 2")
    assert "| 2 | 10 | 101 | 1 | 10.1 | 51 | 96 | 5,000 | 10 |" in text
    assert "ReadTimeout: no answer" in text
    assert load_users.percentile([], 0.5) is None


@pytest.mark.parametrize(
    ("answer", "ok"),
    [
        (("", {"generative": {"p": 0.4}, "classifier": {"p": 0.6}}, ""), True),
        (("", {"generative": {"p": 0.4}, "classifier": {"p": None, "error": "gone"}}, ""), False),
        (("", {"generative": {"p": float("nan")}, "classifier": {"p": 0.6}}, ""), False),
        (("", None, "The statement is empty"), False),
    ],
    ids=["both scores", "one adapter failed", "NaN", "no result"],
)
def test_an_answer_counts_only_with_two_defined_scores(load_users, answer, ok):
    assert load_users.check_answer(answer)[0] is ok
