"""Both adapters together: stack two finished runs (a generative and a classifier, same data
and split) with the tuned tabular model on their shared validation rows (cross-fitted), and
report the stacked model on their shared test rows against each part, every ROC-AUC
difference with its 95% interval (noshow.evaluation.two_adapters).

    python scripts/stack_adapters.py runs/<generative run> runs/<classifier run>
    python scripts/stack_adapters.py RUN_A RUN_B --data ../shared/data/KaggleV2-May-2016.csv \
        --json two_adapters.json --into-runs     # also into each run's eval.json

--into-runs stores the section in both runs' eval.json as "two_adapters", so shipping either
adapter afterwards (scripts/ship_adapter.py) puts it in its model card. The Compare tab
fits the same model itself from the two adapters' stacked.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("runs", nargs=2, help="two finished run folders (runs/<run_id>)")
    p.add_argument("--data", help="the data file the runs used (default: from config.json)")
    p.add_argument("--json", type=Path, help="write the section here")
    p.add_argument(
        "--into-runs", action="store_true", help='store it in each eval.json as "two_adapters"'
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from noshow.data.load import load_data
    from noshow.data.splits import choose_split
    from noshow.evaluation.metrics import format_auc
    from noshow.evaluation.stacking import StackingError
    from noshow.evaluation.two_adapters import evaluate_two_adapters
    from noshow.training import runs

    a = parse_args(argv)
    folders = [Path(r) for r in a.runs]
    configs = [runs.read_config(f) for f in folders]
    reports = [runs.read_eval(f) for f in folders]
    predictions = [runs.read_predictions(f) for f in folders]
    if any(r is None for r in reports) or any(p is None for p in predictions):
        print("error: both runs must be finished (eval.json and predictions).", file=sys.stderr)
        return 2
    approaches = [c["train"]["approach"] for c in configs]
    names = approaches if len(set(approaches)) == 2 else [f.name for f in folders]
    data = configs[0]["data"]
    loaded = load_data(a.data or data["source"])
    frame = choose_split(loaded, data["split"], seed=data.get("seed", 0)).frame
    tuning = reports[0].get("baseline_tuning") or {}
    try:
        section, _ = evaluate_two_adapters(
            frame,
            dict(zip(names, predictions, strict=True)),
            baseline_params=tuning.get("params"),
            seed=data.get("seed", 0),
        )
    except StackingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    section["runs"] = [f.name for f in folders]
    model = section["model"]
    print(
        f"stacked on {section['rows']['validation']:,} validation rows ({model['fold_unit']} "
        f"folds, {model['n_trees']} trees); {section['rows']['test']:,} test rows"
    )
    for key, metrics in section["metrics"].items():
        print(
            f"  {section['names'][key]:<40} ROC-AUC {format_auc(metrics)}  ECE {metrics['ece']:.4f}"
        )
    for d in section["differences"]:
        print(f"  {d['text']}")
    if a.json:
        a.json.write_text(json.dumps(section, indent=2))
        print(a.json)
    if a.into_runs:
        for folder, report in zip(folders, reports, strict=True):
            runs.write_eval(folder, {**report, "two_adapters": section})
            print(folder / runs.EVAL_FILE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
