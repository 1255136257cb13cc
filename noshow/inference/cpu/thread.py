"""One long-lived thread for CPU inference.

torch's CPU kernels run on an OpenMP team that belongs to the calling thread. Gradio calls
each event handler on whichever worker thread is free, so every new thread that scores a
statement brings its own team; once there are more team threads than cores, GNU OpenMP
stops spinning and puts its threads to sleep between kernels, and every small op pays for a
wake-up. Measured on the 2-core VM: one Compare called from a pool of threads took 270 ms
p50 against 135 ms from one thread (elementwise ops 4-8x slower). Running all CPU model
work (loading and scoring) on this one thread keeps a single team.

    from noshow.inference.cpu.thread import run_on_cpu_thread
    p = run_on_cpu_thread(predictor_fn, statements)   # inline when already on that thread
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

THREAD_NAME = "noshow-cpu-inference"
_executor: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def on_cpu_thread() -> bool:
    return threading.current_thread().name.startswith(THREAD_NAME)


def run_on_cpu_thread(fn: Callable[..., T], *args, **kwargs) -> T:
    """fn(*args, **kwargs) on the CPU inference thread, waiting for its result (exceptions
    are raised here); inline when called from that thread (no deadlock on nested calls)."""
    global _executor
    if on_cpu_thread():
        return fn(*args, **kwargs)
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=THREAD_NAME)
        executor = _executor
    return executor.submit(fn, *args, **kwargs).result()
