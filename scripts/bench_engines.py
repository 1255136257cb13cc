"""CPU engines side by side for both shipped adapters (LoRA merged): the project's hand-written
forward (fp32, bf16 where the CPU has it), ONNX Runtime fp32 and int8 (static QDQ with
calibration statements, and dynamic), OpenVINO fp32, torch's dynamic int8 and llama.cpp
(generative; GGUF F32 and Q8_0 by llama.cpp's converter). Each engine's artefact is built by
its library's tools (`torch.onnx.export(dynamo=True)`, onnxruntime's quantizer, OpenVINO's
reader, llama.cpp's converter) and cached under `<cache>/engines/`.

Per engine and adapter: drift against fp32 on `--rows` time-split test rows (largest |dP| of
the calibrated P the app shows, ROC-AUC and its change), then the time per statement alone
and in batches of 16 through `predict_proba` (tokenizing and the head included), measured in
`--rounds` fresh processes (scripts/engine_timing.py) in which the engines take turns, the
order reversed every call; the figure is the median over all rounds. llama.cpp is timed in
this process, one full prompt per call. The load average before and after is printed: on a
busy machine the figures are noisy, the ratios less so.

    python scripts/bench_engines.py                          # 2,000 rows, 3 rounds
    python scripts/bench_engines.py --rows 300 --rounds 2    # quicker
    python scripts/bench_engines.py --engines fused-fp32,onnxruntime-fp32 --approaches classifier
    python scripts/bench_engines.py --write-table   # also record this CPU kind's rows in
                                                    # noshow/inference/cpu/engine_table.json
    python scripts/bench_engines.py --append        # also append the table to BENCHMARKS.md

Engines that cannot be installed or built get a row saying why.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench_common import (  # noqa: E402
    BENCHMARKS_FILE,
    append_benchmarks,
    command_line,
    default_data_source,
    format_table,
    format_value,
    load_bench_data,
    say,
)
from engine_timing import drift, median  # noqa: E402

APPROACHES = ("generative", "classifier")
SHIPPED = {a: REPO / "adapters" / f"{a}-smollm2-135m" for a in APPROACHES}
CALIBRATION_ROWS = 64
COLUMNS = (
    "adapter",
    "engine",
    "p50 ms (1)",
    "p95 ms (1)",
    "ms/statement (16)",
    "x fp32 (1)",
    "max |dP|",
    "ROC-AUC",
    "dAUC",
    "within bound",
    "note",
)


def default_engines() -> list[str]:
    from noshow.inference.cpu.engines import ENGINES

    return [*ENGINES, "llama.cpp-f32", "llama.cpp-q8_0"]


def load_rows(source: str, rows: int, seed: int):
    """(test statements, labels, validation statements for calibration), seeded."""
    import numpy as np

    from noshow.data.splits import split_data

    frame = split_data(load_bench_data(source).frame, "time", seed=seed)
    rng = np.random.default_rng(seed)
    test = frame[frame["split"] == "test"]
    test = test.iloc[rng.permutation(len(test))[:rows]]
    val = frame[frame["split"] == "validation"]
    val = val.iloc[rng.permutation(len(val))[:CALIBRATION_ROWS]]
    return (
        test["statement"].astype(str).tolist(),
        test["no_show"].astype(int).to_numpy(),
        val["statement"].astype(str).tolist(),
    )


def tails(predictor, statements: list[str]):
    """Token ids after the cached prefix (what a graph engine runs), for calibration."""
    import numpy as np
    import torch

    enc = predictor.bound.encode(
        statements, np.zeros(len(statements)), np.arange(len(statements)), train=False
    )
    cut = len(predictor.bound.prefix_ids)
    return [torch.tensor(ids[cut:]) for ids in enc.input_ids]


def drift_rows(adapter: Path, approach: str, engines, statements, labels, calibration):
    """{engine: drift dict or {"error": ...}} against the hand-written fp32 path."""
    from engine_timing import install, use

    from noshow.inference.cpu.engines import why_unavailable
    from noshow.inference.cpu.thread import run_on_cpu_thread
    from noshow.inference.predict import load_predictor

    def work():
        predictor = load_predictor(adapter, device="cpu", cpu_weights="fused-fp32")
        reference = predictor.predict_proba(statements)
        calib = tails(predictor, calibration)
        out: dict[str, Any] = {}
        for name in engines:
            if name.startswith("llama.cpp"):
                out[name] = llama_drift(predictor, approach, name, statements, labels, reference)
                continue
            why = why_unavailable(name)  # bf16 on a CPU without it: emulated, many times slower
            if why:
                out[name] = {"error": f"not run: {why}"}
                continue
            say(f"{adapter.name}: {name}: building (cached after the first time) and scoring ...")
            try:
                start = time.perf_counter()
                state, installed = install(predictor, name, calib)
                build_s = time.perf_counter() - start
                use(predictor, state, installed)
                p = predictor.predict_proba(statements)
                out[name] = drift(reference, p, labels) | {"build_s": build_s}
            except Exception as e:  # noqa: BLE001 - the engine's row says why
                out[name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:150]}"}
            say(f"{adapter.name}: {name}: {out[name]}")
        return out

    return run_on_cpu_thread(work)


def llama_drift(predictor, approach, name, statements, labels, reference) -> dict[str, Any]:
    import engine_llamacpp as lc

    from noshow.inference.cpu.engines import engine_folder

    if approach != "generative":
        return {"error": "not run: llama.cpp serves the causal LM; the head needs hidden states"}
    why = lc.why_unavailable()
    if why:
        return {"error": why}
    try:
        import torch

        gguf = lc.build_gguf(predictor, engine_folder(predictor.adapter_dir), name.split("-")[-1])
        scorer = lc.LlamaCppScorer(
            gguf, predictor.bound.layout, predictor.tokenizer, torch.get_num_threads()
        )
        raw = [scorer.p(s) for s in statements]
        p = predictor._calibrate(raw).tolist()  # the app's P: through calibration.json
        return drift(reference, p, labels) | {"scorer": scorer}
    except Exception as e:  # noqa: BLE001
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:150]}"}


def time_rounds(adapter: Path, engines: list[str], statements, args) -> dict[str, Any]:
    """Worker processes, `args.rounds` of them, the engine order rotated each round."""
    timings: dict[str, dict[str, list[float]]] = {}
    errors: dict[str, str] = {}
    loads = []
    with tempfile.TemporaryDirectory(prefix="noshow-engines-") as tmp:
        texts = Path(tmp) / "statements.json"
        texts.write_text(json.dumps(statements))
        for r in range(args.rounds):
            order = engines[r % len(engines) :] + engines[: r % len(engines)]
            out = Path(tmp) / f"round-{r}.json"
            command = [
                sys.executable,
                str(REPO / "scripts" / "engine_timing.py"),
                str(adapter),
                "--engines",
                ",".join(order),
                "--statements",
                str(texts),
                "--repeats",
                str(args.repeats),
                "--out",
                str(out),
            ]
            if args.threads:
                command += ["--threads", str(args.threads)]
            say(f"{adapter.name}: timing round {r + 1}/{args.rounds} in a fresh process ...")
            subprocess.run(command, check=True)
            result = json.loads(out.read_text())
            loads.append(result["load"])
            errors.update(result["errors"])
            for name, t in result["timings"].items():
                slot = timings.setdefault(name, {"single_ms": [], "batch_ms": []})
                slot["single_ms"] += t["single_ms"]
                slot["batch_ms"] += t["batch_ms"]
    return {"timings": timings, "errors": errors, "loads": loads}


def percentile(values: list[float], q: float) -> float | None:
    import numpy as np

    return float(np.percentile(values, q * 100)) if values else None


def build_rows(adapter: str, drifts, timed, llama_times) -> list[dict[str, Any]]:
    from noshow.inference.cpu.choice import MAX_AUC_DRIFT, MAX_DP

    rows = []
    timings = timed["timings"]
    base = median(timings.get("fused-fp32", {}).get("single_ms", []))
    for name, d in drifts.items():
        t = timings.get(name) or {}
        single = t.get("single_ms") or llama_times.get(name) or []
        error = d.get("error") or timed["errors"].get(name)
        p50 = median(single)
        rows.append(
            {
                "adapter": adapter,
                "engine": name,
                "p50_ms": p50,
                "p95_ms": percentile(single, 0.95),
                "batch16_ms": median(t.get("batch_ms") or []),
                "x_fp32": p50 / base if p50 and base else None,
                "max_dp": d.get("max_dp"),
                "auc": d.get("auc"),
                "auc_drift": d.get("auc_drift"),
                "within": None
                if error
                else d["max_dp"] <= MAX_DP and abs(d["auc_drift"]) <= MAX_AUC_DRIFT,
                "note": error or "",
            }
        )
    return rows


def table(rows) -> str:
    def yes(v):
        return "-" if v is None else ("yes" if v else "**no**")

    return format_table(
        COLUMNS,
        [
            [
                r["adapter"],
                r["engine"],
                format_value(r["p50_ms"], 1),
                format_value(r["p95_ms"], 1),
                format_value(r["batch16_ms"], 1),
                format_value(r["x_fp32"], 2),
                format_value(r["max_dp"], 4),
                format_value(r["auc"], 4),
                format_value(r["auc_drift"], 4),
                yes(r["within"]),
                r["note"].replace("|", "/"),
            ]
            for r in rows
        ],
    )


def write_table(rows, kind: str, stamp: str, path: Path) -> None:
    """This CPU kind's rows in the shipped table (other kinds, and approaches not measured
    in this run, kept)."""
    from noshow.inference.cpu.choice import load_table

    data = load_table(path)
    fresh = {
        approach: [
            {
                "engine": r["engine"],
                "p50_ms": round(r["p50_ms"], 1),
                "batch16_ms": round(r["batch16_ms"], 1) if r["batch16_ms"] else None,
                "max_dp": round(r["max_dp"], 5),
                "auc_drift": round(r["auc_drift"], 5),
                "measured": stamp,
            }
            for r in rows
            if r["adapter"].startswith(approach)
            and r["p50_ms"]
            and r["max_dp"] is not None
            and not r["engine"].startswith("llama.cpp")
        ]
        for approach in APPROACHES
    }
    # an approach this run did not measure (or measured no engine of) keeps its old rows
    data[kind] = data.get(kind, {}) | {a: new for a, new in fresh.items() if new}
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--engines", default=None, help="comma-separated (default: all)")
    p.add_argument("--approaches", default=",".join(APPROACHES))
    p.add_argument("--rows", type=int, default=2000, help="test rows for the drift")
    p.add_argument("--rounds", type=int, default=3, help="fresh timing processes per adapter")
    p.add_argument("--repeats", type=int, default=40, help="single-statement calls per round")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--data", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--write-table", action="store_true")
    p.add_argument("--append", action="store_true", help="append the table to BENCHMARKS.md")
    return p.parse_args(argv)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    from noshow.inference.cpu.choice import TABLE, cpu_flags, cpu_kind

    if args.threads:
        torch.set_num_threads(args.threads)
    engines = args.engines.split(",") if args.engines else default_engines()
    statements, labels, calibration = load_rows(args.data or default_data_source(), args.rows, 0)
    kind = cpu_kind(cpu_flags())
    load_start = os.getloadavg()
    all_rows = []
    for approach in args.approaches.split(","):
        adapter = SHIPPED[approach]
        drifts = drift_rows(adapter, approach, engines, statements, labels, calibration)
        # timed: the engines that scored (not llama.cpp, timed in this process below)
        graph_engines = [e for e in engines if not e.startswith("llama.cpp")]
        graph_engines = [e for e in graph_engines if "error" not in drifts[e]]
        timed = time_rounds(adapter, graph_engines, statements[: args.repeats + 16 * 10], args)
        llama_times = {}
        for name, d in drifts.items():
            scorer = d.pop("scorer", None)
            if scorer is not None:
                llama_times[name] = scorer.timed(statements[: args.repeats * args.rounds])
        all_rows += build_rows(adapter.name, drifts, timed, llama_times)
        say(f"{adapter.name}: worker load averages {timed['loads']}")
    load_end = os.getloadavg()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n".join(
        [
            f"CPU kind {kind}; {torch.get_num_threads()} threads; {stamp}; load average (1, 5, "
            f"15 min) at start {', '.join(f'{v:.1f}' for v in load_start)}, at end "
            f"{', '.join(f'{v:.1f}' for v in load_end)}; drift on {len(statements):,} test "
            f"rows against the hand-written fp32 path; times: median of {args.rounds} fresh "
            f"processes x {args.repeats} calls",
            "",
            table(all_rows),
        ]
    )
    print(text)
    if args.write_table:
        write_table(all_rows, kind, f"{stamp}, {torch.get_num_threads()} threads", TABLE)
        say(f"wrote the {kind} rows of {TABLE}")
    if args.append:
        section = f"## CPU engines side by side ({stamp})\n\n- Command: `{command_line('bench_engines.py', argv)}`\n\n{text}"
        append_benchmarks(BENCHMARKS_FILE, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
