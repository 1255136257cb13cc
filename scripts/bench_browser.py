"""Browser timing of one Compare: click to result in Chromium (Playwright), warm, for typed
statements and for the example buttons, measured in the page; prints a Markdown table.

    python scripts/bench_browser.py                          # shipped adapters, 20 rounds
    python scripts/bench_browser.py --rounds 40
    python scripts/bench_browser.py --url http://127.0.0.1:7860/   # an app already running

Without --url it starts `python app.py` as a public demo on a free port with the shipped
adapters in adapters/ (`start_app` of scripts/app_process.py). One Chromium page opens the
Compare tab, waits until both adapters are loaded (a first Compare), then alternates, A B A
B: a typed statement (a new one each round, from the real data file when present, so the
app's answer cache never helps: real scoring) and an example button (the five in turn; their
answers come from the cache the page load filled, as every visitor after the first gets).
Each time is measured inside the page: `performance.now()` just before the click, and again
when a MutationObserver sees the result whose data-key is that statement's
(`noshow.app.compare_cards.statement_key`) in #compare-result: Gradio's round trip, the
server's work and the DOM update, without Playwright's own overhead. Typing is not timed
(the text is filled before the clock starts). The browser is Debian's /usr/bin/chromium;
never `playwright install`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from app_process import machine_line, shipped_adapters, start_app, stop_app  # noqa: E402
from load_users import Statements, percentile  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]

# Click `target` (a CSS selector, and the index among its matches) and resolve with the ms
# until #compare-result holds the result whose data-key is `key`.
TIME_CLICK_JS = """
async ([target, index, key]) => {
  const box = document.querySelector('#compare-result');
  const shown = () => {
    const r = box.querySelector('.noshow-result');
    return r && r.dataset.key === key;
  };
  let start = 0;
  const done = new Promise(resolve => {
    const obs = new MutationObserver(() => {
      if (shown()) { obs.disconnect(); resolve(performance.now() - start); }
    });
    obs.observe(box, {subtree: true, childList: true, attributes: true, characterData: true});
  });
  start = performance.now();
  document.querySelectorAll(target)[index].click();
  return await done;
}
"""


def time_click(page, target: str, index: int, statement: str) -> float:
    from noshow.app.compare_cards import statement_key

    return float(page.evaluate(TIME_CLICK_JS, [target, index, statement_key(statement)]))


def server_ms(page) -> float | None:
    m = re.search(r"Answered in (\d+) ms", page.locator("#compare-result").inner_text())
    return float(m.group(1)) if m else None


def run(url: str, rounds: int, timeout_ms: int = 300_000) -> dict[str, dict[str, list[float]]]:
    """{variant: {"click": [ms], "server": [ms]}} for `rounds` alternating rounds."""
    from playwright.sync_api import expect, sync_playwright  # noqa: F401 - expect's timeout

    from noshow.data.examples import EXAMPLES

    statements = Statements("rows", seed=7)
    out = {v: {"click": [], "server": []} for v in ("typed statement", "example button")}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(timeout_ms)
        expect.set_options(timeout=timeout_ms)
        page.goto(url)
        page.get_by_role("tab", name="Compare", exact=True).click()
        box = page.locator("#compare-statement textarea")
        # warm: both adapters loaded and the page settled (a first Compare, not timed)
        for _ in range(2):
            text = statements.next()
            box.fill(text)
            time_click(page, "#compare-run", 0, text)
        for i in range(rounds):
            text = statements.next()
            box.fill(text)
            out["typed statement"]["click"].append(time_click(page, "#compare-run", 0, text))
            out["typed statement"]["server"].append(server_ms(page))
            k = i % len(EXAMPLES)
            ms = time_click(page, ".noshow-example", k, EXAMPLES[k].statement)
            out["example button"]["click"].append(ms)
            out["example button"]["server"].append(server_ms(page))
        browser.close()
    return out


def markdown(results: dict, command: str, url: str, adapters: str, load: str) -> str:
    import gradio

    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "## Browser: one Compare, click to result (Chromium, warm)",
        "",
        f"- date: {when}",
        f"- machine: {machine_line()}",
        f"- app: {url} (Gradio {gradio.__version__}); adapters: {adapters}",
        f"- command: `{command}`",
        f"- load average (1 min) at start, end: {load}",
        "",
        "| variant | rounds | median (ms) | p90 (ms) | min (ms) | max (ms) | server median (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for variant, got in results.items():
        click = got["click"]
        server = [s for s in got["server"] if s is not None]
        lines.append(
            f"| {variant} | {len(click)} | {statistics.median(click):,.0f} | "
            f"{percentile(click, 0.9):,.0f} | {min(click):,.0f} | {max(click):,.0f} | "
            f"{statistics.median(server) if server else float('nan'):,.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__)
    p.add_argument("--rounds", type=int, default=20, help="rounds of each variant (default 20)")
    p.add_argument("--url", default=None, help="an app already running (not started here)")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    if not Path(CHROMIUM).exists():
        sys.exit(f"Chromium is not at {CHROMIUM}: `make browser` installs Debian's package.")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    proc = None
    workdir = Path(tempfile.mkdtemp(prefix="noshow-browser-"))
    adapters = "as listed by the app"
    try:
        url = args.url
        if url is None:
            shipped = shipped_adapters()
            if not {"generative", "classifier"} <= set(shipped):
                sys.exit("adapters/ lacks a generative or a classifier adapter.")
            adapters = f"shipped: {Path(shipped['generative']).name}, "
            adapters += Path(shipped["classifier"]).name
            (workdir / "runs").mkdir()
            print("Starting python app.py (NOSHOW_DEMO=1)...", file=sys.stderr)
            proc, url, _ = start_app(workdir / "runs", workdir, demo=True)
        load_start = os.getloadavg()[0]
        started = time.time()
        results = run(url, args.rounds)
        print(f"{2 * args.rounds} timed clicks in {time.time() - started:.0f} s", file=sys.stderr)
        load = f"{load_start:.1f}, {os.getloadavg()[0]:.1f}"
    finally:
        if proc is not None:
            stop_app(proc)
        shutil.rmtree(workdir, ignore_errors=True)
    command = "python scripts/bench_browser.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    print(markdown(results, command.strip(), url, adapters, load))
    return 0


if __name__ == "__main__":
    sys.exit(main())
