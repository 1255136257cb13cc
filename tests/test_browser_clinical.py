"""The batch view's clinical parts in a real browser (Debian's headless Chromium, Playwright):
a 2,000-row batch of the real data's test split, scored by two tiny adapters trained here
(fast, so the batch is about the report, not the scoring), shows the net benefit curves,
the capacity table and the subgroup table once its scores are ready (how long after them is
printed, not asserted: a speed goal is a benchmark's figure); the capacity control redraws
the table. Screenshots land in `test-artifacts/`.

    .venv/bin/python -m pytest -q -m browser tests/test_browser_clinical.py
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from conftest import ARTIFACTS, chromium_browser, launch_on_free_port, shot

pytestmark = pytest.mark.browser

BATCH_ROWS = 2000
WAIT_MS = 600_000  # two baseline fits on the real train split, on a busy 2-core machine

# Resolves when the net benefit plot, the capacity table and the subgroup table are all on
# the page (checked on every animation frame), with Date.now() and the batch's
# scores-ready time from its done marker.
SHOWN_JS = """
() => {
  const done = document.querySelector('#batch-progress .noshow-batch-done');
  const plot = document.querySelector('#batch-net-benefit img');
  const text = id => (document.querySelector(id) || {}).innerText || '';
  if (!done || !plot || !text('#batch-capacity').includes('calls')
      || !text('#batch-subgroups').includes('all appointments')) return false;
  return {now: Date.now(), ready: Number(done.dataset.scoresReadyMs),
          report: Number(done.dataset.reportS)};
}
"""


@pytest.fixture(scope="module")
def browser():
    yield from chromium_browser()


@pytest.fixture(scope="module")
def app(browser, adapters, real_data_path, tmp_path_factory):
    from noshow.app.demo import build_demo
    from noshow.training.jobs import JobManager

    demo = build_demo(
        jobs=JobManager(runs_dir=adapters.runs),
        store=None,
        runs_dir=adapters.runs,
        data_source=str(real_data_path),
        shipped_dir=tmp_path_factory.mktemp("no-shipped"),  # the tiny adapters only
    )
    demo.noshow_context.get_data(None)  # the real file loaded and split before the server starts
    url = launch_on_free_port(demo)
    yield SimpleNamespace(url=url, ctx=demo.noshow_context)
    for job in demo.noshow_context.adapters.jobs.running():
        job.cancel()
    demo.close()


def test_browser_batch_shows_net_benefit_capacity_and_subgroups(browser, app):
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    try:
        page.goto(app.url)
        page.get_by_role("tab", name="Compare", exact=True).click()
        page.get_by_role("button", name=re.compile("Batch: evaluate on the test split")).click()
        rows = page.locator("#compare-batch input[type=number]").first
        rows.fill(str(BATCH_ROWS))
        rows.press("Enter")
        page.locator("#batch-run").click()
        shown = page.wait_for_function(SHOWN_JS, polling="raf", timeout=WAIT_MS).json_value()
        after_ms = shown["now"] - shown["ready"]
        print(
            f"\nreport {shown['report']:.2f} s on the server; shown {after_ms:.0f} ms after "
            "the scores were ready"
        )
        expect(page.locator("#batch-net-benefit-text")).to_contain_text("Net benefit.")
        expect(page.locator("#batch-capacity-text")).to_contain_text(
            "Calling the top 10% (200 of 2,000 appointments)"
        )
        expect(page.locator("#batch-subgroups")).to_contain_text("patients aged 65+")
        expect(page.locator("#batch-subgroups")).to_contain_text("women")
        # Gradio puts a Group's elem_id on its outer and its inner element
        page.locator("#batch-clinical").first.screenshot(path=str(ARTIFACTS / "batch-clinical.png"))
        # the capacity control redraws the table for the clinic's own share, no rescoring
        share = page.locator("#batch-capacity-share input[type=number]")
        share.fill("15")
        share.press("Enter")
        expect(page.locator("#batch-capacity")).to_contain_text("top 15% (300 calls)")
        expect(page.locator("#batch-capacity-text")).to_contain_text("Calling the top 15%")
    finally:
        shot(page, "batch-clinical-page")
        context.close()
