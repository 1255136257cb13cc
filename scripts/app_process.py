"""The app under test, for the load and browser benchmarks: two adapters to serve (trained
here on the CPU, or the shipped ones), `python app.py` started on a free port and stopped,
its resident memory sampled, and a line on the machine it runs on.

    from app_process import start_app, stop_app, train_adapters
    gen, clf = train_adapters(runs_dir, "tiny")
    proc, url, log_path = start_app(runs_dir, workdir, demo=True)
    ...
    stop_app(proc)

Used by scripts/load_test.py and scripts/bench_browser.py (which put scripts/ on the path).
"""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from noshow.system.paths import REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_adapters(runs_dir: Path, base: str) -> tuple[str, str]:
    """A generative and a classifier adapter, a few steps each on the CPU: on a 2-layer random
    Llama (`base="tiny"`, the tests' fixture) or on the bundled SmolLM2-135M (`"bundled"`:
    real arithmetic per request; about a minute to train)."""
    from noshow.config import DataConfig, LoraSettings, RunConfig, TrainConfig
    from noshow.modeling.models import load_tokenizer
    from noshow.modeling.presets import DEFAULT_MODEL
    from noshow.modeling.random_models import build_random_llama
    from noshow.training.recipe import train

    model = DEFAULT_MODEL
    if base == "tiny":
        folder = runs_dir.parent / "tiny-llama"
        model = str(build_random_llama(folder, load_tokenizer(DEFAULT_MODEL)))
    paths = []
    for approach in ("generative", "classifier"):
        config = RunConfig(
            data=DataConfig(source="synthetic", max_train_rows=64, max_eval_rows=32),
            lora=LoraSettings(r=4, alpha=8, dropout=0.0),
            train=TrainConfig(
                approach=approach,
                model=model,
                quantize="none",
                max_steps=3 if base == "tiny" else 2,
                batch_size=16 if base == "tiny" else 8,
                lr=1e-3,
                output_dir=str(runs_dir),
            ),
        )
        result = train(config, on_progress=lambda _: None)
        if result.state != "completed":
            sys.exit(f"could not train the {base} {approach} adapter: {result.error}")
        paths.append(str(result.run_dir))
    return paths[0], paths[1]


def shipped_adapters() -> dict[str, str]:
    """{approach: path} of the first shipped adapter of each approach in adapters/."""
    from noshow.inference.predict import list_adapters

    found = {}
    for item in list_adapters(REPO / "nonexistent-runs", REPO / "adapters"):
        found.setdefault(item["approach"], item["path"])
    return found


def start_app(
    runs_dir: Path, workdir: Path, demo: bool = True
) -> tuple[subprocess.Popen, str, Path]:
    """`python app.py` on a free port, as a public demo unless `demo` is False (training
    allowed); returns (process, url, log path)."""
    import httpx

    port = free_port()
    env = {
        **os.environ,
        "NOSHOW_DEMO": "1" if demo else "0",
        "NOSHOW_HOST": "127.0.0.1",
        "NOSHOW_LABELS_DB": str(workdir / "labels.sqlite"),
        "NOSHOW_DATA": os.environ.get("NOSHOW_DATA", "synthetic"),
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    env.pop("SPACE_ID", None)
    log_path = workdir / "app.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "app.py", "--port", str(port), "--runs-dir", str(runs_dir)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"app.py exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return proc, url, log_path
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    sys.exit(f"app.py did not answer within 180 s:\n{log_path.read_text()[-3000:]}")


def stop_app(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


class MemorySampler(threading.Thread):
    """Peak resident memory of a process and its children, sampled every `every` s."""

    def __init__(self, pid: int, every: float = 0.2) -> None:
        super().__init__(daemon=True)
        import psutil

        self.process = psutil.Process(pid)
        self.every = every
        self.start_mb = self.peak_mb = self._rss_mb()
        self._done = threading.Event()

    def _rss_mb(self) -> float:
        import psutil

        total = 0
        for proc in [self.process, *self.process.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):  # a child may just have exited
                total += proc.memory_info().rss
        return total / 2**20

    def run(self) -> None:
        while not self._done.wait(self.every):
            try:
                self.peak_mb = max(self.peak_mb, self._rss_mb())
            except Exception:  # noqa: BLE001 - the app may be stopping
                return

    def stop(self) -> None:
        self._done.set()
        self.join(5)


def machine_line() -> str:
    """The machine in one line: CPU cores and model, memory, GPU."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        mem = f", {psutil.virtual_memory().total / 2**30:.0f} GiB RAM"
    except ImportError:
        mem = ""
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    except Exception:  # noqa: BLE001 - torch is optional here
        gpu = "GPU unknown"
    return f"{os.cpu_count()} CPU cores ({cpu}){mem}, {gpu}"
