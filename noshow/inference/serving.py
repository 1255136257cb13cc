"""What the tabs use to reach the adapters: `AdapterService` lists the adapters (shipped and
finished runs), loads them (only listed ones in a public demo) and scores through the
process's scheduler (`noshow.inference.scheduler`); `BackgroundJobs` runs batch evaluations
in their own threads, with progress, ETA and a cancel flag checked between chunks, at most
`per_owner` running per owner (browser session). `UIContext.adapters` holds one service.

    from noshow.inference.serving import AdapterService
    service = AdapterService(runs_dir="runs", shipped_dir="adapters")
    predictor = service.load("adapters/classifier-smollm2-135m", "classifier")
    [scored] = service.score(predictor, ["A 34-year-old woman ..."], owner="session-1")
    scored.p, scored.answer, scored.queue_ms, scored.run_ms, scored.batch_size
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from noshow.config import APPROACHES
from noshow.inference.scheduler import BusyError, Cancelled, Scheduler, Scored, scheduler

# ----------------------------------------------------------------------------- background jobs


class BackgroundJob:
    """One batch evaluation (or other long work) running in its own thread."""

    def __init__(self, owner: str, title: str) -> None:
        self.owner = owner
        self.title = title
        self.state = "running"  # running -> done | failed | cancelled
        self.started = time.time()
        self.finished: float | None = None
        self.phase = "Starting"
        self.done = 0
        self.total = 0
        self.eta_s: float | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self._cancel = threading.Event()
        self._ended = threading.Event()

    def cancel(self) -> None:
        """Ask the job to stop at its next chunk."""
        self._cancel.set()

    def should_stop(self) -> bool:
        return self._cancel.is_set()

    def report(self, done: int, total: int, phase: str, eta_s: float | None = None) -> None:
        self.done, self.total, self.phase, self.eta_s = done, total, phase, eta_s

    def wait(self, timeout: float | None = None) -> bool:
        """True once the job has ended (any state)."""
        return self._ended.wait(timeout)

    @property
    def running(self) -> bool:
        return not self._ended.is_set()

    def snapshot(self) -> dict[str, Any]:
        end = self.finished or time.time()
        return {
            "title": self.title,
            "state": self.state,
            "phase": self.phase,
            "done": self.done,
            "total": self.total,
            "elapsed_s": end - self.started,
            "eta_s": self.eta_s,
        }


class BackgroundJobs:
    """Starts background jobs, at most `per_owner` running per owner."""

    def __init__(self, per_owner: int = 1) -> None:
        self.per_owner = per_owner
        self._jobs: list[BackgroundJob] = []
        self._lock = threading.Lock()

    def running(self, owner: str | None = None) -> list[BackgroundJob]:
        with self._lock:
            return [j for j in self._jobs if j.running and owner in (None, j.owner)]

    def start(
        self,
        owner: str,
        title: str,
        target: Callable[[BackgroundJob], Any],
        stopping_grace_s: float = 5.0,
    ) -> BackgroundJob:
        """Run `target(job)` in a thread; its return value becomes `job.result`. Raises
        BusyError when `owner` already runs `per_owner` jobs (a cancelled one that is still
        stopping gets `stopping_grace_s` to end first)."""
        for job in self.running(owner):
            if job.should_stop():
                job.wait(stopping_grace_s)
        with self._lock:
            self._jobs = [j for j in self._jobs if j.running]
            mine = [j for j in self._jobs if j.owner == owner]
            if len(mine) >= self.per_owner:
                raise BusyError(
                    f"You already have a {mine[0].title} running ({mine[0].done:,} of "
                    f"{mine[0].total:,} rows scored): wait for it, or press Stop first."
                )
            job = BackgroundJob(owner, title)
            self._jobs.append(job)

        def work() -> None:
            try:
                job.result = target(job)
                job.state = "cancelled" if job.should_stop() else "done"
            except Cancelled:
                job.state = "cancelled"
            except BaseException as e:  # noqa: BLE001 - reported through the job
                job.error, job.state = e, "failed"
            finally:
                job.finished = time.time()
                job._ended.set()

        threading.Thread(target=work, name=f"noshow-job-{title}", daemon=True).start()
        return job


# ----------------------------------------------------------------------------- adapters


def _default_loader(path: str, expected_approach: str) -> Any:
    from noshow.inference.predict import get_predictor

    return get_predictor(path, expected_approach=expected_approach)


class ScheduledPredictor:
    """A predictor whose calls go through the scheduler: as background work (chunked, for
    bulk scoring such as ranking a label queue) or as interactive calls."""

    def __init__(self, predictor: Any, sched: Scheduler, owner: str, background: bool) -> None:
        self.predictor = predictor
        self._scheduler = sched
        self._owner = owner
        self._background = background

    def __getattr__(self, name: str) -> Any:  # threshold, name, approach, weights, ...
        return getattr(self.predictor, name)

    def predict_proba(self, statements: Sequence[str]) -> list[float]:
        if isinstance(statements, str):
            statements = [statements]
        if self._background:
            return self._scheduler.score_background(self.predictor, statements, self._owner)
        return [s.p for s in self._scheduler.run(self.predictor, statements, self._owner)]

    def predict_with_answer(self, statement: str) -> tuple[float, str | None]:
        [scored] = self._scheduler.run(self.predictor, [statement], self._owner)
        return scored.p, scored.answer


class AdapterService:
    """The adapters the app offers, loaded once and scored through the scheduler.

    `listed_only` (a public demo) refuses any folder that is not listed, so visitors cannot
    probe the server's file system through the adapter box. `loader(path,
    expected_approach)` replaces `noshow.inference.predict.get_predictor` (tests pass fakes).
    """

    def __init__(
        self,
        runs_dir: str | Path | None = None,
        shipped_dir: str | Path | None = None,
        *,
        listed_only: bool = False,
        loader: Callable[..., Any] | None = None,
        sched: Scheduler | None = None,
        jobs: BackgroundJobs | None = None,
    ) -> None:
        self.runs_dir = Path(runs_dir) if runs_dir is not None else None
        self.shipped_dir = Path(shipped_dir) if shipped_dir is not None else None
        self.listed_only = listed_only
        self._loader = loader or _default_loader
        self.scheduler = sched or scheduler()
        self.jobs = jobs or BackgroundJobs()

    # -- listing ---------------------------------------------------------------------------

    def listed(self) -> list[dict]:
        """Finished adapters (shipped first, newest runs next); [] when none can be read."""
        from noshow.inference.predict import list_adapters

        if self.runs_dir is None and self.shipped_dir is None:
            return []
        try:
            return list_adapters(
                self.runs_dir or "/nonexistent-runs", self.shipped_dir or "/nonexistent"
            )
        except Exception:  # noqa: BLE001 - an unreadable folder lists nothing
            return []

    def choices(self) -> dict[str, list[tuple[str, str]]]:
        """Dropdown choices per approach: (label, path)."""
        out: dict[str, list[tuple[str, str]]] = {a: [] for a in APPROACHES}
        for item in self.listed():
            threshold = item.get("threshold")
            extra = f", threshold {float(threshold):.2f}" if threshold is not None else ""
            label = f"{item['name']} ({item['source']}{extra})"
            out.setdefault(item["approach"], []).append((label, str(item["path"])))
        return out

    def default(self, approach: str) -> str | None:
        """The first listed adapter of `approach` (what a new page starts with)."""
        items = self.choices().get(approach) or []
        return items[0][1] if items else None

    # -- loading ---------------------------------------------------------------------------

    def load(self, path: str, approach: str) -> Any:
        """The predictor for `path` (loaded once per process); PredictError says why not."""
        from noshow.inference.predict import PredictError

        path = str(path).strip()
        if self.listed_only and path not in {str(i["path"]) for i in self.listed()}:
            raise PredictError(
                "In the public demo only the listed adapters can be used: pick one from the list."
            )
        return self._loader(path, expected_approach=approach)

    def loader(self, path: str, expected_approach: str) -> Any:
        """`load` with `noshow.inference.predict.get_predictor`'s argument names."""
        return self.load(path, expected_approach)

    def wrap(self, predictor: Any, *, background: bool = False, owner: str = "") -> Any:
        """`predictor` with its calls going through the scheduler (as background work, in
        chunks, when `background`: bulk scoring such as ranking a label queue)."""
        return ScheduledPredictor(_unwrap(predictor), self.scheduler, owner, background)

    # -- scoring ---------------------------------------------------------------------------

    def submit(self, predictor: Any, statements: Sequence[str], owner: str = "") -> Future:
        """An interactive call without waiting (several adapters can be queued at once)."""
        return self.scheduler.submit(_unwrap(predictor), statements, owner)

    def score(self, predictor: Any, statements: Sequence[str], owner: str = "") -> list[Scored]:
        """An interactive call: [Scored] per statement."""
        return self.scheduler.run(_unwrap(predictor), statements, owner)


def _unwrap(predictor: Any) -> Any:
    return predictor.predictor if isinstance(predictor, ScheduledPredictor) else predictor
