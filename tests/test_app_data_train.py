"""The Data and Train tabs: pure view functions, and the running app driven by gradio_client.

The app is launched on a free localhost port with a fake train function (same signature as
noshow.training.recipe.train; reports progress every 50 ms, writes a loss line per step to
metrics.jsonl and an eval.json at the end, and honours should_stop), real run folders, the
real preflight estimate (measured with the tiny random Llama, or a stand-in measurement where
a test needs a slow machine) and the bundled synthetic data.

    .venv/bin/python -m pytest -q tests/test_app_data_train.py
"""

from __future__ import annotations

import html
import socket
import time
from types import SimpleNamespace

import pandas as pd
import pytest

from noshow.app import data_plots
from noshow.app import data_views as dv
from noshow.app import train_form as tf
from noshow.app import train_views as tv
from noshow.app.common import DataCache, error_box, user_message
from noshow.app.data_tab import SOURCE_PATH, SOURCE_SYNTHETIC, SOURCE_UPLOAD, resolve_source
from noshow.app.train_form import SOURCE_SYNTHETIC as TRAIN_SYNTHETIC
from noshow.app.train_form import build_run_config
from noshow.app.train_views import DEMO_REFUSAL, describe_estimate, describe_status
from noshow.config import ConfigError

STEP_S = 0.05
# What the fake run reports at its end (eval.json): the adapter and the tabular baseline.
FAKE_TEST_AUC, FAKE_BASELINE_AUC = 0.612, 0.701


def fake_train(config, *, run_dir=None, on_progress=None, should_stop=None):
    """Reports one progress point per 50 ms for config.train.max_steps steps (20 = 1 s),
    appends a loss line per step to metrics.jsonl and writes eval.json when it completes."""
    from noshow.training.runs import append_metrics, write_eval

    total = config.train.max_steps or 20
    start = time.time()
    for step in range(1, total + 1):
        if should_stop():
            on_progress({"phase": "done", "message": "Cancelled"})
            return SimpleNamespace(run_dir=run_dir, state="cancelled", error=None)
        time.sleep(STEP_S)
        point = {"step": step, "loss": 1.0 / step, **({"val_auc": 0.6} if step % 10 == 0 else {})}
        append_metrics(run_dir, point)
        on_progress(
            {
                "phase": "training",
                "total_steps": total,
                "epoch": step / total,
                "samples_per_s": 320.0,
                "eta_s": (total - step) * STEP_S,
                "elapsed_s": time.time() - start,
                "message": f"step {step}/{total}",
                **point,
            }
        )
    metrics = {"n": 100, "roc_auc": FAKE_TEST_AUC}
    write_eval(
        run_dir,
        {
            "model": metrics,
            "baseline": {"n": 100, "roc_auc": FAKE_BASELINE_AUC},
            "validation": {"model": {"roc_auc": 0.63}, "baseline": {"roc_auc": 0.69}},
            "steps": total,
            "synthetic": True,
        },
    )
    return SimpleNamespace(run_dir=run_dir, state="completed", error=None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(tmp_path_factory, demo_mode: bool):
    from gradio_client import Client

    from noshow.app.demo import build_demo
    from noshow.training.jobs import JobManager

    runs_dir = tmp_path_factory.mktemp("runs")
    jobs = JobManager(train_fn=fake_train, runs_dir=runs_dir)
    demo = build_demo(
        jobs=jobs, store=None, runs_dir=runs_dir, demo_mode=demo_mode, data_source="synthetic"
    )
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    return SimpleNamespace(demo=demo, client=client, jobs=jobs, runs_dir=runs_dir)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    served = launch(tmp_path_factory, demo_mode=False)
    yield served
    served.jobs.cancel()
    served.jobs.wait(5)
    served.demo.close()


@pytest.fixture(scope="module")
def demo_app(tmp_path_factory):
    served = launch(tmp_path_factory, demo_mode=True)
    yield served
    served.demo.close()


QUICK = dict(
    approach="classifier",
    model="smollm2-135m-instruct",
    data_source=TRAIN_SYNTHETIC,
    split="time",
    max_train_rows=256,
    max_eval_rows=256,
    epochs=1,
    max_steps=20,
    lr=2e-4,
    batch_size=16,
    lora_r=8,
    eval_every=10,
    quantize="none",
    wandb=False,
    use_clinician_labels=False,
)


def status(client) -> dict:
    return client.predict(api_name="/training_status")[0]


def wait_for(client, predicate, timeout: float = 20.0) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        snap = status(client)
        if predicate(snap):
            return snap
        time.sleep(0.1)
    raise AssertionError(f"condition not met in {timeout} s; last status: {snap}")


def wait_for_action(client, timeout: float = 20.0) -> tuple[dict, str]:
    """Poll /training_status until the action box gets a new message (it is sent once, when
    the job it spoke of ends); returns (status, message)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        snap, *_, action = client.predict(api_name="/training_status")
        if isinstance(action, str) and action:
            return snap, action
        time.sleep(0.1)
    raise AssertionError(f"no new action message in {timeout} s; last status: {snap}")


def idle(app) -> None:
    app.jobs.cancel()
    assert app.jobs.wait(10)


def write_statements_csv(path, n: int = 40) -> None:
    pd.DataFrame(
        {
            "Statement": [f"A {20 + i}-year-old patient booked {i} days ahead." for i in range(n)],
            "NoShow": ["Yes" if i % 4 == 0 else "No" for i in range(n)],
        }
    ).to_csv(path, index=False)


# ----------------------------------------------------------------------------- pure views


@pytest.fixture(scope="module")
def synthetic_entry():
    return dv.load_entry(DataCache(), "synthetic", split_method="time")


def test_load_entry_splits_and_caches_by_source(synthetic_entry):
    cache = DataCache()
    first = dv.load_entry(cache, "synthetic", split_method="time")
    assert set(first.frame["split"]) == {"train", "validation", "test"}
    assert first.loaded.is_synthetic
    assert dv.load_entry(cache, "synthetic", split_method="time") is first
    assert dv.load_entry(cache, "synthetic", split_method="patient") is not first


def test_filter_frame_applies_every_filter(synthetic_entry):
    frame = synthetic_entry.frame
    rows = dv.filter_frame(
        frame,
        split="test",
        label="No-show",
        age_min=30,
        age_max=60,
        gender="F",
        sms="Yes",
        scholarship="No",
        lead_min=3,
        lead_max=40,
    )
    assert len(rows) > 0
    assert (rows["split"] == "test").all() and (rows["no_show"] == 1).all()
    assert rows["age"].between(30, 60).all() and rows["lead_days"].between(3, 40).all()
    assert (rows["gender"] == "F").all() and (rows["sms_received"] == 1).all()
    assert (rows["scholarship"] == 0).all()
    expected = frame[
        (frame.split == "test")
        & (frame.no_show == 1)
        & frame.age.between(30, 60)
        & (frame.gender == "F")
        & (frame.sms_received == 1)
        & (frame.scholarship == 0)
        & frame.lead_days.between(3, 40)
    ]
    assert len(rows) == len(expected)


def test_filter_frame_by_neighbourhood(synthetic_entry):
    name = dv.neighbourhood_choices(synthetic_entry.frame)[1]
    rows = dv.filter_frame(synthetic_entry.frame, neighbourhood=name)
    assert len(rows) > 0 and (rows["neighbourhood"] == name).all()


def test_filter_frame_ignores_filters_on_missing_columns():
    frame = pd.DataFrame({"record_id": [1, 2], "statement": ["a", "b"], "no_show": [0, 1]})
    assert len(dv.filter_frame(frame, age_min=50, gender="F", sms="Yes")) == 2
    assert dv.filter_frame(frame, label="No-show")["record_id"].tolist() == [2]


def test_page_of_clamps_out_of_range_pages():
    frame = pd.DataFrame({"x": range(120)})
    rows, page, n_pages = dv.page_of(frame, 99, page_size=50)
    assert (page, n_pages, rows["x"].tolist()) == (3, 3, list(range(100, 120)))
    assert dv.page_of(frame, 0)[1] == 1 and dv.page_of(frame, None)[1] == 1
    assert dv.page_caption(120, 3, 3) == "Rows 101-120 of 120 matching · page 3 of 3"


def test_table_view_shortens_statements_and_spells_labels(synthetic_entry):
    view = dv.table_view(synthetic_entry.frame.head(20))
    assert view.columns[0] == "record_id"
    assert set(view["no-show"]) <= {"Yes", "No"}
    assert view["statement"].str.len().max() <= dv.STATEMENT_PREVIEW_CHARS + 1


def test_find_record_says_when_the_id_is_unknown(synthetic_entry):
    with pytest.raises(LookupError, match="Record 123 is not in the loaded data"):
        dv.find_record(synthetic_entry.frame, 123)
    with pytest.raises(LookupError, match="Enter a record id"):
        dv.find_record(synthetic_entry.frame, None)


def test_record_views_render_both_prompt_forms(synthetic_entry):
    row = synthetic_entry.frame.iloc[0]
    tokenizer = SimpleNamespace(
        chat_template="x",
        apply_chat_template=lambda messages, tokenize, add_generation_prompt: (
            "|".join(m["content"] for m in messages) + "|<assistant>"
        ),
    )
    view = dv.record_views(row, tokenizer)
    assert view.statement == row["statement"]
    assert view.classifier_input == row["statement"].strip()
    assert row["statement"] in view.generative_prompt
    assert view.generative_prompt.endswith("|<assistant>")
    assert f"**split:** {row['split']}" in view.details


def test_summary_figure_has_six_panels_for_full_data(synthetic_entry):
    fig = data_plots.summary_figure(synthetic_entry.frame)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [
        "By lead time",
        "By age band",
        "By weekday",
        "By SMS reminder",
        "By earlier appointments",
        "Class balance per split",
    ]


def test_summary_figure_for_statements_only_shows_class_balance():
    frame = pd.DataFrame(
        {"record_id": [1, 2, 3], "statement": ["a", "b", "c"], "no_show": [0, 1, 0]}
    )
    frame["split"] = ["train", "train", "test"]
    fig = data_plots.summary_figure(frame)
    assert [ax.get_title() for ax in fig.axes] == ["Class balance per split"]


def test_lead_buckets_cover_same_day_and_long_leads():
    buckets = data_plots.lead_bucket(pd.Series([0, 1, 7, 8, 61, 179]))
    assert list(buckets) == ["same day", "1-2", "3-7", "8-14", "61+", "61+"]


def test_report_markdown_shows_counts_and_split(synthetic_entry):
    text = dv.report_markdown(synthetic_entry)
    assert "synthetic demo data" in text
    assert f"{synthetic_entry.loaded.report.rows_kept:,} kept" in text
    assert "**Split (time):** train" in text


def test_resolve_source_refuses_server_paths_in_demo_mode():
    with pytest.raises(ValueError, match="demo mode"):
        resolve_source(SOURCE_PATH, None, "/etc/passwd", demo_mode=True)
    with pytest.raises(ValueError, match="Choose a CSV"):
        resolve_source(SOURCE_UPLOAD, None, "", demo_mode=False)
    assert resolve_source(SOURCE_SYNTHETIC, None, "", demo_mode=True) == "synthetic"


def test_error_box_escapes_markup():
    assert "<script>" not in error_box("<script>alert(1)</script>")


def test_user_message_names_unexpected_errors():
    assert user_message(KeyError("x")) == "Unexpected error (KeyError): 'x'"
    assert user_message(ConfigError("lr must be positive")) == "lr must be positive"


def test_build_run_config_maps_the_form():
    form = {**QUICK, "data_source": "synthetic", "max_eval_rows": 0, "max_steps": 0}
    cfg = build_run_config(**form)
    assert cfg.data.source == "synthetic"
    assert cfg.data.max_train_rows == 256 and cfg.data.max_eval_rows is None
    assert cfg.train.max_steps is None and cfg.train.batch_size == 16
    assert (cfg.lora.r, cfg.lora.alpha) == (8, 16)


def test_build_run_config_refuses_bad_values():
    with pytest.raises(ConfigError, match="Batch size must be a whole number of at least 1"):
        build_run_config(**{**QUICK, "batch_size": 0})
    with pytest.raises(ConfigError, match=r"Max steps must be 0 \(= run epochs\) or a whole"):
        build_run_config(**{**QUICK, "max_steps": 2.5})


def estimate_answer(**changes):
    """An answer of noshow.training.preflight.estimate_resources for a measured CPU run."""
    return {
        "device": "CPU (2 cores)",
        "quantize": "none",
        "mem_gb": 5.46,
        "available_gb": 11.4,
        "steps": 10,
        "rows": {"train": 160, "validation": 100, "test": 100},
        "minutes": 3.2,
        "phases_s": {"data": 0.4, "model": 9.1, "training": 120.0, "evaluation": 60.0},
        "basis": "measured on this machine (2026-11-30 03:23, 1.20 s per step)",
        "fits": True,
        "long": False,
        "reason": "",
        **changes,
    }


def test_describe_estimate_gives_the_measured_time_and_phases():
    fits, text = describe_estimate(estimate_answer())
    assert fits
    assert text.startswith("Fits in memory; about 3 min on this CPU (measured).")
    assert "160 training rows, 100 validation, 100 test; 10 steps" in text
    assert "Phases: data 0s · model 9s · training 2m 00s · evaluation 1m 00s." in text
    assert "Basis: measured on this machine (2026-11-30 03:23, 1.20 s per step)." in text


def test_describe_estimate_calls_a_multi_hour_cpu_run_long_not_fits():
    fits, text = describe_estimate(estimate_answer(minutes=130.0, long=True), quick_minutes=4)
    assert fits and not text.startswith("Fits")
    assert text.startswith("Long: about 2 h 10 min on this CPU (measured).")
    assert "the quick CPU demo preset takes about 4 min" in text


def test_describe_estimate_without_a_measurement_says_the_time_is_unknown():
    rough = estimate_answer(minutes=None, phases_s=None, basis="rough: from peaks")
    fits, text = describe_estimate(rough, not_measured="the model is not here")
    assert fits
    assert text.startswith("Fits in memory (rough estimate, about 5.46 GB of 11.4 GB free)")
    assert "time unknown: not measured (the model is not here)" in text
    assert "Phases" not in text


def test_describe_estimate_says_why_it_will_not_fit():
    fits, text = describe_estimate(
        estimate_answer(
            gpu_mem_gb=90.0,
            available_gb=79.0,
            device="H100",
            fits=False,
            reason="needs about 90 GB but H100 has 79 GB free",
        )
    )
    assert not fits
    assert text.startswith("Will not fit: needs about 90 GB but H100 has 79 GB free.")


def test_describe_status_shows_step_eta_and_speed():
    html = describe_status(
        {
            "state": "running",
            "active": True,
            "run_id": "r1",
            "elapsed_s": 65,
            "error": None,
            "progress": {"step": 5, "total_steps": 20, "eta_s": 125, "samples_per_s": 12.5},
        }
    )
    assert "step 5/20" in html and "ETA 2m 05s" in html and "12.5 statements/s" in html
    assert "width:25.0%" in html


def test_describe_status_says_at_which_step_the_loss_was_read():
    snap = {
        "state": "running",
        "active": True,
        "run_id": "r1",
        "progress": {"step": 15, "total_steps": 500, "loss": 0.52},
        "history": [{"step": 10, "loss": 0.52}],
    }
    assert "loss 0.5200 (step 10)" in describe_status(snap)
    snap["progress"]["step"] = 10
    assert "loss 0.5200 ·" in describe_status(snap)


def test_describe_status_of_an_ended_run_gives_its_test_auc_next_to_the_baseline():
    snap = {
        "state": "completed",
        "active": False,
        "run_id": "r1",
        "run_dir": "/runs/r1",
        "progress": {"step": 10, "total_steps": 10},
    }
    report = {
        "model": {"n": 1688, "roc_auc": 0.7012, "roc_auc_low": 0.68, "roc_auc_high": 0.72},
        "baseline": {"n": 1688, "roc_auc": 0.7241},
        "differences": [{"a": "model", "b": "baseline", "text": "No clear difference."}],
    }
    html = describe_status(snap, report)
    assert (
        "Test ROC-AUC 0.701 (95% CI 0.680-0.720) next to the tabular baseline&#x27;s 0.724 "
        "on the same 1,688 test rows." in html
    )
    assert "No clear difference." in html and "Run folder: /runs/r1" in html


def test_training_curves_of_one_point_span_the_run():
    frame = pd.DataFrame([{"step": 10, "val_auc": 0.61}, {"step": 10, "loss": 0.7}])
    fig = tv.training_curves_figure(frame, total_steps=10)
    loss_ax, auc_ax = fig.axes
    for ax in (loss_ax, auc_ax):
        left, right = ax.get_xlim()
        assert left == 0 and 10 <= right <= 11
    low, high = auc_ax.get_ylim()
    assert low <= 0.5 and high >= 0.8
    assert loss_ax.get_ylim()[0] == 0


def test_training_curves_add_the_final_validation_auc_and_the_baseline():
    frame = pd.DataFrame([{"step": s, "loss": 1 / s} for s in range(1, 11)])
    frame.loc[4, "val_auc"] = 0.58
    report = {"steps": 10, "validation": {"model": {"roc_auc": 0.64}, "baseline": {"roc_auc": 0.7}}}
    loss_ax, auc_ax = tv.training_curves_figure(frame, 10, report).axes
    assert len(loss_ax.lines[0].get_xdata()) == 10  # a point per loss reading
    adapter = auc_ax.lines[-1]
    assert list(adapter.get_xdata()) == [5, 10] and list(adapter.get_ydata()) == [0.58, 0.64]
    assert any("tabular baseline (0.700)" in str(line.get_label()) for line in auc_ax.lines)


def test_restore_form_keeps_the_valid_fields_only():
    saved = {
        "approach": "generative",
        "split": "nonsense",
        "max_steps": 7,
        "lr": "0.1",
        "batch_size": -4,
        "epochs": 0.5,
        "wandb": True,
        "data_source": "/data/mine.csv",
        "unknown": 1,
    }
    assert tf.restore_form(saved) == {
        "approach": "generative",
        "max_steps": 7,
        "epochs": 0.5,
        "wandb": True,
        "data_source": "/data/mine.csv",
    }
    assert "data_source" not in tf.restore_form(saved, demo_mode=True)
    assert tf.restore_form("not a form") == {}


# ----------------------------------------------------------------------------- the app


def test_app_api_lists_the_data_and_training_endpoints(app):
    names = set(app.client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    expected = {"/load_data", "/filter_rows", "/show_record", "/data_summary", "/preflight"}
    expected |= {"/start_training", "/cancel_training", "/training_status", "/list_runs"}
    assert expected <= names


def test_app_loads_synthetic_data_with_banner_and_report(app):
    message, banner, report, _ = app.client.predict(
        SOURCE_SYNTHETIC, None, "", "time", api_name="/load_data"
    )
    assert "Loaded bundled synthetic data" in message
    assert "Synthetic data." in banner
    assert "**Split (time):**" in report


def test_app_malformed_upload_shows_message_and_keeps_previous_data(app, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(app.client.src, verbose=False)  # its own session
    good = tmp_path / "statements.csv"
    write_statements_csv(good, n=40)
    message, banner, report, _ = client.predict(
        SOURCE_UPLOAD, handle_file(str(good)), "", "random", api_name="/load_data"
    )
    assert "40 rows" in message and banner == ""

    bad = tmp_path / "broken.csv"
    bad.write_text("Name,Colour\nana,blue\n")
    message, *_ = client.predict(
        SOURCE_UPLOAD, handle_file(str(bad)), "", "time", api_name="/load_data"
    )
    assert "noshow-msg-error" in message and "broken.csv" in message
    assert "Still showing statements.csv" in message
    _, caption, _ = client.predict(api_name="/filter_rows")
    assert caption == "Rows 1-40 of 40 matching · page 1 of 1"


def test_app_filters_rows_and_pages(app):
    table, caption, page = app.client.predict(
        split="test", label="No-show", age_min=60, api_name="/filter_rows"
    )
    rows = pd.DataFrame(table["data"], columns=table["headers"])
    assert len(rows) > 0 and (rows["split"] == "test").all()
    assert (rows["no-show"] == "Yes").all() and (rows["age"] >= 60).all()
    assert caption.startswith("Rows 1-") and page == 1
    _, caption2, page2 = app.client.predict(page=2, api_name="/filter_rows")
    assert page2 == 2 and caption2.startswith("Rows 51-100")


@pytest.mark.parametrize(
    ("field", "value", "refusal"),
    [
        ("age_min", -5, "Age from must be between 0 and 120"),
        ("age_max", 500, "Age to must be between 0 and 120"),
        ("lead_max", 99999, "Lead days to must be between 0 and 400"),
    ],
)
def test_app_filter_out_of_range_names_the_filter_and_leaves_the_table(app, field, value, refusal):
    table, caption, page = app.client.predict(**{field: value}, api_name="/filter_rows")
    assert refusal in caption and f"got {value}" in caption
    # the table and page are left as they were (no value: an update), not emptied
    assert table == {"__type__": "update"} or "__type__" in table
    _, summary_caption = app.client.predict(**{field: value}, api_name="/data_summary")
    assert refusal in summary_caption


def test_app_emptied_filter_box_and_page_below_one_are_no_error(app):
    _, caption, page = app.client.predict(age_min=None, page=-3, api_name="/filter_rows")
    assert caption.startswith("Rows 1-50 of") and page == 1


def test_app_shows_a_record_as_the_models_see_it(app, bundled_model_dir):
    table, _, _ = app.client.predict(api_name="/filter_rows")
    record_id = table["data"][0][0]
    details, statement, prompt, classifier_input = app.client.predict(
        record_id, api_name="/show_record"
    )
    assert f"Record **{record_id}**" in details
    assert statement.startswith("A ") and classifier_input == statement.strip()
    assert statement in prompt
    assert prompt.rstrip().endswith("<|im_start|>assistant")


def test_app_unknown_record_gives_a_message(app):
    details, statement, *_ = app.client.predict(1, api_name="/show_record")
    assert "is not in the loaded data" in details and statement == ""


def test_app_draws_summary_plots(app):
    plot, caption = app.client.predict(api_name="/data_summary")
    assert plot is not None and caption.startswith("No-show rate by feature over the")


def test_app_form_defaults_are_the_quick_preset_without_a_gpu(app):
    """Without a GPU the form (and so the API's defaults) opens on the quick CPU preset;
    with one, on the config's defaults."""
    from noshow.app.train_tab import gpu_count
    from noshow.config import RunConfig, preset_config

    info = app.client.view_api(return_format="dict", print_info=False)
    params = info["named_endpoints"]["/start_training"]["parameters"]
    defaults = {p["parameter_name"]: p["parameter_default"] for p in params}
    form = {name: defaults[name] for name in tf.FORM_FIELDS}
    expected = RunConfig() if gpu_count() else preset_config(tf.CPU_PRESET)
    assert tf.build_run_config(**{**form, "data_source": None}) == expected


@pytest.fixture()
def preflight_cache(tmp_path, monkeypatch):
    """The preflight's measurements go to a scratch file, not the machine's cache."""
    import noshow.training.preflight

    path = tmp_path / "preflight.json"
    monkeypatch.setattr(noshow.training.preflight, "_cache_path", lambda: path)
    return path


def stand_in_measurements(monkeypatch, seconds_per_step) -> list:
    """Replace the preflight's short run with figures of a slow CPU; returns the calls."""
    import noshow.training.preflight
    from noshow.training.preflight import Measurement

    calls = []

    def measure_run(config, log=None, device=None):
        calls.append(config.train.batch_size)
        step_s = seconds_per_step(config.train.batch_size)
        return Measurement(
            device="CPU (2 cores)",
            data_s=0.5,
            setup_s=5.0,
            first_step_s=step_s,
            step_s=step_s,
            score_rows_per_s=60.0,
            baseline_s=2.0,
            save_s=0.5,
            peak_gb=1.0,
            measured_at="2026-11-30 09:00",
        )

    monkeypatch.setattr(noshow.training.preflight, "measure_run", measure_run)
    return calls


# Values a newcomer typed; each refusal names the form's field and what it takes.
FORM_REFUSALS = [
    ("epochs", -1, "Epochs must be a number above 0"),
    ("epochs", 0, "Epochs must be a number above 0"),
    ("batch_size", 0, "Batch size must be a whole number of at least 1"),
    ("batch_size", -4, "Batch size must be a whole number of at least 1"),
    ("lora_r", 0, "LoRA r must be a whole number of at least 1"),
    ("max_train_rows", -5, "Max training rows must be 0 (= all) or a whole number of at least 1"),
    ("max_eval_rows", -1, "Max validation/test rows must be 0 (= all) or a whole number"),
    ("max_steps", -3, "Max steps must be 0 (= run epochs) or a whole number of at least 1"),
    ("eval_every", -1, "Evaluate every must be a whole number of at least 0"),
    ("lr", 0, "Learning rate must be a number above 0 and below 1"),
]


@pytest.mark.parametrize(("field", "value", "refusal"), FORM_REFUSALS)
def test_app_form_refusals_name_the_field_and_its_range(app, field, value, refusal):
    for endpoint in ("/preflight", "/start_training"):
        message = html.unescape(app.client.predict(**{**QUICK, field: value}, api_name=endpoint))
        assert f"{refusal}" in message and f"got {value}" in message, (endpoint, message)
        assert "noshow-msg-error" in message
    assert not app.jobs.is_busy()


def test_app_preflight_refuses_what_will_not_fit(app, preflight_cache):
    message = app.client.predict(**{**QUICK, "batch_size": 100_000}, api_name="/preflight")
    assert "Will not fit" in message
    assert not preflight_cache.exists()  # refused before any measurement


def test_app_preflight_measures_a_short_run_and_words_the_time(
    app, tiny_model_dir, preflight_cache
):
    idle(app)
    form = {**QUICK, "model": str(tiny_model_dir)}
    message = app.client.predict(**form, api_name="/preflight")
    assert "Fits in memory; about" in message and "on this CPU (measured)." in message
    assert "Phases: data" in message and "training" in message and "baseline" in message
    assert "measured on this machine" in message
    assert str(tiny_model_dir) in preflight_cache.read_text()  # kept for next time
    assert app.client.predict(**form, api_name="/preflight") == message


def test_app_preflight_calls_a_long_cpu_run_long(
    app, bundled_model_dir, tiny_model_dir, preflight_cache, monkeypatch
):
    from noshow.config import option, preset_config

    idle(app)
    batch = option("train", "batch_size").default
    quick_batch = preset_config(tf.CPU_PRESET).train.batch_size
    assert quick_batch != batch  # the quick preset is measured as a second, different run
    # 150 s a step at the default batch: the default form's 12 steps take about half an hour.
    calls = stand_in_measurements(monkeypatch, lambda b: 150.0 if b == batch else 1.0)
    full = {**QUICK, "model": str(tiny_model_dir), "max_train_rows": 0, "max_eval_rows": 0}
    full.update(max_steps=0, batch_size=batch, eval_every=0)
    message = app.client.predict(**full, api_name="/preflight")
    assert message.count("Long: about") == 1 and "Fits" not in message.split(".")[0], message
    assert "on this CPU (measured)" in message
    assert "the quick CPU demo preset takes about" in message
    assert calls == [batch, quick_batch]  # the run, then the quick preset for comparison


def test_app_preflight_does_not_measure_while_a_job_trains(
    app, tiny_model_dir, preflight_cache, monkeypatch
):
    idle(app)
    calls = stand_in_measurements(monkeypatch, lambda batch: 1.0)
    app.client.predict(**{**QUICK, "max_steps": 1000}, api_name="/start_training")
    snap = wait_for(app.client, lambda s: s["active"])
    message = app.client.predict(**{**QUICK, "model": str(tiny_model_dir)}, api_name="/preflight")
    assert f"run {snap['run_id']} is training on this machine" in message
    assert "time unknown" in message and calls == []
    idle(app)


def test_app_start_does_not_measure(app, tiny_model_dir, preflight_cache, monkeypatch):
    idle(app)
    calls = stand_in_measurements(monkeypatch, lambda batch: 1.0)
    message = app.client.predict(
        **{**QUICK, "model": str(tiny_model_dir), "max_steps": 5}, api_name="/start_training"
    )
    assert "Started run" in message and "time unknown: not measured" in message
    assert calls == [] and not preflight_cache.exists()
    wait_for(app.client, lambda s: not s["active"])


def test_app_start_waits_for_a_running_measurement(app):
    from noshow.app import train_actions

    idle(app)
    with train_actions.MEASURE_LOCK:  # as while another browser's preflight measures
        message = app.client.predict(**QUICK, api_name="/start_training")
    assert "A preflight check is measuring" in message
    assert not app.jobs.is_busy()


def test_app_start_asks_before_a_run_evaluated_on_a_handful_of_rows(app):
    idle(app)
    one_row = {**QUICK, "max_eval_rows": 1}
    message = html.unescape(app.client.predict(**one_row, api_name="/start_training"))
    assert "Not started yet: this run needs a yes first." in message
    assert "It evaluates on 1 validation row and 1 test row: with fewer than 100" in message
    assert not app.jobs.is_busy()
    # Another configuration is asked about afresh; a second Start of the same one starts it.
    other = html.unescape(
        app.client.predict(**{**one_row, "max_eval_rows": 2}, api_name="/start_training")
    )
    assert "Not started yet" in other and not app.jobs.is_busy()
    again = app.client.predict(**{**one_row, "max_eval_rows": 2}, api_name="/start_training")
    assert "Started run" in again
    idle(app)


def test_app_start_asks_before_a_run_the_preflight_calls_longer_than_a_day(
    app, tiny_model_dir, preflight_cache, monkeypatch
):
    idle(app)
    stand_in_measurements(monkeypatch, lambda batch: 0.5)  # 0.5 s a step on this "CPU"
    huge = {**QUICK, "model": str(tiny_model_dir), "max_steps": 1_000_000_000, "eval_every": 0}
    verdict = html.unescape(app.client.predict(**huge, api_name="/preflight"))
    assert "Long: about 5,787 days" in verdict, verdict
    message = html.unescape(app.client.predict(**huge, api_name="/start_training"))
    assert "The preflight estimates about 5,787 days for it: over a day." in message
    assert "Press Start anyway" in message and not app.jobs.is_busy()
    started = app.client.predict(**huge, api_name="/start_training_anyway")
    assert "Started run" in started
    idle(app)
    # Start anyway answers only the question asked about this very configuration.
    fresh = app.client.predict(**{**huge, "lr": 1e-4}, api_name="/start_training_anyway")
    assert "Not started yet" in html.unescape(fresh) and not app.jobs.is_busy()


def test_app_start_asks_before_a_billion_steps_even_unmeasured(
    app, tiny_model_dir, preflight_cache
):
    idle(app)
    huge = {**QUICK, "model": str(tiny_model_dir), "max_steps": 1_000_000_000, "lr": 7e-4}
    message = html.unescape(app.client.predict(**huge, api_name="/start_training"))
    assert "Not started yet: this run needs a yes first." in message, message
    assert "It has 1,000,000,000 steps: even at 10 ms a step" in message
    assert "that is about 116 days" in message and not app.jobs.is_busy()


def test_app_start_reports_progress_and_completes(app):
    idle(app)
    message = app.client.predict(**{**QUICK, "max_steps": 60}, api_name="/start_training")
    assert "Started run" in message, message
    snap = wait_for(app.client, lambda s: s["state"] == "running" and s["progress"].get("step"))
    assert 1 <= snap["progress"]["step"] < 60
    snap = wait_for(app.client, lambda s: s["state"] == "completed")
    assert snap["progress"]["step"] == 60 and "step 60/60" in snap["log"]
    _, headline, log_text, _, _, _ = app.client.predict(api_name="/training_status")
    assert "completed" in headline and "step 60/60" in log_text
    runs = app.client.predict(api_name="/list_runs")
    assert snap["run_id"] in [row[0] for row in runs["data"]]


def test_app_job_summary_gives_the_test_auc_next_to_the_baseline_when_it_ends(app):
    idle(app)
    app.client.predict(**{**QUICK, "max_steps": 12}, api_name="/start_training")
    # The action box that said "Started run ..." says how it ended ...
    snap, action = wait_for_action(app.client)
    assert snap["state"] == "completed"
    assert f"Run {snap['run_id']} completed at step 12 of 12." in action
    assert f"Test ROC-AUC {FAKE_TEST_AUC:.3f}" in action
    # ... and the job summary gives the test ROC-AUC next to the baseline, and the folder.
    _, summary, *_ = app.client.predict(api_name="/training_status")
    expected = (
        f"Test ROC-AUC {FAKE_TEST_AUC:.3f} next to the tabular baseline&#x27;s "
        f"{FAKE_BASELINE_AUC:.3f} on the same 100 test rows."
    )
    assert expected in summary
    assert f"Run folder: {snap['run_dir']}" in summary
    assert "Synthetic data: these figures say nothing about real no-shows." in summary


def test_app_status_shows_each_loss_reading_of_a_short_run(app):
    """The summary's loss is the latest reading and the curves get one point per step."""
    idle(app)
    app.client.predict(**{**QUICK, "max_steps": 8}, api_name="/start_training")
    snap = wait_for(app.client, lambda s: s["state"] == "completed")
    _, summary, *_ = app.client.predict(api_name="/training_status")
    assert f"loss {1 / 8:.4f} ·" in summary  # step 8's reading, no "(step n)"
    assert tv.curves_frame(snap)["loss"].tolist() == [1 / s for s in range(1, 9)]


def test_app_second_start_is_refused_naming_the_running_job(app):
    idle(app)
    app.client.predict(**{**QUICK, "max_steps": 1000}, api_name="/start_training")
    snap = wait_for(app.client, lambda s: s["active"])
    message = app.client.predict(**QUICK, api_name="/start_training")
    assert "already running" in message and snap["run_id"] in message
    idle(app)


def test_app_cancel_stops_the_job_long_before_its_end(app):
    idle(app)
    app.client.predict(**{**QUICK, "max_steps": 1000}, api_name="/start_training")
    wait_for(app.client, lambda s: s["progress"].get("step", 0) >= 2)
    message = app.client.predict(api_name="/cancel_training")
    assert "Cancelling run" in message
    snap = wait_for(app.client, lambda s: s["state"] == "cancelled", timeout=5)
    assert snap["progress"]["step"] < 1000


def test_app_cancel_message_follows_the_status(app):
    idle(app)
    app.client.predict(**{**QUICK, "max_steps": 1000}, api_name="/start_training")
    wait_for(app.client, lambda s: s["progress"].get("step", 0) >= 2)
    assert "Cancelling run" in app.client.predict(api_name="/cancel_training")
    snap, action = wait_for_action(app.client, timeout=10)
    assert snap["state"] == "cancelled"
    assert f"Run {snap['run_id']} cancelled at step {snap['progress']['step']} of 1000." in action
    assert "Cancelling" not in action


def test_app_status_reattaches_from_a_new_session(app):
    from gradio_client import Client

    idle(app)
    app.client.predict(**{**QUICK, "max_steps": 1000}, api_name="/start_training")
    first = wait_for(app.client, lambda s: s["active"])
    other = Client(app.client.src, verbose=False)  # another browser
    assert wait_for(other, lambda s: s["active"])["run_id"] == first["run_id"]
    idle(app)


def test_demo_mode_refuses_start_and_cancel(demo_app):
    message = demo_app.client.predict(**QUICK, api_name="/start_training")
    assert DEMO_REFUSAL in message.replace("&#x27;", "'")
    assert "Training is turned off" in demo_app.client.predict(api_name="/cancel_training")
    assert demo_app.jobs.snapshot()["state"] == "idle"
    assert not any(demo_app.runs_dir.iterdir())


def test_demo_mode_refuses_server_paths(demo_app):
    from gradio_client.exceptions import AppError

    # Gradio itself refuses: the "path" choice does not exist in demo mode.
    with pytest.raises(AppError, match="not in the list of choices"):
        demo_app.client.predict(SOURCE_PATH, None, "/etc/passwd", "time", api_name="/load_data")
