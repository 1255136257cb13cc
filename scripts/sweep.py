"""The quality sweep (noshow/training/sweep.py) from the command line: trials on a time
budget, each chosen on validation only, resumed from the sweep's own table.

    python scripts/sweep.py --data ../shared/data/KaggleV2-May-2016.csv --out runs-sweep \
        --budget-s 900                       # run what fits; run it again to go on
    python scripts/sweep.py --data ... --out runs-sweep --stages defaults
    python scripts/sweep.py --out runs-sweep --report    # the table so far, no training

Prints every trial's validation ROC-AUC, then per approach and split the trial chosen on
validation with its test ROC-AUC (95% interval) beside the tuned tabular baseline, the
hybrid and the stacked model of the same run, and its test ECE raw, calibrated and
recalibrated day by day. --ship DIR ships each approach's chosen time-split adapter; then
scripts/stack_adapters.py on the two chosen time-split runs stacks both adapters together.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from noshow.training.sweep import choose, read_table, run_folder, run_sweep  # noqa: E402

STAGES = ("defaults", "search", "combined")


def fmt_auc(d: dict | None) -> str:
    if not d or d.get("roc_auc") is None:
        return "-"
    if d.get("roc_auc_low") is None:
        return f"{d['roc_auc']:.3f}"
    return f"{d['roc_auc']:.3f} ({d['roc_auc_low']:.3f}-{d['roc_auc_high']:.3f})"


def fmt_ece(d: dict | None) -> str:
    if not d:
        return "-"
    return f"{d['estimate']:.3f} ({d['low']:.3f}-{d['high']:.3f})"


def num(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def report(out: Path) -> str:
    table = read_table(out)
    lines = [
        "| trial | stage | validation ROC-AUC | validation ECE | minutes | state |",
        "|---|---|---:|---:|---:|---|",
    ]
    for r in table:
        v = r["validation"]
        lines.append(
            f"| {r['key']} | {r['stage']} | {num(v.get('roc_auc'))} | {num(v.get('ece'), 3)} | "
            f"{r['seconds'] / 60:.1f} | {r['state']}{': ' + r['error'] if r['error'] else ''} |"
        )
    lines += [
        "",
        "| chosen on validation | test ROC-AUC (95% CI) | tuned baseline | hybrid | stacked "
        "| test ECE raw -> calibrated -> recalibrated daily (95% CI) |",
        "|---|---|---|---|---|---|",
    ]
    for (approach, split), r in sorted(choose(table, out).items()):
        t = r["test"]
        lines.append(
            f"| {approach}, {split} split: {r['key']} | {fmt_auc(t.get('model'))} | "
            f"{fmt_auc(t.get('baseline'))} | {fmt_auc(t.get('hybrid'))} | "
            f"{fmt_auc(t.get('stacked'))} | {num(t.get('ece_uncalibrated'), 3)} -> "
            f"{num(t.get('ece'), 3)} -> {fmt_ece(t.get('ece_rolling'))} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", help="the Kaggle CSV (required unless --report)")
    p.add_argument("--out", default="runs-sweep", help="the sweep's folder: table and runs")
    p.add_argument("--budget-s", type=float, default=900.0, help="start no trial past this")
    p.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    p.add_argument("--report", action="store_true", help="print the table so far and stop")
    p.add_argument("--ship", default=None, help="ship each approach's chosen adapter here")
    args = p.parse_args(argv)
    out = Path(args.out)
    if not args.report:
        if not args.data:
            p.error("--data is required to run trials (or pass --report)")
        run_sweep(args.data, out, budget_s=args.budget_s, stages=tuple(args.stages))
    print(report(out))
    if args.ship:
        from noshow.inference.ship import ship_adapter

        for (approach, split), r in choose(read_table(out), out).items():
            if split == "time":
                dest = Path(args.ship) / f"{approach}-smollm2-135m"
                ship_adapter(run_folder(r, out), dest, data_path=args.data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
