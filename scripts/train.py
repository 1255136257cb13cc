r"""Fine-tune one approach with QLoRA from the command line (the app calls the same `train`).

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

Writes runs/<run_id>/ (config, metrics.jsonl, status, adapter, eval.json, predictions). A
run that fails before its first step (bad data, a model that will not load) leaves no
folder; one that evaluates on fewer than 100 validation or test rows, or that a cached
preflight measurement puts over a day, starts only with --yes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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
    p.add_argument(
        "--yes",
        action="store_true",
        help="start even a run that evaluates on fewer than 100 validation or test rows, or "
        "that a cached preflight measurement puts over a day (otherwise refused with the reason)",
    )
    return p.parse_args(argv)


class ProgressPrinter:
    """The run's messages as lines and its steps as one tqdm bar (statements/s, loss, val
    AUC). The bar starts at the first step it is shown, so its own rate counts only the steps
    it has seen: made at step 1 after a long load, tqdm would read "8774.69step/s"."""

    def __init__(self, file=None) -> None:
        self.file = file
        self.bar = None

    def __call__(self, p: dict) -> None:
        from tqdm import tqdm

        if p.get("message"):
            tqdm.write(p["message"], file=self.file)
        if p.get("phase") != "training" or "step" not in p:
            return
        if self.bar is None:  # made at the first step: no empty bar while data and model load
            self.bar = tqdm(
                total=p.get("total_steps"),
                initial=p["step"],
                unit="step",
                dynamic_ncols=True,
                file=self.file,
            )
        self.bar.n = p["step"]
        post = {"statements/s": f"{p.get('samples_per_s', 0):.0f}"}
        if "loss" in p:
            post["loss"] = f"{p['loss']:.3f}"
        if p.get("val_auc") is not None:
            post["val AUC"] = f"{p['val_auc']:.3f}"
        self.bar.set_postfix(post, refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def refuse_without_yes(config: RunConfig):
    """`train`'s approve_rows: the reasons `run_cautions` gives for this run's rows (and a
    cached preflight measurement's time), as a ConfigError that asks for --yes."""

    def approve(rows: dict[str, int]) -> None:
        from noshow.training.preflight import estimate_resources, run_cautions

        found = estimate_resources(config, rows, measure=False)
        reasons = run_cautions(found["rows"], found["minutes"], found.get("steps"))
        if reasons:
            raise ConfigError(" ".join(reasons) + " Pass --yes to start it anyway.")

    return approve


def main(argv: list[str] | None = None) -> int:
    from noshow.training.distributed import PROGRESS_PREFIX
    from noshow.training.recipe import train
    from noshow.training.runs import RunError, read_status

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
    made_here = not args.resume and not (run_dir and (run_dir / "config.json").exists())

    def print_progress(p: dict) -> None:
        print(PROGRESS_PREFIX + json.dumps(p, default=str), flush=True)

    printer = ProgressPrinter()
    report = print_progress if args.progress_json else printer
    try:
        result = train(
            config,
            run_dir=run_dir,
            on_progress=report if main_rank else None,
            resume=bool(args.resume),
            # a resumed run (or one in a folder made before) was asked about when it began
            approve_rows=None if args.yes or not made_here else refuse_without_yes(config),
        )
    except (ConfigError, RunError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        printer.close()
    unstarted = result.state == "failed" and read_status(result.run_dir).get("before_training")
    if not main_rank:
        return 0 if result.state == "completed" else 2 if unstarted else 1
    removed = False
    if unstarted and made_here:  # nothing in it but the error: say it, keep no folder
        shutil.rmtree(result.run_dir, ignore_errors=True)
        removed = True
    print(closing_line(result, error_shown=not args.progress_json, removed=removed))
    return 0 if result.state == "completed" else 2 if unstarted else 1


def closing_line(result, error_shown: bool = False, removed: bool = False) -> str:
    """One plain sentence: how the run ended, its test ROC-AUC next to the baseline's, and
    where everything is. `error_shown`: the progress lines have said why it failed (each
    error is printed once); `removed`: it failed before training and its folder is gone."""
    if result.state != "completed":
        why = f": {result.error}" if result.error and not error_shown else ""
        where = (
            "Nothing was trained, so no run folder was kept."
            if removed
            else f"Run folder: {result.run_dir}"
        )
        return f"Run {result.state}{why}.\n{where}" if why else f"Run {result.state}.\n{where}"
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
