"""Data-parallel scaling: the same training run on 1 GPU and on N GPUs (torchrun), side by
side: steady statements/s, the speed-up, and whether the results agree (loss, test ROC-AUC).

    python scripts/bench_scaling.py --data data/KaggleV2-May-2016.csv            # 1 vs all GPUs
    python scripts/bench_scaling.py --gpus 1 2 4 --approach generative --steps 200

Each run is `scripts/train.py` with the same options (under `torchrun --standalone` for more
than one GPU), in its own run folder under --out; the steady rate is read from the run's
metrics.jsonl between step 20 (captures and compiles done) and the last step. Prints a
Markdown table; add it to BENCHMARKS.md with the command and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STEADY_FROM = 20


def steady_statements_per_s(metrics: list[dict], batch: int) -> float | None:
    """Statements/s between step STEADY_FROM and the last loss reading. Each record's
    `samples_per_s` averages since the loop started, so its time since then is
    step * batch / samples_per_s."""
    points = [m for m in metrics if "loss" in m and m.get("samples_per_s")]
    start = next((m for m in points if m["step"] >= STEADY_FROM), None)
    if start is None or points[-1]["step"] <= start["step"]:
        return None
    end = points[-1]
    t0 = start["step"] * batch / start["samples_per_s"]
    t1 = end["step"] * batch / end["samples_per_s"]
    return (end["step"] - start["step"]) * batch / max(t1 - t0, 1e-12)


def run(args, gpus: int, out: Path) -> dict:
    folder = out / f"gpus-{gpus}"
    options = [
        "--approach", args.approach, "--data", args.data, "--max-steps", str(args.steps),
        "--batch-size", str(args.batch_size), "--max-eval-rows", str(args.eval_rows),
        "--run-dir", str(folder), "--progress-json", "--yes",  # a timing, not a model to judge
    ]  # fmt: skip
    script = str(REPO / "scripts" / "train.py")
    if gpus == 1:
        cmd = [sys.executable, script, *options]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={gpus}", script, *options]  # fmt: skip
    env = {**os.environ, "NCCL_NVLS_ENABLE": "0"}
    if gpus == 1 and "CUDA_VISIBLE_DEVICES" in env:
        env["CUDA_VISIBLE_DEVICES"] = env["CUDA_VISIBLE_DEVICES"].split(",")[0]
    t0 = time.time()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    wall = time.time() - t0
    if done.returncode != 0:
        return {"gpus": gpus, "error": (done.stderr or done.stdout)[-600:], "wall_s": wall}
    metrics = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    report = json.loads((folder / "eval.json").read_text())
    speed = steady_statements_per_s(metrics, args.batch_size)
    losses = [m["loss"] for m in metrics if "loss" in m]
    return {
        "gpus": gpus,
        "statements_per_s": speed,
        "final_loss": losses[-1] if losses else None,
        "test_roc_auc": (report.get("model") or {}).get("roc_auc"),
        "wall_s": wall,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", required=True)
    p.add_argument("--approach", default="classifier", choices=["classifier", "generative"])
    p.add_argument("--gpus", type=int, nargs="+", default=None, help="default: 1 and all")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--eval-rows", type=int, default=2000)
    p.add_argument("--out", default="runs-scaling")
    args = p.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("error: no CUDA GPU here; scaling is measured on GPUs.", file=sys.stderr)
        return 2
    counts = args.gpus or sorted({1, torch.cuda.device_count()})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [run(args, n, out) for n in counts]
    base = next((r for r in rows if r["gpus"] == 1 and r.get("statements_per_s")), None)
    print(f"\n{torch.cuda.get_device_name(0)} x {max(counts)}, {args.approach}, batch "
          f"{args.batch_size} (global), {args.steps} steps\n")  # fmt: skip
    print("| GPUs | steady statements/s | speed-up | final loss | test ROC-AUC | wall s |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['gpus']} | FAILED: {r['error'][-120:]!r} | | | | |")
            continue
        speed = r["statements_per_s"]
        up = f"{speed / base['statements_per_s']:.2f}x" if base and speed else "-"
        fmt = lambda v, d: "-" if v is None else f"{v:,.{d}f}"  # noqa: E731
        print(
            f"| {r['gpus']} | {fmt(speed, 0)} | {up} | {fmt(r['final_loss'], 4)} | "
            f"{fmt(r['test_roc_auc'], 4)} | {r['wall_s']:.0f} |"
        )
    (out / "scaling.json").write_text(json.dumps(rows, indent=2))
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
