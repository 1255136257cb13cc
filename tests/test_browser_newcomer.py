"""What a newcomer's first walk through the app showed, in a real browser (Debian's Chromium
driven by Playwright): labelling from the keyboard faster than the server answers keeps every
answer, in order; the Train form's refusals name their field and range in the action box;
runs that are absurdly long or evaluated on a handful of rows ask before they start; and the
first page after `python app.py` starts shows no import error and no server path.

The Label tab's store here answers slowly (a busy 2-core machine took ~0.6 s a press), so the
presses, 50 ms apart, are all in flight at once. Screenshots land in `test-artifacts/`.

    .venv/bin/python -m pytest -q -m browser tests/test_browser_newcomer.py
"""

from __future__ import annotations

import re
import time
from types import SimpleNamespace

import pytest
from conftest import browser_page, chromium_browser, open_tab, serve_app, shot

from noshow.labels.store import LabelStore

pytestmark = pytest.mark.browser

WAIT_MS = 60_000
KEY_GAP_MS = 50  # a clinician labelling from the keyboard
SLOW_READ_S = 0.15  # each read of the store: a press then takes ~0.5 s, as on a busy machine


class SlowLabelStore(LabelStore):
    """The real SQLite store, each read of the current labels delayed like a loaded machine."""

    def current_labels(self, annotator=None):
        time.sleep(SLOW_READ_S)
        return super().current_labels(annotator)


@pytest.fixture(scope="module")
def browser():
    yield from chromium_browser()


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    store = SlowLabelStore(tmp_path_factory.mktemp("newcomer-labels") / "labels.sqlite")
    yield from serve_app(store, tmp_path_factory.mktemp("newcomer-runs"), tmp_path_factory)


@pytest.fixture()
def page(browser, app, request):
    yield from browser_page(browser, app.url, request.node.name, WAIT_MS)


def keys(page, *names: str) -> None:
    """Press `names` KEY_GAP_MS apart, without waiting for any answer."""
    for i, name in enumerate(names):
        if i:
            page.wait_for_timeout(KEY_GAP_MS)
        page.keyboard.press(name)


@pytest.fixture(scope="module")
def started_app(tmp_path_factory):
    """`python app.py` in a fresh process, as `make run` starts it (the import race needs an
    interpreter that has imported nothing yet)."""
    import sys

    from conftest import REPO

    sys.path.insert(0, str(REPO / "scripts"))
    from app_process import start_app, stop_app

    work = tmp_path_factory.mktemp("started-app")
    proc, url, log_path = start_app(work / "runs", work, demo=False)
    yield SimpleNamespace(url=url, log=log_path)
    stop_app(proc)


def test_browser_first_page_after_a_start_renders_the_prompt_without_a_server_path(
    browser, started_app
):
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS * 3)
    try:
        page.goto(started_app.url)
        prompt = page.locator("#data-prompt textarea")
        expect(prompt).to_have_value(re.compile(r"<\|im_start\|>"), timeout=WAIT_MS * 3)
        text = prompt.input_value()
        assert "cannot" not in text and "site-packages" not in text, text
        shot(page, "newcomer-first-page")
    finally:
        context.close()
    log = started_app.log.read_text()
    assert "Traceback" not in log, log[-3000:]


def test_browser_label_keeps_every_answer_pressed_at_keyboard_speed(page, app):
    from playwright.sync_api import expect

    open_tab(page, "Label")
    page.locator("#label-annotator input, #label-annotator textarea").first.fill("Dr Fast")
    page.locator("#label-start").click()
    item, message = page.locator("#label-item"), page.locator("#label-message")
    expect(item).to_contain_text("Item 1 of 50")
    item.click()  # focus leaves the name box: keys now label

    def shown() -> int:
        return int(re.search(r"record (\d+)", item.inner_text()).group(1))

    a = shown()
    keys(page, "1", "2")  # No-show, then at once Shows up: both kept, the later one counts
    expect(message).to_contain_text(f"Changed record {a} to Shows up (was No-show)")
    expect(item).to_contain_text("Item 2 of 50")
    b = shown()
    keys(page, "2", "2")  # the same key twice: one label
    expect(item).to_contain_text("Item 3 of 50")
    c = shown()
    keys(page, "1", "ArrowLeft")  # an answer, then Back before it was drawn: back to it
    expect(item).to_contain_text("Item 3 of 50")
    expect(item).to_contain_text("Submitted as No-show")
    assert shown() == c
    keys(page, "2", "1", "2")  # three answers to one showing: all three stored, in order
    expect(message).to_contain_text(f"Changed record {c} to Shows up (was No-show)")
    expect(page.locator("#label-progress")).to_contain_text("3 of 50")
    shot(page, "newcomer-label-keyboard-speed")

    # the message above reads the same after the first and the last of those three presses:
    # wait for the store itself (a lost press leaves it at 6 events and fails below)
    deadline = time.monotonic() + WAIT_MS / 1000
    while len(app.store.events("Dr Fast")) < 7 and time.monotonic() < deadline:
        time.sleep(0.1)
    events = app.store.events("Dr Fast")
    assert events["record_id"].tolist() == [a, a, b, c, c, c, c]
    assert events["label"].tolist() == [1, 0, 0, 1, 0, 1, 0]
    current = app.store.current_labels("Dr Fast").set_index("record_id")["label"]
    assert current.to_dict() == {a: 0, b: 0, c: 0}


def test_browser_train_form_refusals_name_the_field_in_the_action_box(page, app):
    from playwright.sync_api import expect

    open_tab(page, "Train")
    action = page.locator("#train-action")
    for label, value, button, refusal in (
        ("Batch size", "0", "Preflight check", "Batch size must be a whole number of at least 1"),
        ("Epochs", "-1", "Start training", "Epochs must be a number above 0"),
        ("LoRA r", "0", "Preflight check", "LoRA r must be a whole number of at least 1"),
    ):
        box = page.get_by_label(label, exact=True)
        before = box.input_value()
        box.fill(value)
        box.press("Tab")
        page.get_by_role("button", name=button).click()
        expect(action).to_contain_text(refusal)
        expect(action).to_contain_text(f"got {value}")
        expect(action).not_to_contain_text("Checking")  # no stale "Checking ..." left
        expect(page.locator(".toast-body")).to_have_count(0)  # no pop-up, no traceback
        shot(page, f"newcomer-train-refusal-{label.replace(' ', '-')}")
        box.fill(before)
        box.press("Tab")
    assert not app.jobs.is_busy()


def test_browser_data_filters_out_of_range_name_the_filter_and_keep_the_table(page, app):
    from playwright.sync_api import expect

    open_tab(page, "Data")
    caption = page.locator("#data-caption")
    expect(caption).to_contain_text("Rows 1-50 of")
    first_row = page.locator("#data-table tbody tr").first.inner_text()
    for name, value, refusal in (
        ("age_min", "-5", "Age from must be between 0 and 120"),
        ("age_max", "500", "Age to must be between 0 and 120"),
        ("lead_min", "999", "Lead days from must be between 0 and 400"),
    ):
        box = page.locator(f"#data-{name} input[type=number]")
        before = box.input_value()
        box.fill(value)
        box.press("Enter")
        # the tab names the filter and its range, or the browser's slider put the box back
        # into its range first: then the caption is of the value the box shows
        expect(caption).to_contain_text(re.compile(f"{refusal}|Rows|No rows match"))
        expect(page.locator(".toast-body")).to_have_count(0)  # no nameless pop-up
        if refusal in caption.inner_text():
            expect(caption).to_contain_text(f"got {value}")
            assert page.locator("#data-table tbody tr").first.inner_text() == first_row
        else:
            assert 0 <= float(box.input_value()) <= (120 if "age" in name else 400)
        shot(page, f"newcomer-data-refusal-{name}")
        box.fill(before)
        box.press("Enter")
        expect(caption).to_contain_text("Rows 1-50 of")
    # an emptied box is no limit (Gradio's own check raised a TypeError on it)
    box = page.locator("#data-age_min input[type=number]")
    box.fill("")
    box.press("Enter")
    expect(caption).to_contain_text("Rows 1-50 of")
    expect(page.locator(".toast-body")).to_have_count(0)
    # a page below 1 shows page 1, without a pop-up
    page_box = page.get_by_label("Page", exact=True)
    page_box.fill("-3")
    page_box.press("Enter")
    expect(page_box).to_have_value("1")
    expect(page.locator(".toast-body")).to_have_count(0)


def test_browser_train_asks_before_a_run_evaluated_on_one_row(page, app):
    from playwright.sync_api import expect

    open_tab(page, "Train")
    rows = page.get_by_label("Max validation/test rows", exact=True)
    rows.fill("1")
    rows.press("Tab")
    page.get_by_role("button", name="Start training").click()
    action = page.locator("#train-action")
    expect(action).to_contain_text("Not started yet: this run needs a yes first.")
    expect(action).to_contain_text("It evaluates on 1 validation row and 1 test row")
    anyway = page.get_by_role("button", name="Start anyway")
    expect(anyway).to_be_visible()
    action.scroll_into_view_if_needed()
    shot(page, "newcomer-train-asks")
    assert not app.jobs.is_busy()
    # a Preflight check answers in the same box: the question and its button leave with it
    page.get_by_role("button", name="Preflight check").click()
    expect(anyway).to_be_hidden()
    expect(action).not_to_contain_text("Checking")  # its verdict (a measurement: seconds)
    expect(action).not_to_contain_text("needs a yes")
    page.get_by_role("button", name="Start training").click()
    expect(action).to_contain_text("Not started yet: this run needs a yes first.")
    expect(anyway).to_be_visible()
    assert not app.jobs.is_busy()
    anyway.click()
    expect(action).to_contain_text(re.compile(r"Started run \S+"))
    expect(anyway).to_be_hidden()
    page.get_by_role("button", name="Cancel", exact=True).click()
    expect(page.locator("#train-status")).to_contain_text(re.compile(r"Run \S+: cancelled"))
