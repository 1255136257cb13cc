"""Timing and drift of CPU engines, for scripts/bench_engines.py: a worker that, in its own
process, loads one adapter once, installs every engine asked for behind the same decoder and
times them in turns (single statements and batches of 16, the order reversed every round, so
machine noise lands on all alike); and the drift of an engine's scores against fp32 (largest
|dP| and ROC-AUC on the same rows).

    python scripts/engine_timing.py ADAPTER --engines fused-fp32,onnxruntime-fp32 \
        --statements statements.json --repeats 30 --out timings.json

Helpers beside the script (scripts/ is on the path when bench_engines runs it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WARMUP = 3
BATCH = 16


def install(predictor, engine: str, calibration=()) -> tuple[Any, Any]:
    """(the decoder's installed state, the InstalledEngine) with `engine` behind it."""
    from noshow.inference.cpu.forward import FUSED_ATTR
    from noshow.inference.cpu.runtime import install_engine

    decoder = predictor.model.get_decoder()
    installed = install_engine(
        decoder,
        tuple(predictor.bound.prefix_ids),
        predictor.adapter_dir,
        predictor.approach,
        requested=engine,
        calibration=calibration,
    )
    if installed.note:  # it fell back: this engine cannot run here
        raise RuntimeError(installed.note)
    return getattr(decoder, FUSED_ATTR), installed


def use(predictor, state, installed) -> None:
    from noshow.inference.cpu.forward import install_fast_forward

    install_fast_forward(predictor.model.get_decoder(), state=state)
    predictor.single_rows = installed.single_rows


def time_engines(predictor, states: dict[str, tuple], statements: list[str], repeats: int):
    """{engine: {"single_ms": [...], "batch_ms": [...] (per statement)}}, engines in turns."""
    names = list(states)
    out = {n: {"single_ms": [], "batch_ms": []} for n in names}
    for name in names:  # warm-up: kernels, allocator, ORT's first-run plans
        use(predictor, *states[name])
        for s in statements[-WARMUP:]:
            predictor.predict_proba([s])
        predictor.predict_proba(statements[-BATCH:])
    for i in range(repeats):
        for name in names if i % 2 == 0 else reversed(names):
            use(predictor, *states[name])
            t0 = time.perf_counter()
            predictor.predict_proba([statements[i]])
            out[name]["single_ms"].append((time.perf_counter() - t0) * 1000)
            if i % 4 == 0:  # batches cost 16 statements: a quarter of the rounds
                batch = statements[BATCH * (i // 4) : BATCH * (i // 4 + 1)]
                t0 = time.perf_counter()
                predictor.predict_proba(batch)
                out[name]["batch_ms"].append((time.perf_counter() - t0) * 1000 / len(batch))
    return out


def drift(p_ref, p, labels) -> dict[str, float]:
    """Largest |dP|, the two ROC-AUCs and their difference."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    p_ref, p = np.asarray(p_ref), np.asarray(p)
    auc_ref, auc = roc_auc_score(labels, p_ref), roc_auc_score(labels, p)
    return {
        "max_dp": float(np.abs(p - p_ref).max()),
        "mean_dp": float(np.abs(p - p_ref).mean()),
        "auc": float(auc),
        "auc_ref": float(auc_ref),
        "auc_drift": float(auc - auc_ref),
    }


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def worker(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("adapter")
    p.add_argument("--engines", required=True)
    p.add_argument("--statements", required=True, help="JSON list of statements to time")
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    from noshow.inference.cpu.thread import run_on_cpu_thread
    from noshow.inference.predict import load_predictor

    if args.threads:
        torch.set_num_threads(args.threads)
    statements = json.loads(Path(args.statements).read_text())

    def work():
        predictor = load_predictor(args.adapter, device="cpu", cpu_weights="fused-fp32")
        states, errors = {}, {}
        for name in args.engines.split(","):
            try:
                states[name] = install(predictor, name)
            except Exception as e:  # noqa: BLE001 - reported in the engine's row
                errors[name] = f"{type(e).__name__}: {str(e)[:200]}"
        timings = time_engines(predictor, states, statements, args.repeats)
        return {"timings": timings, "errors": errors, "load": os.getloadavg()[0]}

    result = run_on_cpu_thread(work)  # the app's own thread: one OpenMP team
    Path(args.out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(worker())
