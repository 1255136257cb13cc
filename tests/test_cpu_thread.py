"""noshow.inference.cpu.thread: CPU model work runs on one long-lived thread, whoever asks."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from noshow.inference.cpu.thread import THREAD_NAME, on_cpu_thread, run_on_cpu_thread


def test_calls_from_many_threads_run_on_one_thread():
    names = set()

    def where():
        names.add(threading.current_thread().name)
        return threading.get_ident()

    with ThreadPoolExecutor(8) as pool:
        idents = set(pool.map(lambda _: run_on_cpu_thread(where), range(32)))
    assert len(idents) == 1 and all(n.startswith(THREAD_NAME) for n in names)
    assert not on_cpu_thread()


def test_nested_calls_run_inline_and_errors_reach_the_caller():
    def outer():
        assert on_cpu_thread()
        return run_on_cpu_thread(lambda: threading.get_ident()) == threading.get_ident()

    assert run_on_cpu_thread(outer) is True
    with pytest.raises(ValueError, match="bad statement"):
        run_on_cpu_thread(lambda: (_ for _ in ()).throw(ValueError("bad statement")))


def test_a_cpu_predictor_loads_and_scores_on_that_thread(adapters, monkeypatch):
    import noshow.inference.predict as predict

    seen = []
    real = predict.AdapterPredictor._score

    def spy(self, *args, **kwargs):
        seen.append(on_cpu_thread())
        return real(self, *args, **kwargs)

    monkeypatch.setattr(predict.AdapterPredictor, "_score", spy)
    predictor = predict.load_predictor(adapters.classifier, device="cpu")
    with ThreadPoolExecutor(4) as pool:
        scores = list(pool.map(lambda s: predictor.predict_proba([s])[0], ["a", "b", "c", "a"]))
    assert seen and all(seen)
    assert scores[0] == scores[3]
