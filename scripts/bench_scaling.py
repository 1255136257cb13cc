"""Data-parallel scaling: the same training run in one process and in N processes (torchrun),
with each multi-process step (`--data-parallel flat`: the hand-written all_reduce of one flat
buffer; `ddp`: torch DistributedDataParallel), side by side: steady statements/s, the
speed-up over one process, and whether the results agree (final loss, test ROC-AUC).

    python scripts/bench_scaling.py --data data/KaggleV2-May-2016.csv       # 1 vs all GPUs
    python scripts/bench_scaling.py --data data.csv --procs 1 2 4 8 --steps 200
    python scripts/bench_scaling.py --data data.csv --device cpu --steps 4 --steady-from 1 \
        --model path/to/tiny-llama --max-train-rows 64 --batch-size 16   # a CPU smoke run

Each run is `scripts/train.py` with the same options (under `torchrun --standalone` for more
than one process), in its own run folder under --out; options this script does not know go
to scripts/train.py unchanged (e.g. --engine eager, --model, --lora-r). One process has no
data parallelism, so its row serves both modes. The steady rate is read from the run's
metrics.jsonl between step --steady-from (captures and compiles done; a DDP run captures from
its 12th step on) and the last step. Prints a Markdown table; add it to BENCHMARKS.md with
the command and the machine. `--device cpu` runs on gloo with CUDA hidden (2 processes by
default): a check that every row runs, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STEADY_FROM = 30
MODES = ("flat", "ddp")


def steady_statements_per_s(metrics: list[dict], batch: int, steady_from: int) -> float | None:
    """Statements/s between step `steady_from` and the last loss reading. Each record's
    `samples_per_s` averages since the loop started, so its time since then is
    step * batch / samples_per_s."""
    points = [m for m in metrics if "loss" in m and m.get("samples_per_s")]
    start = next((m for m in points if m["step"] >= steady_from), None)
    if start is None or points[-1]["step"] <= start["step"]:
        return None
    end = points[-1]
    t0 = start["step"] * batch / start["samples_per_s"]
    t1 = end["step"] * batch / end["samples_per_s"]
    return (end["step"] - start["step"]) * batch / max(t1 - t0, 1e-12)


def train_command(args, procs: int, mode: str | None, folder: Path, extra: list[str]) -> list[str]:
    options = [
        "--approach", args.approach, "--data", args.data, "--max-steps", str(args.steps),
        "--batch-size", str(args.batch_size), "--max-eval-rows", str(args.eval_rows),
        "--run-dir", str(folder), "--progress-json", "--yes", *extra,  # --yes: a timing
    ]  # fmt: skip
    if mode is not None:
        options += ["--data-parallel", mode]
    script = str(REPO / "scripts" / "train.py")
    if procs == 1:
        return [sys.executable, script, *options]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={procs}", script, *options]  # fmt: skip


def run(args, procs: int, mode: str | None, out: Path, extra: list[str]) -> dict:
    """One run of scripts/train.py; its row of the table (or its error)."""
    folder = out / (f"procs-{procs}" if mode is None else f"procs-{procs}-{mode}")
    row = {"procs": procs, "mode": mode or "-"}
    if folder.exists():
        shutil.rmtree(folder)  # this script's own run of an earlier call: train afresh
    env = {**os.environ, "NCCL_NVLS_ENABLE": "0", "PYTHONUNBUFFERED": "1"}
    if args.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # gloo on the CPU, even on a GPU machine
    elif procs == 1 and env.get("CUDA_VISIBLE_DEVICES"):
        env["CUDA_VISIBLE_DEVICES"] = env["CUDA_VISIBLE_DEVICES"].split(",")[0]
    t0 = time.time()
    done = subprocess.run(
        train_command(args, procs, mode, folder, extra),
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    row["wall_s"] = time.time() - t0
    if done.returncode != 0:
        return {**row, "error": (done.stderr or done.stdout)[-600:]}
    metrics = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    report = json.loads((folder / "eval.json").read_text())
    losses = [m["loss"] for m in metrics if "loss" in m]
    return {
        **row,
        "engine": engine_used((folder / "train.log").read_text() + done.stdout + done.stderr),
        "statements_per_s": steady_statements_per_s(metrics, args.batch_size, args.steady_from),
        "final_loss": losses[-1] if losses else None,
        "test_roc_auc": (report.get("model") or {}).get("roc_auc"),
    }


def engine_used(output: str) -> str:
    """The step engine a run started with (its train.log), and "-> eager" when a rank fell
    back (a capture refused): a row must not pass eager steps off as captured ones."""
    found = re.search(r"Training starts: \d+ steps, engine ([\w+-]+)", output)
    engine = found.group(1) if found else "?"
    return f"{engine} -> eager" if "continues with the eager engine" in output else engine


def print_table(rows: list[dict]) -> None:
    base = next((r for r in rows if r["procs"] == 1 and r.get("statements_per_s")), None)
    fmt = lambda v, d: "-" if v is None else f"{v:,.{d}f}"  # noqa: E731
    print("| processes | data parallel | engine | steady statements/s | speed-up | final loss | "
          "test ROC-AUC | wall s |")  # fmt: skip
    print("|---:|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        head = f"| {r['procs']} | {r['mode']} |"
        if "error" in r:
            print(f"{head} | FAILED: {r['error'][-120:]!r} | | | | {r['wall_s']:.0f} |")
            continue
        head += f" {r['engine']} |"
        speed = r["statements_per_s"]
        up = f"{speed / base['statements_per_s']:.2f}x" if base and speed else "-"
        print(
            f"{head} {fmt(speed, 0)} | {up} | {fmt(r['final_loss'], 4)} | "
            f"{fmt(r['test_roc_auc'], 4)} | {r['wall_s']:.0f} |"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # a train.py option must never pass for a prefix of ours
    )
    p.add_argument("--data", required=True)
    p.add_argument("--approach", default="classifier", choices=["classifier", "generative"])
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument(
        "--procs",
        "--gpus",
        type=int,
        nargs="+",
        default=None,
        help="process counts (one GPU each); default: 1 and all GPUs (--device cpu: 1 and 2)",
    )
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--eval-rows", type=int, default=2000)
    p.add_argument("--steady-from", type=int, default=STEADY_FROM)
    p.add_argument("--out", default="runs-scaling")
    args, extra = p.parse_known_args(argv)  # the rest goes to scripts/train.py
    import torch

    if args.device == "cuda":
        if not torch.cuda.is_available():
            print("error: no CUDA GPU here; use --device cpu for a smoke run.", file=sys.stderr)
            return 2
        counts = args.procs or sorted({1, torch.cuda.device_count()})
        machine = f"{torch.cuda.get_device_name(0)} x {torch.cuda.device_count()}, NCCL"
    else:
        counts = args.procs or [1, 2]
        machine = f"CPU ({os.cpu_count()} cores), gloo"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in sorted(set(counts)):
        for mode in [None] if n == 1 else args.modes:
            rows.append(run(args, n, mode, out, extra))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)  # progress, for long runs
            (out / "scaling.json").write_text(json.dumps(rows, indent=2))  # kept if cut short
    print(f"\n{machine}; {args.approach}, batch {args.batch_size} (global), {args.steps} steps, "
          f"steady from step {args.steady_from}; {' '.join(extra) or 'default options'}\n")  # fmt: skip
    print_table(rows)
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
