"""Fine-tune one approach with QLoRA from the command line (the app calls the same `train`).

    python scripts/train.py --approach classifier --max-steps 50
    python scripts/train.py --approach generative --data ../shared/data/KaggleV2-May-2016.csv \
        --split time --epochs 1 --quantize 4bit --wandb
    python scripts/train.py --resume runs/<run_id>        # continue an interrupted run

Data-parallel on several GPUs of one machine (noshow/training/distributed.py): the same arguments
under either launcher; rank 0 writes the run folder, the global --batch-size is split
across the processes.

    NCCL_NVLS_ENABLE=0 torchrun --standalone --nproc_per_node 4 scripts/train.py --approach classifier
    NCCL_NVLS_ENABLE=0 accelerate launch --num_processes 4 scripts/train.py --approach classifier

--data-parallel ddp sums the gradients through torch DistributedDataParallel instead of the
hand-written all_reduce (noshow/training/ddp.py). Several machines: the same command on each,
joined by torchrun's c10d rendezvous (the data, the model and --output-dir at the same paths
on every machine; --resume needs --output-dir on a filesystem they share):

    NCCL_NVLS_ENABLE=0 torchrun --nnodes 2 --nproc_per_node 8 --rdzv-backend c10d \
        --rdzv-endpoint HOST0:29500 --rdzv-id noshow-1 scripts/train.py --data-parallel ddp

Writes runs/<run_id>/ (config, metrics.jsonl, status, adapter, eval.json, predictions).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from noshow.config import ConfigError, RunConfig, add_arguments, config_from_args  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(p)  # one flag per field of noshow.config, help from its docstring
    p.add_argument("--resume", default=None, help="run folder to resume from its last checkpoint")
    p.add_argument(
        "--run-dir",
        default=None,
        help="train into this folder: one made beforehand with its config.json (then that "
        "config is used and the other options are ignored; the app does this), or a new one",
    )
    p.add_argument(
        "--progress-json",
        action="store_true",
        help="print each progress update as one JSON line (for the app's launcher), no bar",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    from noshow.training.distributed import PROGRESS_PREFIX
    from noshow.training.recipe import train
    from noshow.training.runs import RunError

    args = parse_args(argv)
    run_dir = None
    # Under torchrun / accelerate only rank 0 reports; every rank trains.
    main_rank = int(os.environ.get("RANK", "0") or 0) == 0
    try:
        if args.resume:
            run_dir = Path(args.resume)
            config = RunConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
        elif args.run_dir and (Path(args.run_dir) / "config.json").exists():
            run_dir = Path(args.run_dir)
            config = RunConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
        else:
            config = config_from_args(args)
            run_dir = Path(args.run_dir) if args.run_dir else None
    except (ConfigError, OSError, json.JSONDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    bar = None  # made at the first training step: no empty bar while data and model load

    def print_progress(p: dict) -> None:
        print(PROGRESS_PREFIX + json.dumps(p, default=str), flush=True)

    def on_progress(p: dict) -> None:
        nonlocal bar
        if p.get("message"):
            tqdm.write(p["message"])
        if p.get("phase") != "training" or "step" not in p:
            return
        if bar is None:
            bar = tqdm(total=p.get("total_steps"), unit="step", dynamic_ncols=True)
        bar.n = p["step"]
        post = {"statements/s": f"{p.get('samples_per_s', 0):.0f}"}
        if "loss" in p:
            post["loss"] = f"{p['loss']:.3f}"
        if p.get("val_auc") is not None:
            post["val AUC"] = f"{p['val_auc']:.3f}"
        bar.set_postfix(post, refresh=True)

    report = print_progress if args.progress_json else on_progress
    try:
        result = train(
            config,
            run_dir=run_dir,
            on_progress=report if main_rank else None,
            resume=bool(args.resume),
        )
    except (ConfigError, RunError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if bar is not None:
            bar.close()
    if not main_rank:
        return 0 if result.state == "completed" else 1
    print(closing_line(result))
    return 0 if result.state == "completed" else 1


def closing_line(result) -> str:
    """One plain sentence: how the run ended, its test ROC-AUC next to the baseline's, and
    where everything is."""
    if result.state != "completed":
        why = f": {result.error}" if result.error else ""
        return f"Run {result.state}{why}\nRun folder: {result.run_dir}"
    m = result.metrics or {}
    auc = (m.get("model") or {}).get("roc_auc")
    base = (m.get("baseline") or {}).get("roc_auc")
    parts = [f"Test ROC-AUC {auc:.3f}" if auc is not None else "Test ROC-AUC n/a"]
    if base is not None:
        parts.append(f"tabular baseline {base:.3f}")
    elapsed = m.get("elapsed_s")
    took = f" in {elapsed:.0f} s" if elapsed is not None else ""
    return f"Done{took}. " + ", ".join(parts) + f".\nRun folder: {result.run_dir}"


if __name__ == "__main__":
    sys.exit(main())
