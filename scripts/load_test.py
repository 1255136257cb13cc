"""Load test: N concurrent users run Compare (one statement, both adapters) against one app on
this machine for D seconds, optionally while batch evaluations run; prints a Markdown table
(requests, errors, latency percentiles, how the scheduler served them, app memory).

    python scripts/load_test.py                          # 20 users x 60 s (make bench-load)
    python scripts/load_test.py --users 3 --duration 5   # a quick smoke run
    python scripts/load_test.py --adapters shipped       # the adapters in adapters/
    python scripts/load_test.py --adapters shipped --batches 2   # with 2 batch evaluations
    python scripts/load_test.py --statements examples    # the five example buttons' texts
    python scripts/load_test.py --url http://127.0.0.1:7860/ --auth user:password
    python scripts/load_test.py --users 1 --duration 60 --while-training   # issue 5's goal

Without --url it starts `python app.py` as a public demo (NOSHOW_DEMO=1, as on a Space) on a
free port, with a runs folder holding two adapters: `--adapters tiny` trains a generative and
a classifier adapter on a tiny random Llama here on the CPU (seconds; measures the app, the
queue and the scoring path, not a real model's arithmetic), `--adapters bundled` trains them
on the bundled SmolLM2-135M (about a minute; real arithmetic per request), `--adapters
shipped` uses the shipped ones in adapters/, `auto` (default) takes the shipped ones when
both approaches are there, else tiny. `--runs-dir` uses the finished runs of a folder.

Each user is its own gradio_client session calling /compare in a loop, one request at a
time. `--statements rows` (default) sends every request a statement no one sent before
(rendered from rows of the real data file when present, else from random form rows), so
the app's answer cache never helps and every Compare is scored; `--statements examples`
cycles the five example statements (what the example buttons send: after the first round
the cache answers). A request is an error unless both adapters return a finite
P(no-show) in [0, 1]. Latency is the client's wall time for the whole call (queueing
included); "scoring" is the app's own figure for the forwards that served it (both
adapters); "waited" is the time the app's scheduler held it before its forward, and
"shared" how many statements that forward scored (noshow.inference.serving).
`--batches N` starts N batch evaluations (/compare_batch, one per session, each restarted
when it finishes) before the clock and keeps them running through the window; the report
gives the rows they scored in it.
The app's resident memory (with its child processes) is sampled every 0.2 s. The first
request, which loads both adapters, is made before the clock starts and reported apart.
`--while-training` starts the app with training allowed (no demo mode) and, before the
clock starts, a training job through its /start_training endpoint (classifier head on the
bundled SmolLM2-135M, synthetic data, the "quick CPU demo" settings with steps enough to
outlast the window), so the Compare figures are those of an app whose background thread
trains on the same cores; the report gives the steps the job made during the window, and
the job is cancelled at the end. Run it once without the flag for the idle figures.
Exit status 1 when any request failed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import math
import os
import platform
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


@dataclass
class Sample:
    started: float
    seconds: float
    ok: bool
    scoring_ms: float | None = None
    error: str | None = None
    queue_ms: float | None = None  # the app's scheduler held it this long (longer adapter)
    shared: int | None = None  # statements in the forward that scored it (largest)


@dataclass
class Report:
    users: int
    duration_s: float
    samples: list[Sample] = field(default_factory=list)
    first_request_s: float | None = None
    rss_start_mb: float | None = None
    rss_peak_mb: float | None = None
    adapters: str = ""
    url: str = ""
    training: str = ""  # while-training: the job and the steps it made in the window
    round_trip_s: float | None = None  # p50 of the app's cheapest endpoint: Gradio's own cost
    http_compare_s: float | None = None  # p50 of one Compare over plain HTTP
    http_scoring_s: float | None = None  # ... and of its scoring (both adapters)
    statements: str = ""  # what the users sent
    batches: str = ""  # batch evaluations running through the window
    load: str = ""  # the machine's load average at the start and the end

    @property
    def errors(self) -> list[Sample]:
        return [s for s in self.samples if not s.ok]


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    rank = (len(values) - 1) * q
    low, high = math.floor(rank), math.ceil(rank)
    return values[low] + (values[high] - values[low]) * (rank - low)


# ----------------------------------------------------------------------------- the app


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


# ----------------------------------------------------------------------------- a training job

ROUND_TRIP_CALLS = 20


def measure_round_trip(client: Any, calls: int = ROUND_TRIP_CALLS) -> float:
    """p50 seconds of the app's cheapest endpoint: what any call costs before model work."""
    times = []
    for _ in range(calls):
        start = time.time()
        client.predict(None, None, api_name="/compare_adapters")
        times.append(time.time() - start)
    return percentile(times, 0.5)


def http_compare(http: Any, url: str, text: str, generative: str, classifier: str) -> Any:
    """One /compare over Gradio's plain HTTP call API (POST, then read the event stream):
    what curl, or a browser's fetch, costs, without gradio_client's own overhead."""
    import json

    base = url.rstrip("/") + "/gradio_api/call/compare"
    event = http.post(base, json={"data": [text, generative, classifier]})
    event.raise_for_status()
    with http.stream("GET", f"{base}/{event.json()['event_id']}") as stream:
        kind = None
        for line in stream.iter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and kind in ("complete", "error"):
                if kind == "error":
                    raise RuntimeError(f"/compare failed: {line[5:].strip()[:200]}")
                return json.loads(line[5:])
    raise RuntimeError("/compare ended without a result")


def measure_http_compare(
    url: str,
    generative: str,
    classifier: str,
    auth: tuple[str, str] | None = None,
    calls: int = ROUND_TRIP_CALLS,
    statements: Statements | None = None,
) -> tuple[float | None, float | None]:
    """(p50 seconds of a whole Compare over plain HTTP on one kept-alive connection, p50
    seconds of its scoring), each call a statement not scored before (`Statements`)."""
    import httpx

    statements = statements or Statements("rows", seed=1)
    totals, scoring = [], []
    with httpx.Client(timeout=120) as http:
        if auth:
            http.post(url.rstrip("/") + "/login", data={"username": auth[0], "password": auth[1]})
        for _ in range(calls):
            start = time.time()
            answer = http_compare(http, url, statements.next(), generative, classifier)
            totals.append(time.time() - start)
            ok, ms, error = check_answer(answer)
            if not ok:
                raise RuntimeError(f"/compare over HTTP: {error}")
            scoring.append(ms / 1000)
    return percentile(totals, 0.5), percentile(scoring, 0.5)


TRAIN_STEPS = 100_000  # more than any window lasts: the job is cancelled at the end


def training_job_settings() -> dict[str, Any]:
    """/start_training's arguments: the Train tab's quick CPU preset, classifier head on the
    bundled model, synthetic data, steps enough to outlast the window."""
    from noshow.app.train_form import SOURCE_SYNTHETIC, form_values
    from noshow.config import preset_config

    return {
        **form_values(preset_config("quick-cpu")),
        "approach": "classifier",
        "data_source": SOURCE_SYNTHETIC,
        "split": "time",
        "max_steps": TRAIN_STEPS,
        "lora_r": 8,
        "wandb": False,
        "use_clinician_labels": False,
    }


def training_snapshot(client: Any) -> dict[str, Any]:
    return client.predict(api_name="/training_status")[0]


def start_training_job(client: Any, timeout: float = 600.0) -> dict[str, Any]:
    """Start the job and wait until it has made a step (the model is loaded and training)."""
    message = client.predict(**training_job_settings(), api_name="/start_training")
    if "Started run" not in str(message):
        sys.exit(f"The app refused the training job: {message}")
    deadline = time.time() + timeout
    while time.time() < deadline:
        snap = training_snapshot(client)
        if snap.get("state") not in ("queued", "running"):
            sys.exit(f"The training job ended before the window: {snap.get('state')}")
        if (snap.get("progress") or {}).get("step"):
            return snap
        time.sleep(1.0)
    sys.exit(f"The training job made no step within {timeout:.0f} s.")


def training_line(before: dict[str, Any], after: dict[str, Any], seconds: float) -> str:
    steps = int((after.get("progress") or {}).get("step") or 0) - int(
        (before.get("progress") or {}).get("step") or 0
    )
    return (
        f"run {before.get('run_id')} (classifier head, bundled SmolLM2-135M, batch "
        f"{training_job_settings()['batch_size']}, in the app's background thread): "
        f"{steps} steps during the {seconds:.0f} s window, state at the end "
        f"{after.get('state')}"
    )


# ----------------------------------------------------------------------------- the users


def check_answer(answer: Any) -> tuple[bool, float | None, str | None]:
    """(ok, scoring ms, error) for one /compare answer."""
    _, summary, message = answer
    if not isinstance(summary, dict):
        return False, None, f"no result: {message!r}"[:300]
    ms = 0.0
    for approach in ("generative", "classifier"):
        slot = summary.get(approach) or {}
        p = slot.get("p")
        if slot.get("error") or not isinstance(p, float) or not (0.0 <= p <= 1.0):
            return False, None, f"{approach}: {slot.get('error') or p!r}"[:300]
        ms += float(slot.get("latency_ms") or 0.0)
    return True, ms, None


def serving_of(answer: Any) -> tuple[float | None, int | None]:
    """(ms the app's scheduler held the call, statements in its largest forward)."""
    summary = answer[1] if isinstance(answer, list | tuple) and len(answer) > 1 else None
    if not isinstance(summary, dict):
        return None, None
    slots = [summary.get(a) or {} for a in ("generative", "classifier")]
    waits = [s["queue_ms"] for s in slots if s.get("queue_ms") is not None]
    sizes = [s["batch_size"] for s in slots if s.get("batch_size")]
    return (max(waits) if waits else None), (max(sizes) if sizes else None)


# ----------------------------------------------------------------------------- statements


class Statements:
    """Statements for the users: `rows` hands out each one once (real data rows when the
    file is there, else random form rows), `examples` cycles the five examples."""

    def __init__(self, kind: str = "rows", seed: int = 0) -> None:
        import random

        from noshow.data.examples import EXAMPLES

        self.kind = kind
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._i = 0
        self._texts: list[str] = [ex.statement for ex in EXAMPLES]
        self.source = "the five example statements, in turn"
        if kind == "rows":
            self._texts = list(real_statements(seed))
            self.source = (
                f"a new statement per request ({len(self._texts):,} distinct rows of the real "
                "data file, shuffled)"
                if self._texts
                else "a new statement per request (random form rows)"
            )

    def next(self) -> str:
        with self._lock:
            i = self._i
            self._i += 1
        if self.kind == "examples":
            return self._texts[i % len(self._texts)]
        if i < len(self._texts):
            return self._texts[i]
        return self.random_statement(i)

    def random_statement(self, i: int) -> str:
        from noshow.app.compare_input import NEIGHBOURHOODS, WEEKDAYS, form_row
        from noshow.data.statements import render_statement

        with self._lock:
            r = self._rng
            prior = r.randint(0, 8)
            row = form_row(
                age=r.randint(0, 95),
                gender=r.choice("FM"),
                lead_days=r.randint(0, 90),
                sms_received=r.random() < 0.3,
                scholarship=r.random() < 0.1,
                conditions=[c for c in ("hypertension", "diabetes") if r.random() < 0.2],
                prior_appointments=prior,
                prior_no_shows=r.randint(0, prior),
                weekday=r.choice(WEEKDAYS[:5]),
                neighbourhood=r.choice(NEIGHBOURHOODS),
                booking_hour=r.randint(6, 20),
            )
        return render_statement(row)


@functools.lru_cache(maxsize=4)
def real_statements(seed: int = 0, limit: int = 50_000) -> list[str]:
    """Distinct statements of the real data file (shuffled), [] when it is not here."""
    import random

    from noshow.data.load import DATA_ENV_VAR, DEFAULT_DATA_PATH, load_data

    shared = REPO.parent / "shared" / "data" / "KaggleV2-May-2016.csv"
    for candidate in (os.environ.get(DATA_ENV_VAR), DEFAULT_DATA_PATH, shared):
        if candidate and str(candidate) != "synthetic" and Path(candidate).is_file():
            texts = sorted(set(load_data(candidate).frame["statement"].astype(str)))
            random.Random(seed).shuffle(texts)
            return texts[:limit]
    return []


def run_users(
    url: str,
    generative: str,
    classifier: str,
    users: int,
    duration: float,
    auth: tuple[str, str] | None = None,
    statements: Statements | None = None,
) -> list[Sample]:
    """`users` sessions calling /compare back to back for `duration` seconds."""
    from gradio_client import Client

    statements = statements or Statements("rows")
    clients = [Client(url, auth=auth, verbose=False) for _ in range(users)]
    samples: list[Sample] = []
    lock = threading.Lock()
    barrier = threading.Barrier(users + 1)
    deadline: list[float] = []

    def user(index: int, client: Any) -> None:
        barrier.wait()
        while time.time() < deadline[0]:
            text = statements.next()
            start = time.time()
            queue_ms = shared = None
            try:
                answer = client.predict(text, generative, classifier, api_name="/compare")
                ok, scoring_ms, error = check_answer(answer)
                queue_ms, shared = serving_of(answer)
            except Exception as e:  # noqa: BLE001 - every failure is counted and shown
                ok, scoring_ms, error = False, None, f"{type(e).__name__}: {e}"[:300]
            sample = Sample(start, time.time() - start, ok, scoring_ms, error, queue_ms, shared)
            with lock:
                samples.append(sample)

    threads = [
        threading.Thread(target=user, args=(k, c), daemon=True) for k, c in enumerate(clients)
    ]
    for thread in threads:
        thread.start()
    deadline.append(time.time() + duration)
    barrier.wait()
    for thread in threads:
        thread.join(duration + 600)
    for client in clients:
        client.close()
    return samples


BATCH_ROWS = 500  # the public demo's cap: the batches outlast a 60 s window on a CPU


class BatchRunners:
    """`n` sessions each keeping one batch evaluation running (/compare_batch), restarted
    when it finishes, until `stop()`; counts the rows they finished and saw in progress."""

    def __init__(self, url: str, generative: str, classifier: str, n: int, auth=None) -> None:
        from gradio_client import Client

        self.clients = [Client(url, auth=auth, verbose=False) for _ in range(n)]
        self.args = (generative, classifier)
        self._stop = threading.Event()
        self.finished = 0  # batch evaluations that completed
        self.error: str | None = None  # why a runner stopped early
        self.jobs: list[Any] = [None] * n
        self.threads = [
            threading.Thread(target=self._run, args=(k,), daemon=True) for k in range(n)
        ]

    def start(self, timeout: float = 600.0) -> None:
        """Start them and wait until every one shows progress (its adapters are loaded)."""
        for thread in self.threads:
            thread.start()
        deadline = time.time() + timeout
        while time.time() < deadline and self.error is None:
            if all(job is not None and self.rows_of(job) > 0 for job in self.jobs):
                return
            time.sleep(0.5)
        self.stop()
        sys.exit(f"The batch evaluations showed no progress: {self.error or 'timed out'}")

    @staticmethod
    def rows_of(job: Any) -> int:
        import re

        for out in reversed(job.outputs()):
            m = re.search(r'data-done="(\d+)"', str(out[-1]))
            if m:
                return int(m.group(1))
        return 0

    def _run(self, k: int) -> None:
        while not self._stop.is_set():
            job = self.clients[k].submit(*self.args, BATCH_ROWS, False, api_name="/compare_batch")
            self.jobs[k] = job
            while not job.done() and not self._stop.is_set():
                time.sleep(0.2)
            if job.done() and not self._stop.is_set():
                try:
                    message = job.result()[-1]
                except Exception as e:  # noqa: BLE001 - reported, and this runner stops
                    message = f"{type(e).__name__}: {e}"
                if message:
                    self.error = str(message)[:300]
                    return
                self.finished += 1

    def progress(self) -> int:
        return sum(self.rows_of(job) for job in self.jobs if job is not None)

    def stop(self) -> None:
        self._stop.set()
        for job in self.jobs:
            if job is not None and not job.done():
                job.cancel()
        for thread in self.threads:
            thread.join(30)
        for client in self.clients:
            client.close()


# ----------------------------------------------------------------------------- report


def machine_line() -> str:
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


def fmt(value: float | None, scale: float = 1000.0) -> str:
    return "-" if value is None else f"{value * scale:,.0f}"


def markdown(report: Report, command: str) -> str:
    import gradio

    ok = [s.seconds for s in report.samples if s.ok]
    every = [s.seconds for s in report.samples]
    scoring = [s.scoring_ms / 1000 for s in report.samples if s.scoring_ms is not None]
    waited = [s.queue_ms / 1000 for s in report.samples if s.queue_ms is not None]
    shared = [float(s.shared) for s in report.samples if s.shared]
    n = len(report.samples)
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"## Load test: Compare, {report.users} users x {report.duration_s:.0f} s"
        + (" while a job trains" if report.training else ""),
        "",
        f"- date: {when}",
        f"- machine: {machine_line()}",
        f"- app: {report.url} (Gradio {gradio.__version__}); adapters: {report.adapters}",
        f"- command: `{command}`",
        *([f"- while training: {report.training}"] if report.training else []),
        f"- gradio_client round trip (p50 of {ROUND_TRIP_CALLS} calls to /compare_adapters, "
        f"which does no model work, before the clock): {fmt(report.round_trip_s)} ms",
        f"- one Compare over plain HTTP (Gradio's call API on one kept-alive connection, as "
        f"curl or a browser's fetch calls it; p50 of {ROUND_TRIP_CALLS}, before the clock): "
        f"{fmt(report.http_compare_s)} ms, of which scoring both adapters "
        f"{fmt(report.http_scoring_s)} ms",
        f"- first request (loads both adapters, before the clock): "
        f"{fmt(report.first_request_s)} ms",
        *([f"- statements: {report.statements}"] if report.statements else []),
        *([f"- batch evaluations: {report.batches}"] if report.batches else []),
        *([f"- load average (1 min) at start, end: {report.load}"] if report.load else []),
        "",
        "| users | duration (s) | requests | errors | requests/s | p50 (ms) | p95 (ms) | "
        "max (ms) | scoring p50 (ms) | app RSS start (MB) | app RSS peak (MB) | "
        "waited p50 (ms) | shared p50 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {report.users} | {report.duration_s:.0f} | {n:,} | {len(report.errors):,} | "
        f"{n / report.duration_s:,.1f} | {fmt(percentile(every, 0.5))} | "
        f"{fmt(percentile(every, 0.95))} | {fmt(max(every) if every else None)} | "
        f"{fmt(percentile(scoring, 0.5))} | {fmt(report.rss_start_mb, 1)} | "
        f"{fmt(report.rss_peak_mb, 1)} | {fmt(percentile(waited, 0.5))} | "
        f"{fmt(percentile(shared, 0.5), 1)} |",
    ]
    if ok and len(ok) != n:
        lines.append(f"\nLatency of successful requests only: p50 {fmt(percentile(ok, 0.5))} ms.")
    if report.errors:
        shown = sorted({s.error or "?" for s in report.errors})[:5]
        lines.append("\nErrors (first kinds): " + "; ".join(f"`{e}`" for e in shown))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    p.add_argument("--users", type=int, default=20, help="concurrent sessions (default 20)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    p.add_argument(
        "--adapters",
        choices=["auto", "tiny", "bundled", "shipped"],
        default="auto",
        help="auto: shipped when adapters/ has both approaches, else tiny",
    )
    p.add_argument("--runs-dir", default=None, help="use the finished runs of this folder")
    p.add_argument("--url", default=None, help="an app already running (not started here)")
    p.add_argument("--auth", default=None, help="user:password for an app with NOSHOW_AUTH")
    p.add_argument("--generative", default=None, help="adapter path (default: the app's first)")
    p.add_argument("--classifier", default=None, help="adapter path (default: the app's first)")
    p.add_argument(
        "--statements",
        choices=["rows", "examples"],
        default="rows",
        help="rows: a new statement per request (default); examples: the five examples",
    )
    p.add_argument(
        "--batches",
        type=int,
        default=0,
        help="batch evaluations kept running through the window (one session each)",
    )
    p.add_argument(
        "--while-training",
        action="store_true",
        help="start a training job in the app first and measure Compare while it trains",
    )
    args = p.parse_args(argv)
    if args.users < 1 or args.duration <= 0 or args.batches < 0:
        p.error("--users must be at least 1, --duration positive, --batches 0 or more")
    if args.while_training and args.url:
        p.error("--while-training starts its own app; leave out --url")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    report = Report(users=args.users, duration_s=args.duration)
    workdir = Path(tempfile.mkdtemp(prefix="noshow-load-"))
    proc = sampler = None
    gen, clf = args.generative, args.classifier
    try:
        if args.url:
            url = args.url
            report.adapters = "as listed by the app"
        else:
            runs_dir = workdir / "runs"
            runs_dir.mkdir()
            shipped = shipped_adapters()
            use_shipped = args.adapters == "shipped" or (
                args.adapters == "auto" and {"generative", "classifier"} <= set(shipped)
            )
            if args.runs_dir:
                runs_dir = Path(args.runs_dir)
                report.adapters = f"finished runs in {runs_dir}"
            elif use_shipped:
                if not {"generative", "classifier"} <= set(shipped):
                    sys.exit("--adapters shipped: adapters/ lacks a generative or classifier one.")
                gen, clf = gen or shipped["generative"], clf or shipped["classifier"]
                report.adapters = f"shipped: {Path(gen).name}, {Path(clf).name}"
            else:
                base = "bundled" if args.adapters == "bundled" else "tiny"
                print(f"Training two {base} adapters on the CPU...", file=sys.stderr)
                new_gen, new_clf = train_adapters(runs_dir, base)
                gen, clf = gen or new_gen, clf or new_clf
                report.adapters = (
                    "tiny random Llama (2 layers, hidden 16), one per approach"
                    if base == "tiny"
                    else "bundled SmolLM2-135M-Instruct + LoRA r4 (2 steps), one per approach"
                )
            demo = not args.while_training
            print(f"Starting python app.py (NOSHOW_DEMO={int(demo)})...", file=sys.stderr)
            proc, url, _ = start_app(runs_dir, workdir, demo=demo)
            sampler = MemorySampler(proc.pid)
        report.url = url
        if not (gen and clf):
            from gradio_client import Client

            client = Client(url, auth=auth, verbose=False)
            gen_dd, clf_dd, _ = client.predict(None, None, api_name="/compare_adapters")
            client.close()
            gen, clf = gen or gen_dd.get("value"), clf or clf_dd.get("value")
            if not (gen and clf):
                sys.exit("The app lists no generative or no classifier adapter to compare.")
        from gradio_client import Client

        client = Client(url, auth=auth, verbose=False)
        start = time.time()
        answer = client.predict("A first statement.", gen, clf, api_name="/compare")
        report.first_request_s = time.time() - start
        report.round_trip_s = measure_round_trip(client)
        client.close()
        report.http_compare_s, report.http_scoring_s = measure_http_compare(url, gen, clf, auth)
        ok, _, error = check_answer(answer)
        if not ok:
            sys.exit(f"The first Compare failed: {error}")
        if sampler is not None:
            sampler.start_mb = sampler.peak_mb = sampler._rss_mb()
            sampler.start()
        watcher = before = runners = None
        if args.while_training:
            print("Starting a training job in the app...", file=sys.stderr)
            watcher = Client(url, auth=auth, verbose=False)
            before = start_training_job(watcher)
        if args.batches:
            print(f"Starting {args.batches} batch evaluation(s)...", file=sys.stderr)
            runners = BatchRunners(url, gen, clf, args.batches, auth)
            runners.start()
        rows_before = runners.progress() if runners else 0
        statements = Statements(args.statements)
        report.statements = statements.source
        load_start = os.getloadavg()[0]
        print(f"{args.users} users x {args.duration:.0f} s against {url}...", file=sys.stderr)
        report.samples = run_users(
            url, gen, clf, args.users, args.duration, auth, statements=statements
        )
        report.load = f"{load_start:.1f}, {os.getloadavg()[0]:.1f}"
        if runners is not None:
            still = sum(job is not None and not job.done() for job in runners.jobs)
            report.batches = (
                f"{args.batches} kept running (/compare_batch, {BATCH_ROWS} rows, one session "
                f"each); during the window they advanced {runners.progress() - rows_before:,} "
                f"scores (rows x 2 adapters; a restarted batch counts from 0), "
                f"{runners.finished} finished, "
                f"{still} running at the end"
                + (f"; a runner stopped early: {runners.error}" if runners.error else "")
            )
            runners.stop()
        if watcher is not None:
            report.training = training_line(before, training_snapshot(watcher), args.duration)
            watcher.predict(api_name="/cancel_training")
            watcher.close()
        if sampler is not None:
            sampler.stop()
            report.rss_start_mb, report.rss_peak_mb = sampler.start_mb, sampler.peak_mb
    finally:
        if proc is not None:
            stop_app(proc)
        shutil.rmtree(workdir, ignore_errors=True)
    command = "python scripts/load_test.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    print(markdown(report, command.strip()))
    return 1 if report.errors or not report.samples else 0


if __name__ == "__main__":
    sys.exit(main())
