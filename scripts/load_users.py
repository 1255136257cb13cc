"""What the load test's simulated users do to the app, and how their answers are judged:
sessions calling /compare back to back (`run_users`), sessions keeping batch evaluations
running (`BatchRunners`), a training job started through the app's own endpoints, Compares
over Gradio's plain HTTP call API, the statements they send (`Statements`), and the checks
and statistics of each answer (`check_answer`, `serving_of`, `percentile`).

    from load_users import Statements, run_users
    samples = run_users(url, generative, classifier, users=20, duration=60.0,
                        statements=Statements("rows"))

Used by scripts/load_test.py and scripts/bench_browser.py (which put scripts/ on the path).
"""

from __future__ import annotations

import functools
import math
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from noshow.system.paths import REPO


@dataclass
class Sample:
    """One /compare call: when it started, its wall time, whether it counted, and the app's
    own figures for it."""

    started: float
    seconds: float
    ok: bool
    scoring_ms: float | None = None
    error: str | None = None
    queue_ms: float | None = None  # the app's scheduler held it this long (longer adapter)
    shared: int | None = None  # statements in the forward that scored it (largest)
    kind: str = "typed"  # what the user did: typed, example or what_if


def percentile(values: list[float], q: float) -> float | None:
    """The `q` quantile, interpolated between the two nearest values; None for no values."""
    if not values:
        return None
    values = sorted(values)
    rank = (len(values) - 1) * q
    low, high = math.floor(rank), math.ceil(rank)
    return values[low] + (values[high] - values[low]) * (rank - low)


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


def check_what_if(answer: Any) -> tuple[bool, float | None, str | None]:
    """(ok, None, error) for one /what_if answer: both adapters' P before and after."""
    _, summary, message = answer
    if not isinstance(summary, dict):
        return False, None, f"no result: {message!r}"[:300]
    for approach in ("generative", "classifier"):
        slot = (summary.get("models") or {}).get(approach) or {}
        if slot.get("error") or not all(
            isinstance(slot.get(k), float) and 0.0 <= slot[k] <= 1.0
            for k in ("p_before", "p_after")
        ):
            return False, None, f"what-if {approach}: {slot.get('error') or slot!r}"[:300]
    return True, None, None


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


# ----------------------------------------------------------------------------- the users


def run_sessions(
    url: str,
    users: int,
    duration: float,
    auth: tuple[str, str] | None,
    session: Any,
    grace: float = 600.0,
) -> list[Sample]:
    """`users` gradio_client sessions started together, each running `session(index,
    client, deadline, record)` (record(Sample) keeps one answer) until `deadline`."""
    from gradio_client import Client

    clients = [Client(url, auth=auth, verbose=False) for _ in range(users)]
    samples: list[Sample] = []
    lock = threading.Lock()
    barrier = threading.Barrier(users + 1)
    deadline: list[float] = []

    def record(sample: Sample) -> None:
        with lock:
            samples.append(sample)

    def user(index: int, client: Any) -> None:
        barrier.wait()
        session(index, client, deadline[0], record)

    threads = [
        threading.Thread(target=user, args=(k, c), daemon=True) for k, c in enumerate(clients)
    ]
    for thread in threads:
        thread.start()
    deadline.append(time.time() + duration)
    barrier.wait()
    for thread in threads:
        thread.join(duration + grace)
    for client in clients:
        client.close()
    return samples


def what_if_change(rng: Any, text: str) -> tuple[str, str]:
    """(fact, new value) for a what-if on `text`: a value that differs from the statement's
    own, as the page offers (the app refuses a "change" to the same value)."""
    from noshow.app.compare_input import WHAT_IF_FACTS, fact_text, prepare_statement, resolve_facts

    fact = rng.choice(list(WHAT_IF_FACTS))
    choices = WHAT_IF_FACTS[fact][1]
    try:
        row = resolve_facts(prepare_statement(text)[0], None)[0]
        current = fact_text(row, fact).upper() if row else None
    except Exception:  # noqa: BLE001 - facts not readable: any value (the app says why)
        current = None
    return fact, rng.choice([c for c in choices if c.upper() != current] or choices)


def timed_call(client: Any, kind: str, text: str, *adapters: str, what_if=None) -> Sample:
    """One /compare of `text` (or, with `what_if` = (fact, value), one /what_if), timed and
    checked; a failure is a Sample with its error."""
    start = time.time()
    queue_ms = shared = None
    try:
        if what_if is not None:
            # the last input: the clinic's no-show rate, "" = as calibrated
            answer = client.predict(text, *what_if, *adapters, "", api_name="/what_if")
            ok, scoring_ms, error = check_what_if(answer)
        else:
            answer = client.predict(text, *adapters, "", api_name="/compare")
            ok, scoring_ms, error = check_answer(answer)
            queue_ms, shared = serving_of(answer)
    except Exception as e:  # noqa: BLE001 - every failure is counted and shown
        ok, scoring_ms, error = False, None, f"{type(e).__name__}: {e}"[:300]
    return Sample(start, time.time() - start, ok, scoring_ms, error, queue_ms, shared, kind)


# What a visitor of the Space does, and how long they look at an answer before the next
# click: mostly statements they type (new to the cache), the example buttons (answered from
# the cache after their first scoring), and what-ifs (two rows through both adapters).
MIX = (("typed", 0.5), ("example", 0.3), ("what_if", 0.2))
THINK_S = (3.0, 12.0)  # uniform think time between answer and next click


def run_users(
    url: str,
    generative: str,
    classifier: str,
    users: int,
    duration: float,
    auth: tuple[str, str] | None = None,
    statements: Statements | None = None,
    think_s: tuple[float, float] | None = None,
    seed: int = 0,
) -> list[Sample]:
    """`users` sessions calling /compare back to back for `duration` seconds, or with
    `think_s` sessions that click, read the answer for a think time, and click again: a
    seeded `MIX` of typed statements (`statements`), example buttons (the five examples'
    texts through /compare) and what-ifs (/what_if on the last typed statement, one fact
    changed). Each thinking user starts after a random part of one think time."""
    statements = statements or Statements("rows")
    if think_s is None:

        def nonstop(_index: int, client: Any, deadline: float, record) -> None:
            while time.time() < deadline:
                record(timed_call(client, "typed", statements.next(), generative, classifier))

        return run_sessions(url, users, duration, auth, nonstop)

    import random

    from noshow.data.examples import EXAMPLES

    kinds, weights = zip(*MIX, strict=True)

    def session(index: int, client: Any, deadline: float, record) -> None:
        rng = random.Random(seed * 1000 + index)
        time.sleep(rng.uniform(0, think_s[1]))
        last = statements.next()
        while time.time() < deadline:
            kind = rng.choices(kinds, weights)[0]
            if kind == "what_if":
                change = what_if_change(rng, last)
                record(timed_call(client, kind, last, generative, classifier, what_if=change))
            else:
                if kind == "typed":
                    last = statements.next()
                text = last if kind == "typed" else rng.choice(EXAMPLES).statement
                record(timed_call(client, kind, text, generative, classifier))
            time.sleep(rng.uniform(*think_s))

    return run_sessions(url, users, duration, auth, session, grace=think_s[1] + 600)


def run_think_users(
    *args: Any, think_s: tuple[float, float] = THINK_S, **kwargs: Any
) -> list[Sample]:
    """`run_users` with think times (`THINK_S` unless given)."""
    return run_users(*args, think_s=think_s, **kwargs)


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
                if message and "noshow-batch-done" not in str(message):  # the done marker
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


# ----------------------------------------------------------------------------- before the clock

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
    event = http.post(base, json={"data": [text, generative, classifier, ""]})
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


# ----------------------------------------------------------------------------- a training job

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
