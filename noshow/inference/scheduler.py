"""One scheduler in front of the predictors: concurrent calls share a forward, owners take
turns, and background work runs in short chunks behind interactive calls.

All CPU model work runs on one thread (`noshow.inference.cpu.thread`), so every Compare,
what-if, label suggestion and batch evaluation competes for it: a batch evaluation scored in
large calls would hold every Compare behind it for as long as a call takes, and Compares
scored one per event would wait for each other even where one forward could serve them all.

`Scheduler` (one per process: `scheduler()`):
- interactive calls (a Compare, a what-if, a label suggestion) queue per adapter. When the
  model is free, what is waiting for one adapter is scored in one `predict_with_answers`
  call (micro-batching: concurrent Compares share a forward where the predictor batches),
  taken round-robin by owner (a browser session) up to `max_batch` statements (1 for a
  predictor that scores one statement per forward: see `batch_limit`), so one session's
  burst cannot starve the others; one round serves every adapter that has work waiting, so
  both halves of a Compare are scored before any background chunk.
- answers are cached per adapter and statement (LRU; scores are deterministic), so an
  example that many visitors click is scored once.
- background work (batch evaluations, ranking a label queue) comes in chunks sized to take
  about `chunk_seconds`, run between interactive rounds; while interactive calls wait,
  background gets `background_share` of the model's time, so a Compare waits for one chunk
  at most and a batch still moves under heavy interactive load.
- every answer carries its timing: waited for the model, the forward's time, its size.

The tabs reach it through `noshow.inference.serving.AdapterService`.

    from noshow.inference.scheduler import scheduler
    [scored] = scheduler().run(predictor, ["A 34-year-old woman ..."], owner="session-1")
    scored.p, scored.answer, scored.queue_ms, scored.run_ms, scored.batch_size
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

MAX_BATCH = 16  # statements per interactive forward: ~20 waiting Compares share 2 rounds
CHUNK_SECONDS = 0.25  # a background chunk's target length: what a Compare may wait behind
MAX_CHUNK = 64
BACKGROUND_SHARE = 0.25  # of the model's time for background work while Compares wait
MAX_PENDING_PER_OWNER = 8  # interactive calls one session may have waiting at once
INTERACTIVE_TIMEOUT_S = 120.0
CACHE_PER_ADAPTER = 2048
HALF_LIFE_S = 10.0  # how fast the scheduler forgets who used the model


class BusyError(ValueError):
    """The server cannot take this call now; the message says why and what to do."""


class Cancelled(Exception):
    """Background work stopped because its job was cancelled (e.g. the browser closed)."""


@dataclass(frozen=True)
class Scored:
    """One statement's answer from one adapter, with how it was served."""

    p: float
    answer: str | None = None
    cached: bool = False
    queue_ms: float = 0.0
    """Time between the call and the start of the forward that scored it."""
    run_ms: float = 0.0
    """Time of that forward (all statements in it)."""
    batch_size: int = 1
    """Statements scored in that forward (1 = alone)."""


class _Request:
    __slots__ = ("predictor", "statements", "owner", "background", "should_stop", "future", "t0")

    def __init__(self, predictor, statements, owner, background, should_stop) -> None:
        self.predictor = predictor
        self.statements = statements
        self.owner = owner
        self.background = background
        self.should_stop = should_stop
        self.future: Future = Future()
        self.t0 = time.perf_counter()


def _predict(predictor: Any, statements: list[str], with_answers: bool) -> list[tuple]:
    """(p, answer) per statement in as few calls as the predictor allows."""
    if with_answers and hasattr(predictor, "predict_with_answers"):
        return [(float(p), a) for p, a in predictor.predict_with_answers(statements)]
    if with_answers and hasattr(predictor, "predict_with_answer"):
        return [(float(p), a) for p, a in map(predictor.predict_with_answer, statements)]
    return [(float(p), None) for p in predictor.predict_proba(statements)]


class Scheduler:
    """Orders all model calls of the app on one dispatcher thread (see the module doc)."""

    def __init__(
        self,
        max_batch: int = MAX_BATCH,
        chunk_seconds: float = CHUNK_SECONDS,
        background_share: float = BACKGROUND_SHARE,
        cache_size: int = CACHE_PER_ADAPTER,
        max_pending_per_owner: int = MAX_PENDING_PER_OWNER,
    ) -> None:
        self.max_batch = max_batch
        self.chunk_seconds = chunk_seconds
        self.background_share = background_share
        self.cache_size = cache_size
        self.max_pending_per_owner = max_pending_per_owner
        self._cond = threading.Condition()
        self._interactive: deque[_Request] = deque()
        self._background: deque[_Request] = deque()
        self._thread: threading.Thread | None = None
        self._used = {"interactive": 0.0, "background": 0.0}
        self._used_at = time.perf_counter()
        self._last_background_owner: str | None = None
        # id(predictor) -> (weak reference, LRU of statement -> (p, answer)); the weak
        # reference tells a reused id apart from the predictor it was stored for
        self._caches: dict[int, tuple[weakref.ref, OrderedDict]] = {}
        self._seconds_per_statement: dict[int, float] = {}
        self.forwards: deque[tuple[str, int, float]] = deque(maxlen=1000)
        """(kind, statements, seconds) of recent forwards, for benchmarks and tests."""

    # -- calls ---------------------------------------------------------------------------

    def submit(
        self,
        predictor: Any,
        statements: Sequence[str],
        owner: str = "",
        *,
        background: bool = False,
        should_stop: Callable[[], bool] | None = None,
    ) -> Future:
        """A Future of [Scored] for `statements` (same order). Interactive calls are answered
        from the cache where they can; raises BusyError when `owner` has too many waiting."""
        statements = [str(s) for s in statements]
        if background:
            request = _Request(predictor, statements, owner, True, should_stop)
            self._enqueue(request)
            return request.future
        hits = self._cache_get(predictor, statements)
        missing = [s for s in dict.fromkeys(statements) if s not in hits]
        outer: Future = Future()
        if not missing:
            outer.set_result([Scored(*hits[s], cached=True) for s in statements])
            return outer
        request = _Request(predictor, missing, owner, False, should_stop)
        self._enqueue(request)

        def finish(inner: Future) -> None:
            if inner.cancelled() or inner.exception() is not None:
                outer.set_exception(inner.exception() or Cancelled("cancelled"))
                return
            got = dict(zip(missing, inner.result(), strict=True))
            outer.set_result(
                [got[s] if s in got else Scored(*hits[s], cached=True) for s in statements]
            )

        request.future.add_done_callback(finish)
        return outer

    def run(
        self,
        predictor: Any,
        statements: Sequence[str],
        owner: str = "",
        timeout: float = INTERACTIVE_TIMEOUT_S,
    ) -> list[Scored]:
        """`submit` an interactive call and wait for it; BusyError after `timeout` s."""
        future = self.submit(predictor, statements, owner)
        try:
            return future.result(timeout)
        except FutureTimeout:
            raise BusyError(
                f"No answer within {timeout:.0f} s: the server is very busy. Try again in a minute."
            ) from None

    def score_background(
        self,
        predictor: Any,
        statements: Sequence[str],
        owner: str = "",
        *,
        on_chunk: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[float]:
        """P(no-show) for many statements as background work, in chunks of about
        `chunk_seconds` (the first is one statement, so progress shows from the first row);
        `on_chunk(done, total)` after each. Raises Cancelled once `should_stop()` is true."""
        statements = [str(s) for s in statements]
        out: list[float] = []
        while len(out) < len(statements):
            if should_stop is not None and should_stop():
                raise Cancelled("stopped")
            chunk = statements[len(out) : len(out) + self.chunk_size(predictor)]
            future = self.submit(predictor, chunk, owner, background=True, should_stop=should_stop)
            out.extend(s.p for s in future.result())
            if on_chunk is not None:
                on_chunk(len(out), len(statements))
        return out

    def chunk_size(self, predictor: Any) -> int:
        """Statements per background chunk: about `chunk_seconds` of this adapter's time
        as measured so far; 1 before the first measurement."""
        per = self._seconds_per_statement.get(id(predictor))
        if not per:
            return 1
        return max(1, min(MAX_CHUNK, int(self.chunk_seconds / per)))

    def seconds_per_statement(self, predictor: Any) -> float | None:
        """This adapter's measured model time per statement (moving average), or None."""
        return self._seconds_per_statement.get(id(predictor))

    def pending(self) -> dict[str, int]:
        with self._cond:
            return {"interactive": len(self._interactive), "background": len(self._background)}

    # -- dispatcher ------------------------------------------------------------------------

    def _enqueue(self, request: _Request) -> None:
        with self._cond:
            if not request.background:
                waiting = sum(r.owner == request.owner for r in self._interactive)
                if request.owner and waiting >= self.max_pending_per_owner:
                    raise BusyError(
                        f"This session already has {waiting} Compares waiting: wait for their "
                        "answers before sending more."
                    )
                self._interactive.append(request)
            else:
                self._background.append(request)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="noshow-scheduler", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._interactive and not self._background:
                    self._cond.wait()
                if self._interactive and not (self._background and self._background_turn()):
                    work = self._take_interactive_round()
                else:
                    work = [self._take_background()]
            for predictor, requests in work:
                try:
                    self._run(predictor, requests)
                except BaseException as e:  # noqa: BLE001 - the dispatcher must not die
                    log.exception("scheduler: a forward failed")
                    for r in requests:
                        if not r.future.done():
                            r.future.set_exception(e)

    def _decay(self) -> None:
        now = time.perf_counter()
        factor = 0.5 ** ((now - self._used_at) / HALF_LIFE_S)
        for key in self._used:
            self._used[key] *= factor
        self._used_at = now

    def _background_turn(self) -> bool:
        """Whether background work goes next while interactive work waits too."""
        self._decay()
        total = self._used["interactive"] + self._used["background"]
        return total <= 0 or self._used["background"] < self.background_share * total

    def _take_interactive_round(self) -> list[tuple[Any, list[_Request]]]:
        """One batch per adapter with work waiting (oldest first); within an adapter, owners
        take turns, one call each, until `max_batch` statements."""
        by_adapter: OrderedDict[int, list[_Request]] = OrderedDict()
        for r in self._interactive:
            by_adapter.setdefault(id(r.predictor), []).append(r)
        work = []
        for requests in by_adapter.values():
            limit = self.batch_limit(requests[0].predictor)
            owners: OrderedDict[str, deque[_Request]] = OrderedDict()
            for r in requests:
                owners.setdefault(r.owner, deque()).append(r)
            taken: list[_Request] = []
            size = 0
            while owners and (not taken or size < limit):
                for owner in list(owners):
                    r = owners[owner].popleft()
                    if not owners[owner]:
                        del owners[owner]
                    if taken and size + len(r.statements) > limit:
                        owners.clear()
                        break
                    taken.append(r)
                    size += len(r.statements)
            for r in taken:
                self._interactive.remove(r)
            work.append((taken[0].predictor, taken))
        return work

    def batch_limit(self, predictor: Any) -> int:
        """Statements one interactive call to `predictor` may carry: `max_batch` where a list
        shares a forward; 1 for a predictor that scores one statement per forward
        (`single_rows`: a CPU form whose bf16 products would round a statement differently
        in a batch), where sharing a call saves nothing and makes the Compares that ride
        along wait for all the others (a longer tail)."""
        return 1 if getattr(predictor, "single_rows", False) else self.max_batch

    def _take_background(self) -> tuple[Any, list[_Request]]:
        """The next chunk, owners taking turns."""
        pick = next(
            (r for r in self._background if r.owner != self._last_background_owner),
            self._background[0],
        )
        self._background.remove(pick)
        self._last_background_owner = pick.owner
        return pick.predictor, [pick]

    def _run(self, predictor: Any, requests: list[_Request]) -> None:
        live = []
        for r in requests:
            if r.should_stop is not None and r.should_stop():
                r.future.set_exception(Cancelled("stopped"))
            else:
                live.append(r)
        if not live:
            return
        background = live[0].background
        unique = list(dict.fromkeys(s for r in live for s in r.statements))
        start = time.perf_counter()
        try:
            results = _predict(predictor, unique, with_answers=not background)
        except Exception as e:  # noqa: BLE001 - each caller gets the error
            for r in live:
                r.future.set_exception(e)
            return
        seconds = time.perf_counter() - start
        kind = "background" if background else "interactive"
        with self._cond:
            self._decay()
            self._used[kind] += seconds
            per = seconds / len(unique)
            old = self._seconds_per_statement.get(id(predictor))
            self._seconds_per_statement[id(predictor)] = (
                per if old is None else 0.7 * old + 0.3 * per
            )
        self.forwards.append((kind, len(unique), seconds))
        by_text = dict(zip(unique, results, strict=True))
        if not background:
            self._cache_put(predictor, by_text)
        for r in live:
            wait_ms = (start - r.t0) * 1000
            r.future.set_result(
                [
                    Scored(*by_text[s], False, wait_ms, seconds * 1000, len(unique))
                    for s in r.statements
                ]
            )

    # -- cache -----------------------------------------------------------------------------

    def _cache_of(self, predictor: Any, create: bool) -> OrderedDict | None:
        entry = self._caches.get(id(predictor))
        if entry is not None and entry[0]() is predictor:
            return entry[1]
        if not create:
            return None
        try:
            ref = weakref.ref(predictor)
        except TypeError:  # an object without weak references is not cached
            return None
        cache: OrderedDict = OrderedDict()
        self._caches[id(predictor)] = (ref, cache)
        return cache

    def _cache_get(self, predictor: Any, statements: Iterable[str]) -> dict[str, tuple]:
        with self._cond:
            cache = self._cache_of(predictor, create=False)
            if not cache:
                return {}
            hits = {}
            for s in statements:
                if s in cache:
                    cache.move_to_end(s)
                    hits[s] = cache[s]
            return hits

    def _cache_put(self, predictor: Any, answers: dict[str, tuple]) -> None:
        with self._cond:
            cache = self._cache_of(predictor, create=True)
            if cache is None:
                return
            cache.update(answers)
            while len(cache) > self.cache_size:
                cache.popitem(last=False)

    def clear_cache(self) -> None:
        with self._cond:
            self._caches.clear()


_SCHEDULER: Scheduler | None = None
_SCHEDULER_LOCK = threading.Lock()


def scheduler() -> Scheduler:
    """The process's scheduler (one, like the CPU inference thread it feeds)."""
    global _SCHEDULER
    with _SCHEDULER_LOCK:
        if _SCHEDULER is None:
            _SCHEDULER = Scheduler()
        return _SCHEDULER
