"""Results fitted once per key in a background thread, so no caller waits longer than its
timeout (the fit carries on, and a later call gets the result): the Compare tab's tabular
baselines (`noshow.app.compare_baseline.BaselineCache`) and stacked models
(`noshow.app.compare_stacked.StackedCache`). The newest `max_entries` results are kept.

Nothing here imports Gradio:

    fits = BackgroundFits("noshow-baseline", busy=lambda: "still fitting", failed=str)
    fits.get(key, lambda: slow_fit(frame), timeout=3.0)   # the result, or busy() after 3 s
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class BackgroundFits(Generic[T]):
    """One fit per key, each in its own daemon thread; a failure becomes `failed(error)`."""

    def __init__(
        self,
        name: str,
        busy: Callable[[], T],
        failed: Callable[[Exception], T],
        max_entries: int = 4,
    ) -> None:
        self.name = name
        self.busy = busy  # what a caller gets when the fit outlasts its timeout
        self.failed = failed
        self.max_entries = max_entries
        self._items: dict[Hashable, T] = {}
        self._pending: dict[Hashable, threading.Event] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, fit: Callable[[], T], timeout: float | None = None) -> T:
        """The result for `key`, starting `fit()` on first use; waits at most `timeout`
        seconds (None = until fitted), else returns `busy()`."""
        with self._lock:
            if key in self._items:
                return self._items[key]
            done = self._pending.get(key)
            if done is None:
                done = self._pending[key] = threading.Event()
                threading.Thread(
                    target=self._run, args=(key, fit, done), name=self.name, daemon=True
                ).start()
        if not done.wait(timeout):
            return self.busy()
        with self._lock:
            if key in self._items:
                return self._items[key]
        return self.failed(LookupError("the fit was lost (evicted before it was read)"))

    def _run(self, key: Hashable, fit: Callable[[], T], done: threading.Event) -> None:
        try:
            result = fit()
        except Exception as e:  # noqa: BLE001 - the caller's card says why
            result = self.failed(e)
        with self._lock:
            self._items[key] = result
            while len(self._items) > self.max_entries:
                self._items.pop(next(iter(self._items)))
            self._pending.pop(key, None)
        done.set()
