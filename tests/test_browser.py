"""The real app in a real browser: Debian's headless Chromium driven by Playwright.

One walk through what only a browser shows: the Data tab (filter, pick a row, read its
statement), a Compare on an example with both adapters, a quick training job started and
cancelled from the Train tab (real JobManager, real `noshow.training.recipe.train`, a tiny random
Llama), and three statements labelled with the keyboard in the Label tab, then an export.
Then the details users saw go wrong: a filter box applied with Enter, an upload of a
Statement/NoShow file (its own name on screen, the filters it cannot use hidden with a
reason), the plots under a Label filter, the data set's label hidden until the clinician
answers, and the agreement tables filled when their section opens.
Screenshots land in `test-artifacts/` (gitignored).

    make browser   # installs Debian's chromium if missing
    .venv/bin/python -m pytest -q -m browser tests/test_browser.py

Never runs `playwright install`: the browser is the system's /usr/bin/chromium.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import browser_page, chromium_browser, launch_on_free_port, open_tab, serve_app, shot

from noshow.data.examples import EXAMPLES

pytestmark = pytest.mark.browser

WAIT_MS = 60_000


@pytest.fixture(scope="module")
def browser():
    yield from chromium_browser()


@pytest.fixture(scope="module")
def app(tmp_path_factory, adapters, tiny_model_dir):
    from noshow.labels.store import LabelStore

    store = LabelStore(tmp_path_factory.mktemp("browser-labels") / "labels.sqlite")
    # A copy: runs trained here must not become the newest adapters other modules' tests see.
    runs = tmp_path_factory.mktemp("browser-runs") / "runs"
    shutil.copytree(adapters.runs, runs)
    yield from serve_app(store, runs, tmp_path_factory, model=str(tiny_model_dir))


@pytest.fixture()
def page(browser, app, request):
    yield from browser_page(browser, app.url, request.node.name, WAIT_MS)


def test_browser_data_tab_filters_rows_and_shows_a_statement(page, app):
    from playwright.sync_api import expect

    expect(page.get_by_text("Synthetic data.").first).to_be_visible()
    caption = page.get_by_text(re.compile(r"of [\d,]+ matching"))
    # No filter set yet: every row of the synthetic data (5,998 after cleaning) is listed.
    expect(caption.first).to_contain_text("of 5,998 matching")
    shot(page, "1-data")
    age_from = page.get_by_role("spinbutton", name=re.compile("Age from"))
    age_from.fill("70")
    age_from.press("Tab")
    expect(caption.first).not_to_contain_text("of 5,998 matching")
    grid = page.get_by_role("grid", name=re.compile("Appointments"))
    ages = grid.locator('[role="gridcell"][aria-colindex="4"]').all_inner_texts()
    assert ages and all(int(a) >= 70 for a in ages), ages
    record_id = grid.locator('[role="gridcell"][aria-colindex="1"]').first.inner_text()
    grid.locator('[role="gridcell"][aria-colindex="2"]').first.click()
    statement_box = page.get_by_label("Statement", exact=True).first
    expect(statement_box).to_have_value(re.compile(r"year-old"))
    expect(page.get_by_text(f"Record {record_id}").first).to_be_visible()
    age = int(re.search(r"(\d+)-year-old", statement_box.input_value()).group(1))
    assert age >= 70
    shot(page, "1-data-record")


def pick(page, label: str, option: str) -> None:
    """Choose `option` in the Gradio dropdown labelled `label`."""
    page.get_by_label(label, exact=True).first.click()
    page.get_by_role("option", name=option, exact=True).click()


def test_browser_data_filter_applies_on_enter(page, app):
    from playwright.sync_api import expect

    caption = page.get_by_text(re.compile(r"of [\d,]+ matching")).first
    expect(caption).to_contain_text("of 5,998 matching")
    lead_to = page.get_by_role("spinbutton", name=re.compile("Lead days to"))
    lead_to.fill("0")
    lead_to.press("Enter")  # no Tab, no click elsewhere
    expect(caption).not_to_contain_text("of 5,998 matching")
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == (
        "number input for Lead days to"
    )  # the caret stays in the box
    grid = page.get_by_role("grid", name=re.compile("Appointments"))
    leads = grid.locator('[role="gridcell"][aria-colindex="7"]').all_inner_texts()
    assert leads and set(leads) == {"0"}, leads
    # Under a Label filter the plots say what their rates are over, instead of 100% bars.
    pick(page, "Label", "No-show")
    page.get_by_role("button", name="Plot the filtered rows").click()
    plot_caption = page.locator("#data-plot-caption")
    expect(plot_caption).to_contain_text("Label = No-show:")
    expect(plot_caption).to_contain_text("rows that match the other filters")
    page.locator("#data-plot-caption").scroll_into_view_if_needed()
    shot(page, "8-data-enter-and-label-plot")


def test_browser_data_statements_upload_hides_filters_and_names_the_file(page, app, tmp_path):
    from playwright.sync_api import expect

    path = tmp_path / "clinic statements.csv"
    lines = [f"A {20 + i}-year-old patient.,{'Yes' if i % 4 == 0 else 'No'}" for i in range(30)]
    path.write_text("Statement,NoShow\n" + "\n".join(lines) + "\n")
    gender = page.locator("#data-filter-gender")
    expect(gender).to_be_visible()
    statement = page.get_by_label("Statement", exact=True).first
    # The page's start-up work (first record, plots) has finished: it would otherwise land
    # after the upload's and show the synthetic record again.
    expect(statement).to_have_value(re.compile("year-old"))
    expect(page.locator("#data-plot-caption")).to_contain_text("No-show rate by feature")
    page.get_by_label("Upload a file").check()
    page.locator("#data-upload input[type=file]").set_input_files(str(path))
    expect(page.locator("#data-upload")).to_contain_text("clinic statements.csv")
    page.get_by_role("button", name="Load data").click()
    expect(page.get_by_text("Loaded clinic statements.csv: 30 rows").first).to_be_visible()
    expect(page.get_by_text("Source: clinic statements.csv").first).to_be_visible()
    expect(gender).to_be_hidden()
    expect(page.get_by_role("spinbutton", name=re.compile("Age from"))).to_be_hidden()
    note = page.locator("#data-filter-note")
    expect(note).to_contain_text("filters are hidden: clinic statements.csv has statements only")
    expect(statement).to_have_value("A 20-year-old patient.")
    expect(page.locator("#data-plot-caption")).to_contain_text(
        "clinic statements.csv has statements only"
    )
    body = page.locator("body").inner_text()
    assert "/gradio/" not in body and "/tmp" not in body
    shot(page, "9-data-statements-upload")
    # Back to the Kaggle form: the filters come back.
    page.get_by_label("Bundled synthetic").check()
    page.get_by_role("button", name="Load data").click()
    expect(gender).to_be_visible()
    expect(note).to_be_hidden()


def test_browser_compare_scores_an_example_with_both_adapters(page, app):
    from playwright.sync_api import expect

    open_tab(page, "Compare")
    page.get_by_role("button", name=EXAMPLES[0].label).click()
    result = page.locator("#compare-result")
    three = result.locator(
        ".noshow-card:is([data-approach=generative], [data-approach=classifier],"
        " [data-approach=baseline])"
    )
    expect(three).to_have_count(3)
    expect(three.locator(".noshow-p")).to_have_count(3)  # generative, classifier, baseline
    expect(result.locator('.noshow-card[data-approach="hybrid"]')).to_have_count(2)
    values = [float(v) for v in three.locator(".noshow-p").all_inner_texts()]
    assert all(0.0 <= v <= 1.0 for v in values)
    expect(result).to_contain_text("Generated answer")
    expect(page.locator("#compare-statement textarea")).to_have_value(EXAMPLES[0].statement)
    shot(page, "2-compare")


def test_browser_train_starts_a_quick_job_and_cancels_it(page, app):
    from playwright.sync_api import expect

    from noshow.config import preset_config

    open_tab(page, "Train")
    # No GPU here: the form opens on the quick CPU preset and says so.
    note = page.locator("#train-form-note")
    expect(note).to_contain_text("No GPU on this machine: the form opens on the quick CPU demo")
    expect(note).to_contain_text("python scripts/train.py --approach classifier")
    steps = page.get_by_label("Max steps")
    expect(steps).to_have_value(str(preset_config("quick-cpu").train.max_steps))
    shot(page, "3-train-form-cpu")
    model = page.get_by_label("Model", exact=True)
    expect(model).to_have_value("smollm2-135m-instruct")
    model.fill(app.model)  # the tiny random Llama: steps take milliseconds
    model.press("Enter")
    steps.fill("5000")  # long enough to be cancelled mid-run
    steps.press("Tab")
    page.get_by_role("button", name="Start training").click()
    expect(page.get_by_text(re.compile(r"Run \S+: running")).first).to_be_visible()
    expect(page.get_by_text(re.compile(r"step \d+/5000")).first).to_be_visible()
    shot(page, "3-train-running")
    page.get_by_role("button", name="Cancel", exact=True).click()
    status = page.locator("#train-status")
    expect(status).to_contain_text(re.compile(r"Run \S+: cancelled"))
    # The message box follows: no "Cancelling..." left once the status says cancelled.
    action = page.locator("#train-action")
    expect(action).to_contain_text(re.compile(r"Run \S+ cancelled at step \d+ of 5000"))
    expect(action).not_to_contain_text("Cancelling")
    snap = app.jobs.snapshot()
    assert snap["state"] == "cancelled"
    assert snap["config"]["train"]["model"] == app.model
    shot(page, "4-train-cancelled")


def test_browser_train_form_survives_a_reload(page, app):
    from playwright.sync_api import expect

    from noshow.app.train_form import CPU_PRESET
    from noshow.config import preset_config

    open_tab(page, "Train")
    page.get_by_label("generative").check()
    steps = page.get_by_label("Max steps")
    steps.fill("7")
    steps.press("Tab")
    lr = page.get_by_label("Learning rate")
    lr.fill("0.0005")  # not the default
    lr.press("Tab")
    page.get_by_label("Log to Weights & Biases").check()
    page.wait_for_timeout(500)  # BrowserState writes localStorage after the save event
    page.reload()
    open_tab(page, "Train")
    expect(page.get_by_label("Max steps")).to_have_value("7")
    expect(page.get_by_label("Learning rate")).to_have_value("0.0005")
    expect(page.get_by_label("generative")).to_be_checked()
    expect(page.get_by_label("Log to Weights & Biases")).to_be_checked()
    expect(page.locator("#train-form-note")).to_contain_text("last used in this browser")
    shot(page, "13-train-form-after-reload")
    # A preset still resets the hyperparameters (and is kept in turn).
    page.get_by_role("button", name="Preset: quick CPU demo").click()
    quick_steps = preset_config(CPU_PRESET).train.max_steps
    expect(page.get_by_label("Max steps")).to_have_value(str(quick_steps))


def test_browser_train_short_run_shows_its_auc_next_to_the_baseline(
    page, app, tmp_path, monkeypatch
):
    from playwright.sync_api import expect

    import noshow.training.preflight
    from noshow.app.train_form import CPU_PRESET
    from noshow.config import preset_config
    from noshow.training.runs import read_metrics

    monkeypatch.setattr(
        noshow.training.preflight, "_cache_path", lambda: tmp_path / "preflight.json"
    )
    open_tab(page, "Train")
    model = page.get_by_label("Model", exact=True)
    model.fill(app.model)
    model.press("Enter")
    page.get_by_role("button", name="Preflight check").click()
    action = page.locator("#train-action")
    # A few real steps are timed (seconds with the tiny Llama): the box says so meanwhile.
    expect(action).to_contain_text("Checking this configuration")
    shot(page, "14-train-preflight-measuring")
    expect(action).to_contain_text(re.compile(r"Fits in memory; about .* on this CPU \(measured\)"))
    expect(action).to_contain_text("Phases: data")
    shot(page, "14-train-preflight")
    page.get_by_role("button", name="Start training").click()
    status = page.locator("#train-status")
    expect(status).to_contain_text(re.compile(r"Run \S+: completed"))
    auc_line = r"Test ROC-AUC \S+ \(95% CI [^)]+\) next to the tabular baseline"
    expect(status).to_contain_text(re.compile(auc_line))
    expect(status).to_contain_text("Run folder: ")
    steps = preset_config(CPU_PRESET).train.max_steps
    expect(action).to_contain_text(re.compile(rf"Run \S+ completed at step {steps} of {steps}"))
    snap = app.jobs.snapshot()
    # The real loop reads the loss at every step of a short run: the curves have them all.
    assert read_metrics(snap["run_dir"])["loss"].notna().sum() == steps
    page.locator("#train-status").scroll_into_view_if_needed()
    page.wait_for_timeout(4000)  # the curves are redrawn at most every 3 s
    shot(page, "15-train-completed")


def test_browser_label_three_statements_by_keyboard_and_export(page, app):
    from playwright.sync_api import expect

    open_tab(page, "Label")
    page.locator("#label-annotator input, #label-annotator textarea").first.fill("Dr Browser")
    page.locator("#label-start").click()
    progress = page.locator("#label-progress")
    item = page.locator("#label-item")
    expect(progress).to_contain_text("0 of 50")
    item.click()  # focus leaves the name box: keys now label
    for key, done in (("1", 1), ("2", 2), ("1", 3)):
        page.keyboard.press(key)
        expect(progress).to_contain_text(f"{done} of 50")
    expect(item).to_contain_text("Item 4 of 50")
    # Typing in the note must not label: "1" and "2" go into the note only.
    note = page.get_by_label("Note (optional)")
    note.press_sequentially("12")
    expect(note).to_have_value("12")
    page.wait_for_timeout(500)
    expect(progress).to_contain_text("3 of 50")
    item.click()
    page.keyboard.press("ArrowLeft")
    expect(item).to_contain_text("Item 3 of 50")
    expect(item).to_contain_text("Submitted as No-show")
    shot(page, "5-label")
    assert app.store.events("Dr Browser")["label"].tolist() == [1, 0, 1]

    page.get_by_text("Export labels").click()
    page.locator("#label-export").click()
    expect(page.get_by_text(re.compile(r"Exported \d+ events"))).to_be_visible()
    expect(page.get_by_text(re.compile(r"labels-.*\.jsonl")).first).to_be_visible()
    shot(page, "6-label-export")


def test_browser_label_hides_the_dataset_label_until_answered(page, app):
    from playwright.sync_api import expect

    open_tab(page, "Label")
    page.locator("#label-annotator input, #label-annotator textarea").first.fill("Dr Blind")
    page.locator("#label-start").click()
    item = page.locator("#label-item")
    expect(item).to_contain_text("Item 1 of 50")
    dataset = item.locator(".noshow-label-dataset")
    expect(dataset).to_contain_text("hidden until you answer")
    shot(page, "10-label-hidden")
    item.click()
    page.keyboard.press("2")
    expect(item).to_contain_text("Item 2 of 50")
    expect(dataset).to_contain_text("hidden until you answer")
    page.keyboard.press("ArrowLeft")  # back to the answered item: now it is shown
    expect(item).to_contain_text("Item 1 of 50")
    expect(dataset).to_contain_text(re.compile(r"Data set's label: (No-show|Shows up)"))
    page.keyboard.press("ArrowRight")
    expect(dataset).to_contain_text("hidden until you answer")
    # A review session: the switch shows it at once, and a note being typed stays.
    note = page.get_by_label("Note (optional)")
    note.fill("odd lead time")
    page.get_by_label("Show the data set's label").check()
    expect(dataset).to_contain_text(re.compile(r"Data set's label: (No-show|Shows up)"))
    expect(item).to_contain_text("Item 2 of 50")
    expect(note).to_have_value("odd lead time")
    shot(page, "11-label-review-switch")


def test_browser_label_agreement_tables_are_filled_when_opened(page, app):
    from playwright.sync_api import expect

    from noshow.data.load import load_data

    record = int(load_data("synthetic").frame["record_id"].iloc[0])
    app.store.submit(record, "no_show", "Dr Agree", statement="s")  # something to agree on
    open_tab(page, "Label")
    page.get_by_text("Agreement between annotators").click()  # no Refresh press
    kappa = page.locator("#label-kappa")
    expect(kappa).to_contain_text("rater_a")
    expect(kappa).to_contain_text("Dr Agree")
    expect(kappa).to_contain_text("vs data set")
    expect(page.locator("#label-disagreements")).to_contain_text("dataset_label")
    kappa.scroll_into_view_if_needed()
    shot(page, "12-label-agreement")


def test_browser_remembers_the_annotator_name_after_a_reload(page, app):
    from playwright.sync_api import expect

    open_tab(page, "Label")
    name = page.locator("#label-annotator input, #label-annotator textarea").first
    name.fill("Dr Remembered")
    name.press("Tab")
    page.wait_for_timeout(500)  # BrowserState writes localStorage after the change event
    page.reload()
    open_tab(page, "Label")
    expect(page.locator("#label-annotator input, #label-annotator textarea").first).to_have_value(
        "Dr Remembered"
    )


@pytest.fixture(scope="module")
def fresh_app(tmp_path_factory, adapters):
    """A fresh public-demo app (no runs at all) whose only adapters are the shipped ones: the
    repository's adapters/ (or NOSHOW_TEST_SHIPPED_DIR) when both approaches are there, else
    two tiny runs shipped here."""
    from noshow.app.demo import build_demo
    from noshow.inference.predict import read_adapter_meta
    from noshow.inference.ship import SHIPPED_DIR, ship_adapter, shipped_adapters
    from noshow.training.jobs import JobManager

    repo_dir = Path(os.environ.get("NOSHOW_TEST_SHIPPED_DIR") or SHIPPED_DIR)
    real = {read_adapter_meta(p)["approach"]: p.name for p in shipped_adapters(repo_dir)}
    if set(real) == {"generative", "classifier"}:
        shipped_dir, names = repo_dir, real
    else:
        shipped_dir = tmp_path_factory.mktemp("shipped") / "adapters"
        names = {}
        for approach in ("generative", "classifier"):
            names[approach] = f"{approach}-tiny"
            ship_adapter(
                getattr(adapters, approach),
                shipped_dir / names[approach],
                find_data=False,
                allow_synthetic=True,
                allow_local_base=True,
                log=lambda _: None,
            )
    runs = tmp_path_factory.mktemp("fresh-runs")
    demo = build_demo(
        jobs=JobManager(runs_dir=runs),
        store=None,
        runs_dir=runs,
        demo_mode=True,
        data_source="synthetic",
        shipped_dir=shipped_dir,
    )
    url = launch_on_free_port(demo)
    yield SimpleNamespace(url=url, names=names)
    demo.close()


def test_browser_fresh_app_compares_an_example_with_the_shipped_adapters(browser, fresh_app):
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    try:
        page.goto(fresh_app.url)
        open_tab(page, "Compare")
        expect(page.get_by_text("No finished")).to_have_count(0)  # both slots are filled
        page.get_by_role("button", name=EXAMPLES[-1].label).click()
        result = page.locator("#compare-result")
        # A score in every card (generative, classifier, baseline) means no slot failed.
        three = result.locator('.noshow-card:not([data-approach="hybrid"]) .noshow-p')
        expect(three).to_have_count(3, timeout=WAIT_MS)  # loads 2 models
        for name in fresh_app.names.values():
            expect(result).to_contain_text(name)
        values = [float(v) for v in three.all_inner_texts()]
        assert all(0.0 <= v <= 1.0 for v in values)
        expect(result).to_contain_text(re.compile(r"The adapters (agree|disagree)"))
        shot(page, "7-compare-shipped")
    finally:
        context.close()
