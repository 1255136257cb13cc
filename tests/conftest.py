"""Shared fixtures: the real data file (skipped with a reason when absent), a tiny random
Llama that never downloads anything, the bundled real model, two finished tiny adapters
(generative and classifier, trained once per session on the CPU) and `free_port()` for
tests that launch the app (`from conftest import free_port`), and Debian's Chromium for the
browser tests (`chromium_browser`, `shot`)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[1]
# The adapters shipped in adapters/, by approach (`from conftest import SHIPPED`).
SHIPPED = {
    "generative": REPO / "adapters" / "generative-smollm2-135m",
    "classifier": REPO / "adapters" / "classifier-smollm2-135m",
}
REAL_DATA = REPO.parent / "shared" / "data" / "KaggleV2-May-2016.csv"
# The browser tests drive the system's Chromium (never `playwright install`); screenshots land
# in test-artifacts/ (gitignored).
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = REPO / "test-artifacts"

# Tests must never reach a hub; CPU threads kept small for the 2-core CI machine.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # torch missing or broken: GPU tests cannot run either
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU; this machine has none")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def real_data_path() -> Path:
    if not REAL_DATA.exists():
        pytest.skip(f"real data file not present at {REAL_DATA}")
    return REAL_DATA


@pytest.fixture(scope="session")
def bundled_model_dir() -> Path:
    from noshow.modeling.presets import resolve

    return resolve("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, bundled_model_dir) -> Path:
    """A 2-layer, hidden-16 random Llama with the bundled tokenizer (real Yes/No tokens)."""
    from noshow.modeling.models import load_tokenizer
    from noshow.modeling.random_models import build_random_llama

    folder = tmp_path_factory.mktemp("tiny-llama")
    return build_random_llama(folder, load_tokenizer(bundled_model_dir))


@pytest.fixture(scope="session")
def adapters(tmp_path_factory, tiny_model_dir) -> SimpleNamespace:
    """Two finished runs (generative, classifier) in one runs folder, trained on the CPU."""
    from noshow.config import DataConfig, LoraSettings, RunConfig, TrainConfig
    from noshow.training.recipe import train

    runs = tmp_path_factory.mktemp("compare-runs")
    paths = {}
    for approach in ("generative", "classifier"):
        config = RunConfig(
            data=DataConfig(source="synthetic", max_train_rows=64, max_eval_rows=64),
            lora=LoraSettings(r=4, alpha=8, dropout=0.0),
            train=TrainConfig(
                approach=approach,
                model=str(tiny_model_dir),
                quantize="none",
                max_steps=3,
                batch_size=16,
                lr=1e-3,
                output_dir=str(runs),
            ),
        )
        result = train(config, on_progress=lambda _: None)
        assert result.state == "completed", result.error
        paths[approach] = str(result.run_dir)
    return SimpleNamespace(runs=runs, **paths)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_on_free_port(demo, attempts: int = 3, **kwargs) -> str:
    """Launch `demo` in the background on a free localhost port with the app's style; returns
    its URL. Gradio's own localhost check can time out on a busy machine: then another port."""
    from noshow.app.demo import style_kwargs

    for attempt in range(attempts):
        port = free_port()
        try:
            demo.launch(
                server_name="127.0.0.1",
                server_port=port,
                prevent_thread_lock=True,
                quiet=True,
                **style_kwargs(),
                **kwargs,
            )
            return f"http://127.0.0.1:{port}/"
        except ValueError:
            demo.close()
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def tiny_adapters_client(tmp_path_factory, adapters):
    """A gradio_client Client of the app serving the two tiny adapters (no shipped ones) on
    the synthetic data: one server per test module."""
    from gradio_client import Client

    from noshow.app.demo import build_demo
    from noshow.training.jobs import JobManager

    demo = build_demo(
        jobs=JobManager(runs_dir=adapters.runs),
        store=None,
        runs_dir=adapters.runs,
        shipped_dir=tmp_path_factory.mktemp("no-shipped"),
        data_source="synthetic",
    )
    client = Client(launch_on_free_port(demo), verbose=False)
    yield client
    client.close()
    demo.close()


def serve_app(store, runs, tmp_path_factory, **extra):
    """For an `app` fixture (`yield from serve_app(...)`): the whole app on the synthetic data
    with `store` and the runs in `runs` (no shipped adapters), launched on a free port;
    yields SimpleNamespace(url, jobs, store, **extra), and afterwards cancels any job and
    closes the server and the store."""
    from noshow.app.demo import build_demo
    from noshow.training.jobs import JobManager

    jobs = JobManager(runs_dir=runs)  # the real noshow.training.recipe.train
    demo = build_demo(
        jobs=jobs,
        store=store,
        runs_dir=runs,
        data_source="synthetic",
        # The runs only: adapters/ in the repository would be listed (and picked) first.
        shipped_dir=tmp_path_factory.mktemp("no-shipped"),
    )
    yield SimpleNamespace(url=launch_on_free_port(demo), jobs=jobs, store=store, **extra)
    jobs.cancel()
    jobs.wait(60)
    demo.close()
    store.close()


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()


def browser_page(browser, url: str, name: str, wait_ms: int, height: int = 1000):
    """Yield a fresh page at `url` (for a `page` fixture: `yield from browser_page(...)`);
    a full-page screenshot `end-<name>` when the test ends, pass or fail. expect() has its
    own 5 s default apart from the page's: both get `wait_ms`, as a loaded 2-core CI run can
    take longer between a click and its result."""
    from playwright.sync_api import expect

    expect.set_options(timeout=wait_ms)
    context = browser.new_context(viewport={"width": 1400, "height": height})
    page = context.new_page()
    page.set_default_timeout(wait_ms)
    page.goto(url)
    yield page
    if not page.is_closed():
        shot(page, f"end-{name}")
    context.close()


def chromium_browser():
    """Yield a launched headless Chromium (for a module-scoped `browser` fixture: `yield from
    chromium_browser()`); skips with the fix when Chromium is not installed."""
    if not CHROMIUM.exists():
        pytest.skip(
            f"Chromium is not installed at {CHROMIUM}: run `make browser` (Debian package)."
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def shot(page, name: str) -> None:
    """A full-page screenshot in test-artifacts/ (kept after the run, pass or fail)."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
