"""Fine-tune one approach with QLoRA from the command line (the app calls the same `train`).

    python scripts/train.py --approach classifier --max-steps 50
    python scripts/train.py --approach generative --data ../shared/data/KaggleV2-May-2016.csv \
        --split time --epochs 1 --quantize 4bit --wandb
    python scripts/train.py --resume runs/<run_id>        # continue an interrupted run

Data-parallel on several GPUs of one machine (noshow/distributed.py): the same arguments
under either launcher; rank 0 writes the run folder, the global --batch-size is split
across the processes.

    NCCL_NVLS_ENABLE=0 torchrun --standalone --nproc_per_node 4 scripts/train.py --approach classifier
    NCCL_NVLS_ENABLE=0 accelerate launch --num_processes 4 scripts/train.py --approach classifier

Writes runs/<run_id>/ (config, metrics.jsonl, status, adapter, eval.json, predictions).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from noshow.config import ConfigError, DataConfig, LoraSettings, RunConfig, TrainConfig  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--approach", choices=["generative", "classifier"], default="classifier")
    p.add_argument(
        "--model", default="smollm2-135m-instruct", help="preset, hub id or local folder"
    )
    p.add_argument(
        "--data", default=None, help="Kaggle CSV or Statement/NoShow file (default: discovery)"
    )
    p.add_argument("--split", choices=["time", "patient", "random"], default="time")
    p.add_argument("--max-train-rows", type=int, default=None)
    p.add_argument("--max-eval-rows", type=int, default=None)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--warmup-steps", type=int, default=10)
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--lora-alpha", type=int, default=32)
    p.add_argument("--lora-dropout", type=float, default=0.05)
    p.add_argument(
        "--eval-every", type=int, default=0, help="validate every N steps (0 = end only)"
    )
    p.add_argument(
        "--early-stopping", type=int, default=0, help="patience in evaluations (0 = off)"
    )
    p.add_argument("--class-weighting", action="store_true")
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--gradient-checkpointing", choices=["auto", "on", "off"], default="auto")
    p.add_argument("--quantize", choices=["auto", "4bit", "none"], default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--use-clinician-labels", action="store_true")
    p.add_argument("--output-dir", default="runs")
    p.add_argument("--wandb", action="store_true", help="log to W&B (offline without an API key)")
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


def config_from_args(a: argparse.Namespace) -> RunConfig:
    return RunConfig(
        data=DataConfig(
            source=a.data,
            split=a.split,
            max_train_rows=a.max_train_rows,
            max_eval_rows=a.max_eval_rows,
            seed=a.seed,
            use_clinician_labels=a.use_clinician_labels,
        ),
        lora=LoraSettings(r=a.lora_r, alpha=a.lora_alpha, dropout=a.lora_dropout),
        train=TrainConfig(
            approach=a.approach,
            model=a.model,
            quantize=a.quantize,
            epochs=a.epochs,
            max_steps=a.max_steps,
            lr=a.lr,
            batch_size=a.batch_size,
            warmup_steps=a.warmup_steps,
            eval_every=a.eval_every,
            early_stopping_patience=a.early_stopping,
            class_weighting=a.class_weighting,
            max_length=a.max_length,
            gradient_checkpointing=a.gradient_checkpointing,
            seed=a.seed,
            wandb=a.wandb,
            output_dir=a.output_dir,
        ),
    )


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    from noshow.distributed import PROGRESS_PREFIX
    from noshow.recipe import train
    from noshow.runs import RunError

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

    if args.progress_json or not main_rank:
        bar = tqdm(total=None, disable=True)
    else:
        bar = tqdm(total=None, unit="step", dynamic_ncols=True)

    def print_progress(p: dict) -> None:
        print(PROGRESS_PREFIX + json.dumps(p, default=str), flush=True)

    def on_progress(p: dict) -> None:
        if p.get("message"):
            tqdm.write(p["message"])
        if p.get("total_steps") and bar.total != p["total_steps"]:
            bar.total = p["total_steps"]
            bar.refresh()
        if "step" in p and p.get("phase") == "training":
            bar.n = p["step"]
            post = {"sps": f"{p.get('samples_per_s', 0):.0f}"}
            if "loss" in p:
                post["loss"] = f"{p['loss']:.4f}"
            if p.get("val_auc") is not None:
                post["val_auc"] = f"{p['val_auc']:.3f}"
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
        bar.close()
        print(f"error: {e}", file=sys.stderr)
        return 2
    bar.close()
    if not main_rank:
        return 0 if result.state == "completed" else 1
    print(f"\nRun {result.run_dir} ended: {result.state}")
    if result.error:
        print(f"error: {result.error}", file=sys.stderr)
        return 1
    m = result.metrics
    if m:
        model, base = m.get("model", {}), m.get("baseline") or {}
        print(
            f"test ROC-AUC {model.get('roc_auc')}  PR-AUC {model.get('pr_auc')}  "
            f"F1 {model.get('f1')} at threshold {m.get('threshold')}"
        )
        if base:
            print(f"tabular baseline ROC-AUC {base.get('roc_auc')}  PR-AUC {base.get('pr_auc')}")
    return 0 if result.state == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
