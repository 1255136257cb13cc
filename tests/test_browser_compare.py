"""The Compare tab in a real browser (Debian's headless Chromium driven by Playwright) with the
shipped SmolLM2-135M adapters: what a user sees after each kind of click, and that a batch
evaluation stops when its page closes or Stop is pressed. Screenshots land in
`test-artifacts/` (gitignored).

    .venv/bin/python -m pytest -q -m browser tests/test_browser_compare.py

Never runs `playwright install`: the browser is the system's /usr/bin/chromium.
"""

from __future__ import annotations

import re
import time
from types import SimpleNamespace

import pytest
from conftest import (
    ARTIFACTS,
    SHIPPED,
    browser_page,
    chromium_browser,
    launch_on_free_port,
    shot,
)

from noshow.data.examples import EXAMPLES

pytestmark = pytest.mark.browser

WAIT_MS = 180_000  # the first Compare loads both real adapters on a busy 2-core machine
STOP_WITHIN_S = 5.0


@pytest.fixture(scope="module")
def browser():
    if not all((path / "noshow.json").exists() for path in SHIPPED.values()):
        pytest.skip("the shipped adapters are not in adapters/")
    yield from chromium_browser()


@pytest.fixture(scope="module")
def app(browser, tmp_path_factory):
    from noshow.app.demo import build_demo
    from noshow.training.jobs import JobManager

    runs = tmp_path_factory.mktemp("no-runs")
    demo = build_demo(
        jobs=JobManager(runs_dir=runs),
        store=None,
        runs_dir=runs,
        data_source="synthetic",
        shipped_dir=SHIPPED["generative"].parent,
    )
    url = launch_on_free_port(demo)
    yield SimpleNamespace(url=url, ctx=demo.noshow_context)
    for job in demo.noshow_context.adapters.jobs.running():
        job.cancel()
    demo.close()


@pytest.fixture()
def page(browser, app, request):
    for page in browser_page(browser, app.url, request.node.name, WAIT_MS, height=1100):
        page.get_by_role("tab", name="Compare", exact=True).click()
        yield page


def cards(page):
    return page.locator("#compare-result .noshow-card")


# The P of the adapters' and the baseline's cards (the hybrids' cards come after them).
THREE_P = '#compare-result .noshow-card:not([data-approach="hybrid"]) .noshow-p'


def test_browser_example_click_scores_and_explains_each_card(page):
    from playwright.sync_api import expect

    page.get_by_role("button", name=EXAMPLES[2].label).click()
    classifier = page.locator('#compare-result .noshow-card[data-approach="classifier"]')
    expect(classifier.locator(".noshow-p")).to_have_count(1)
    baseline = page.locator('#compare-result .noshow-card[data-approach="baseline"]')
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        # On a loaded machine the first answer can come before the baseline is fitted.
        text = baseline.inner_text()
        if "P(no-show)" in text:
            break
        assert "still being fitted" in text, text
        time.sleep(2)
        page.get_by_role("button", name=EXAMPLES[2].label).click()
        page.wait_for_timeout(1000)
    expect(page.locator(THREE_P)).to_have_count(3)
    expect(page.locator("#compare-statement textarea")).to_have_value(EXAMPLES[2].statement)
    for k in range(3):
        expect(cards(page).nth(k)).to_contain_text("where F1 peaked")
        expect(cards(page).nth(k)).to_contain_text(re.compile(r"On average \d+% of appointments"))
    generative = page.locator('#compare-result .noshow-card[data-approach="generative"]')
    expect(generative).to_contain_text('The word is the model\'s most likely next word: "Yes"')
    baseline = page.locator('#compare-result .noshow-card[data-approach="baseline"]')
    expect(baseline).to_contain_text("Facts: example: two weeks ahead with an SMS reminder")
    # each card says how it was served: its forward's time and wait, or the cache
    expect(page.locator("#compare-result .noshow-timing")).to_have_count(3)
    expect(page.locator("#compare-result")).to_contain_text(re.compile(r"Answered in \d+ ms"))
    expect(page.locator("#compare-result .noshow-calibrated")).to_have_count(2)
    # each adapter's hybrid: a card with a P once its tuned baseline is fitted (in the
    # background from the page load; until then the card says so)
    hybrid_p = page.locator('#compare-result .noshow-card[data-approach="hybrid"] .noshow-p')
    deadline = time.monotonic() + 120
    while hybrid_p.count() < 2 and time.monotonic() < deadline:
        expect(cards(page).nth(3)).to_contain_text("still being fitted")
        time.sleep(2)
        page.get_by_role("button", name=EXAMPLES[2].label).click()
        page.wait_for_timeout(1000)
    expect(hybrid_p).to_have_count(2)
    for approach in ("generative", "classifier"):
        expect(page.locator("#compare-result")).to_contain_text(f"Hybrid: {approach} + tabular")
    expect(page.locator("#compare-result .noshow-blend").first).to_contain_text("(tabular)")
    shot(page, "compare-1-example")
    # the clinic's own no-show rate, typed as a percentage, moves every card; emptied, none
    page.locator("#compare-clinic-rate input").fill("10%")
    page.get_by_role("button", name=EXAMPLES[2].label).click()
    adjusted = page.locator("#compare-result").get_by_text("your clinic's no-show rate of 10.0%")
    expect(adjusted.first).to_be_visible()
    # a rate written as a whole percentage is refused in words; the cards stay on the page
    page.locator("#compare-clinic-rate input").fill("15")
    page.get_by_role("button", name=EXAMPLES[2].label).click()
    expect(page.get_by_text("for 15% write 0.15").first).to_be_visible()
    expect(adjusted.first).to_be_visible()
    expect(page.locator(THREE_P)).to_have_count(3)
    page.locator("#compare-clinic-rate input").fill("")
    page.get_by_role("button", name=EXAMPLES[2].label).click()
    expect(adjusted).to_have_count(0)
    expect(page.locator(THREE_P)).to_have_count(3)


def test_browser_typed_statement_gets_a_baseline_read_from_its_text_or_a_reason(page):
    from playwright.sync_api import expect

    from noshow.data.statements import render_statement

    row = {**EXAMPLES[1].row, "age": 71, "lead_days": 45, "weekday": "Friday"}
    text = render_statement(row)
    page.locator("#compare-statement textarea").fill(text)
    page.locator("#compare-run").click()
    baseline = page.locator('#compare-result .noshow-card[data-approach="baseline"]')
    expect(baseline.locator(".noshow-p")).to_have_count(1)
    expect(baseline).to_contain_text("Facts: read from the statement.")
    # The same facts in other words: read with confidence, the baseline scores.
    other = text.replace(" receives no welfare scholarship", " gets no welfare payments")
    other = other.replace(" got no SMS reminder", " was not sent a text reminder")
    assert other.count("no welfare payments") == other.count("not sent a text") == 1
    page.locator("#compare-statement textarea").fill(other)
    page.locator("#compare-run").click()
    expect(baseline).to_contain_text("Facts: read from the statement (in other words).")
    expect(baseline.locator(".noshow-p")).to_have_count(1)
    page.locator("#compare-statement textarea").fill("She often forgets; lives far away.")
    page.locator("#compare-run").click()
    expect(baseline).to_contain_text("No baseline: could not read the age, the weekday")
    expect(page.locator(THREE_P)).to_have_count(2)  # the adapters still score
    hybrid = page.locator('#compare-result .noshow-card[data-approach="hybrid"]')
    expect(hybrid.first).to_contain_text("No hybrid: it needs the appointment's facts")
    expect(hybrid.first).to_contain_text("could not read the age")
    shot(page, "compare-2-free-text")
    page.locator("#compare-statement textarea").fill(
        "Uma mulher de 34 anos tem uma consulta marcada na sexta-feira, sem lembrete."
    )
    page.locator("#compare-run").click()
    note = page.get_by_text("The text does not look like English")
    expect(note).to_have_count(1)  # once, not in the message box and the result both
    expect(note).to_be_visible()
    shot(page, "compare-2b-not-english")


def test_browser_batch_slider_promises_the_speed_measured_on_this_machine(page):
    from playwright.sync_api import expect

    page.get_by_text("Batch: evaluate on the test split").click()
    rows = page.locator("#batch-rows")
    # The page's warm-up scored the examples: the slider gives the speed measured from them.
    expect(rows).to_contain_text(re.compile(r"On this machine: about [\d.]+ rows a second"))
    expect(rows).not_to_contain_text("about 5 rows a second")
    rows.scroll_into_view_if_needed()
    shot(page, "compare-5-batch-speed")


def test_browser_data_set_row_is_scored_at_once_with_its_true_label(page, app):
    from playwright.sync_api import expect

    frame = app.ctx.get_data(None).frame
    row = frame[frame["split"] == "test"].iloc[7]
    page.get_by_role("button", name=re.compile("Pick a data set row")).click()
    page.locator("#compare-record-id input").fill(str(int(row["record_id"])))
    page.locator("#compare-record").click()
    outcome = "missed the appointment" if int(row["no_show"]) else "showed up"
    expect(page.locator("#compare-result .noshow-truth")).to_contain_text(
        f"In the data set this patient {outcome} (record {int(row['record_id'])}, test split)"
    )
    expect(page.locator(THREE_P)).to_have_count(3)
    expect(page.locator("#compare-statement textarea")).to_have_value(row["statement"])
    marks = page.locator(
        '#compare-result .noshow-card:not([data-approach="hybrid"]) [class^="noshow-truth-"]'
    )
    expect(marks).to_have_count(3)  # each card: matches or differs from the outcome
    shot(page, "compare-3-record")


def test_browser_what_if_shows_all_three_models_before_and_after_one_change(page):
    from playwright.sync_api import expect

    page.get_by_role("button", name=EXAMPLES[2].label).click()  # SMS reminder: yes
    expect(page.locator(THREE_P)).to_have_count(3)
    page.locator("#what-if-run").click()
    result = page.locator("#what-if-result")
    expect(result).to_contain_text("If SMS reminder were no instead of yes")
    expect(result.locator("tr[data-model]")).to_have_count(3)
    for model in ("generative", "classifier", "baseline"):
        line = result.locator(f'tr[data-model="{model}"]')
        before = float(line.locator(".noshow-p-before").inner_text())
        after = float(line.locator(".noshow-p-after").inner_text())
        assert 0 <= before <= 1 and 0 <= after <= 1
        change = float(re.search(r"[+-]\d\.\d{3}", line.inner_text()).group())
        assert change == pytest.approx(after - before, abs=0.0015)  # each shown to 3 places
    expect(result).to_contain_text("not the effect the change would have")
    page.locator("#compare-what-if").screenshot(path=str(ARTIFACTS / "compare-4-what-if.png"))


def test_browser_facts_bars_come_after_the_cards(page):
    """The facts behind the scores: a second event after the cards, so the cards come as
    fast as before; the bars then show each fact's effect for both adapters and the
    tabular baseline."""
    from playwright.sync_api import expect

    page.get_by_role("button", name=EXAMPLES[3].label).click()
    expect(page.locator(THREE_P)).to_have_count(3)
    plot = page.locator("#facts-plot img")
    expect(plot).to_have_count(1)
    expect(page.locator("#facts-note")).to_contain_text("typical value")
    page.locator("#compare-facts").screenshot(path=str(ARTIFACTS / "compare-6-facts.png"))
    # A warm Compare, timed from the click: the cards (today's Compare), then the new bars.
    # Printed, not asserted (a speed goal is a benchmark's figure: BENCHMARKS.md).
    from noshow.app.compare_cards import statement_key

    old_src = plot.get_attribute("src")
    key = statement_key(EXAMPLES[1].statement)
    start = page.evaluate("performance.now()")
    page.get_by_role("button", name=EXAMPLES[1].label).click()
    cards_ms = page.wait_for_function(
        f"""() => document.querySelector('#compare-result [data-key="{key}"]')
                  && performance.now()""",
        polling="raf",
    ).json_value()
    bars_ms = page.wait_for_function(
        """old => { const img = document.querySelector('#facts-plot img');
                    return img && img.src !== old && performance.now(); }""",
        arg=old_src,
        polling="raf",
    ).json_value()
    print(
        f"\n[compare] cards {cards_ms - start:.0f} ms, facts' bars {bars_ms - start:.0f} ms "
        f"after the click ({(bars_ms - start) / (cards_ms - start):.2f}x)"
    )


def start_batch(page, app):
    """Open the batch section, start a batch (200 rows of both real adapters: minutes) and
    wait until it has scored rows; returns its server-side job."""
    from playwright.sync_api import expect

    page.get_by_role("button", name=re.compile("Batch: evaluate on the test split")).click()
    page.locator("#batch-run").click()
    expect(page.locator("#batch-progress .noshow-batch-progress")).to_have_attribute(
        "data-done", re.compile(r"^[1-9]")
    )
    expect(page.locator("#batch-progress")).to_contain_text(re.compile(r"about .+ left"))
    [job] = app.ctx.adapters.jobs.running()
    return job


def test_browser_closed_page_stops_its_batch_within_5_s_and_leaves_no_choices(page, app):
    job = start_batch(page, app)
    shot(page, "compare-5-batch-progress")
    # the capacity share this page chose is kept for the batch's later update ...
    page.locator("#batch-capacity-share input[type=number]").fill("25")
    page.locator("#batch-capacity-share input[type=number]").press("Enter")
    deadline = time.monotonic() + 30
    while job.owner not in app.ctx.batch_choices and time.monotonic() < deadline:
        time.sleep(0.2)
    assert app.ctx.batch_choices[job.owner]["share"] == 25
    page.context.close()
    closed = time.perf_counter()
    assert job.wait(30), "the batch went on after its page closed"
    took = time.perf_counter() - closed
    assert job.state == "cancelled" and job.done < job.total
    assert took <= STOP_WITHIN_S, f"stopped {took:.1f} s after the page closed"
    # ... and goes with the page (Gradio's unload event), so visitors leave nothing behind
    while job.owner in app.ctx.batch_choices and time.monotonic() < closed + 30:
        time.sleep(0.2)
    assert job.owner not in app.ctx.batch_choices


def test_browser_stop_button_ends_the_batch(page, app):
    from playwright.sync_api import expect

    job = start_batch(page, app)
    page.locator("#batch-stop").click()
    pressed = time.perf_counter()
    assert job.wait(30)
    assert job.state == "cancelled" and time.perf_counter() - pressed <= STOP_WITHIN_S
    expect(page.locator("#batch-progress")).to_contain_text("Batch comparison stopped")
    page.wait_for_timeout(2000)  # the last word: no progress line comes after it
    expect(page.locator("#batch-progress")).to_contain_text("Batch comparison stopped")
    assert app.ctx.adapters.jobs.running() == []
