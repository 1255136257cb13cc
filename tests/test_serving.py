"""The scheduler in front of the predictors (noshow.inference.scheduler): concurrent calls
share a forward, owners take turns, the cache, background chunks behind interactive calls,
cancellation; one batch job per owner (noshow.inference.serving.BackgroundJobs); and batched
scores equal single ones (within 1e-3) on real adapters (tiny random Llama, trained here on
the CPU).

    .venv/bin/python -m pytest -q tests/test_serving.py
"""

from __future__ import annotations

import threading
import time

import pytest

from noshow.inference.scheduler import BusyError, Cancelled, Scheduler
from noshow.inference.serving import AdapterService, BackgroundJobs


class GatedPredictor:
    """Scores P = len(statement) / 1000; its first forward waits for `gate`, so tests can
    queue calls behind it. Records each forward's statements."""

    threshold = 0.5
    name = "gated"
    approach = "classifier"

    def __init__(self, gate: threading.Event | None = None, seconds: float = 0.0) -> None:
        self.gate = gate
        self.seconds = seconds
        self.forwards: list[list[str]] = []
        self.started = threading.Event()

    def predict_proba(self, statements):
        self.forwards.append(list(statements))
        self.started.set()
        if self.gate is not None and len(self.forwards) == 1:
            assert self.gate.wait(10)
        time.sleep(self.seconds * len(statements))
        return [len(s) / 1000 for s in statements]


def submit_after_first_forward(sched, predictor, calls):
    """Block the model with a first call, queue `calls` [(statements, owner)] behind it."""
    first = sched.submit(predictor, ["first"], owner="a")
    assert predictor.started.wait(5)
    futures = [sched.submit(predictor, texts, owner=owner) for texts, owner in calls]
    predictor.gate.set()
    first.result(5)
    return [f.result(5) for f in futures]


def test_concurrent_calls_for_one_adapter_share_one_forward():
    sched = Scheduler()
    predictor = GatedPredictor(threading.Event())
    answers = submit_after_first_forward(
        sched, predictor, [(["b"], "u1"), (["cc"], "u2"), (["ddd"], "u3")]
    )
    assert predictor.forwards == [["first"], ["b", "cc", "ddd"]]
    assert [a[0].p for a in answers] == [0.001, 0.002, 0.003]
    assert all(a[0].batch_size == 3 and a[0].queue_ms > 0 for a in answers)


def test_owners_take_turns_when_a_forward_is_full():
    sched = Scheduler(max_batch=2)
    predictor = GatedPredictor(threading.Event())
    calls = [(["x1"], "busy"), (["x2"], "busy"), (["x3"], "busy"), (["y1"], "quiet")]
    submit_after_first_forward(sched, predictor, calls)
    # the quiet session's call rides in the first forward although it came last
    assert predictor.forwards[1] == ["x1", "y1"]
    assert predictor.forwards[2:] == [["x2", "x3"]]


def test_predictor_that_scores_one_statement_per_forward_gets_one_per_call():
    sched = Scheduler()
    predictor = GatedPredictor(threading.Event())
    predictor.single_rows = True  # sharing a call would only make the riders wait
    submit_after_first_forward(sched, predictor, [(["b"], "u1"), (["cc"], "u2"), (["d"], "u3")])
    assert predictor.forwards == [["first"], ["b"], ["cc"], ["d"]]


def test_repeated_statement_is_answered_from_the_cache():
    sched = Scheduler()
    predictor = GatedPredictor()
    [first] = sched.run(predictor, ["same text"])
    [again] = sched.run(predictor, ["same text"])
    assert predictor.forwards == [["same text"]]
    assert again.cached and not first.cached and again.p == first.p


def test_identical_statements_in_one_forward_are_scored_once():
    sched = Scheduler()
    predictor = GatedPredictor(threading.Event())
    submit_after_first_forward(sched, predictor, [(["dup"], "u1"), (["dup"], "u2")])
    assert predictor.forwards[1] == ["dup"]


def test_a_session_with_too_many_calls_waiting_is_refused():
    sched = Scheduler(max_pending_per_owner=2)
    predictor = GatedPredictor(threading.Event())
    sched.submit(predictor, ["first"], owner="other")
    assert predictor.started.wait(5)
    sched.submit(predictor, ["a"], owner="me")
    sched.submit(predictor, ["b"], owner="me")
    with pytest.raises(BusyError, match="already has 2 Compares waiting"):
        sched.submit(predictor, ["c"], owner="me")
    predictor.gate.set()


def test_interactive_call_waits_for_at_most_one_background_chunk():
    sched = Scheduler(chunk_seconds=0.05, background_share=0.25)
    background = GatedPredictor(seconds=0.01)  # ~5 statements per chunk once measured
    interactive = GatedPredictor()
    done = threading.Event()
    thread = threading.Thread(
        target=lambda: (
            sched.score_background(background, [f"s{i}" for i in range(200)]),
            done.set(),
        )
    )
    thread.start()
    while len(background.forwards) < 3:
        time.sleep(0.005)
    start = time.perf_counter()
    [answer] = sched.run(interactive, ["now"])
    waited = time.perf_counter() - start
    thread.join(30)
    assert done.is_set()
    assert answer.queue_ms / 1000 <= waited
    # one chunk is ~0.05 s; a whole batch (200 x 0.01 s) would be 2 s
    assert waited < 0.5, waited
    assert len(background.forwards) > 10  # the batch went on in chunks


def test_background_gets_its_share_while_interactive_calls_keep_coming():
    sched = Scheduler(chunk_seconds=0.02, background_share=0.25)
    background = GatedPredictor(seconds=0.004)
    interactive = GatedPredictor(seconds=0.02)
    stop = threading.Event()

    def user(k: int) -> None:
        i = 0
        while not stop.is_set():
            sched.run(interactive, [f"user {k} call {i}"], owner=f"u{k}")
            i += 1

    users = [threading.Thread(target=user, args=(k,)) for k in range(4)]
    for t in users:
        t.start()
    time.sleep(0.1)
    before = sum(len(f) for f in background.forwards)
    start = time.perf_counter()
    sched.score_background(background, [f"row {i}" for i in range(60)])
    took = time.perf_counter() - start
    stop.set()
    for t in users:
        t.join(5)
    assert before == 0 and sum(len(f) for f in background.forwards) == 60
    # alone: 60 x 4 ms = 0.24 s; with a quarter of the model's time about 1 s, not forever
    assert took < 5, took


def test_background_work_stops_between_chunks_once_cancelled():
    sched = Scheduler(chunk_seconds=0.02)
    predictor = GatedPredictor(seconds=0.005)
    stop = threading.Event()
    seen = []

    def on_chunk(done: int, total: int) -> None:
        seen.append(done)
        if done >= 10:
            stop.set()

    with pytest.raises(Cancelled):
        sched.score_background(
            predictor, [f"s{i}" for i in range(500)], on_chunk=on_chunk, should_stop=stop.is_set
        )
    assert seen[0] == 1  # the first chunk is one statement: progress from the first row
    assert sum(len(f) for f in predictor.forwards) == seen[-1] < 500


def test_a_failing_forward_reaches_its_caller_and_the_scheduler_goes_on():
    class Broken(GatedPredictor):
        def predict_proba(self, statements):
            raise RuntimeError("model on fire")

    sched = Scheduler()
    with pytest.raises(RuntimeError, match="model on fire"):
        sched.run(Broken(), ["x"])
    assert sched.run(GatedPredictor(), ["fine"])[0].p == 0.004


def test_one_batch_job_per_owner_and_a_second_is_refused():
    jobs = BackgroundJobs(per_owner=1)
    release = threading.Event()
    first = jobs.start("me", "batch comparison", lambda job: release.wait(5))
    with pytest.raises(BusyError, match="already have a batch comparison running"):
        jobs.start("me", "batch comparison", lambda job: None)
    other = jobs.start("someone else", "batch comparison", lambda job: "theirs")
    assert other.wait(5) and other.result == "theirs" and other.state == "done"
    release.set()
    assert first.wait(5) and first.state == "done"
    assert jobs.start("me", "batch comparison", lambda job: 1).wait(5)


def test_cancelled_job_ends_as_cancelled_and_frees_its_owner():
    jobs = BackgroundJobs()
    sched = Scheduler(chunk_seconds=0.01)
    predictor = GatedPredictor(seconds=0.002)

    def work(job):
        sched.score_background(
            predictor,
            [f"s{i}" for i in range(10_000)],
            on_chunk=lambda d, t: job.report(d, t, "scoring"),
            should_stop=job.should_stop,
        )

    job = jobs.start("me", "batch comparison", work)
    while job.done < 5:
        time.sleep(0.005)
    job.cancel()
    assert job.wait(5) and job.state == "cancelled"
    assert job.snapshot()["done"] < 10_000
    assert jobs.running("me") == []


# ----------------------------------------------------------------------------- real adapters


@pytest.fixture(scope="module")
def statements():
    from noshow.data.load import load_data

    return load_data("synthetic").frame["statement"].head(12).tolist()


@pytest.mark.parametrize("weights", ["float32", "auto"])
def test_batched_and_single_scores_agree_within_1e_3_on_real_adapters(
    adapters, statements, weights
):
    """Concurrent Compares of 12 sessions share forwards; each gets the P (and generative
    answer) it would get alone. float32 scores a list as one padded batch; "auto" is the
    app's default weights (one statement per forward where bf16 is picked)."""
    from noshow.inference.predict import load_predictor

    sched = Scheduler(max_batch=16)
    for approach in ("generative", "classifier"):
        predictor = load_predictor(getattr(adapters, approach), device="cpu", cpu_weights=weights)
        single = [predictor.predict_with_answer(s) for s in statements]
        gate = threading.Event()
        gated = GatedPredictor(gate)
        blocker = sched.submit(gated, ["hold the scheduler"], owner="x")
        # queued only once the scheduler is held: a round taken while they still arrived
        # would carry only those queued so far (9 of 12 seen on a loaded machine)
        assert gated.started.wait(10)
        futures = [sched.submit(predictor, [s], owner=f"user{i}") for i, s in enumerate(statements)]
        gate.set()
        blocker.result(10)
        answers = [f.result(60)[0] for f in futures]
        # a list shares a forward (float32 here), or one statement per call (bf16 single rows)
        shared = 1 if predictor.single_rows else sched.max_batch
        assert max(a.batch_size for a in answers) == min(shared, len(statements))
        for (p, word), got in zip(single, answers, strict=True):
            assert abs(got.p - p) < 1e-3
            assert got.answer == word


def test_service_refuses_unlisted_folders_in_a_public_demo(adapters, tmp_path):
    from noshow.inference.predict import PredictError

    service = AdapterService(adapters.runs, tmp_path / "none", listed_only=True)
    assert service.default("generative") == adapters.generative
    assert service.load(adapters.classifier, "classifier").approach == "classifier"
    with pytest.raises(PredictError, match="only the listed adapters"):
        service.load(str(tmp_path), "classifier")
