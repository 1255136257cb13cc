"""The quality runs of both approaches on the real data (issue "Quality a clinician can
trust"): the defaults on the time and the patient split, then a small search on the time
split whose winner is chosen on VALIDATION ROC-AUC only, each run reported next to the tuned
tabular baseline of the same run with 95% intervals, calibration error before/after and the
hybrid. Optionally ships each approach's chosen adapter (scripts/ship_adapter.py's code).

    python scripts/quality_runs.py --data data/KaggleV2-May-2016.csv --out runs-quality
    python scripts/quality_runs.py --data ... --budget-s 600 --ship shipped/   # on a GPU

Runs are started in order of importance and stop being started when the time budget
(--budget-s) would be exceeded, judged by the slowest run so far. Prints a Markdown table
and writes summary.json in --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

APPROACHES = ("classifier", "generative")


def plan() -> list[tuple[str, str, dict[str, Any]]]:
    """(name, split, option overrides), most important first."""
    runs: list[tuple[str, str, dict[str, Any]]] = []
    for approach in APPROACHES:
        runs.append((f"{approach}-time-default", "time", {"approach": approach}))
    for approach in APPROACHES:
        runs.append((f"{approach}-patient-default", "patient", {"approach": approach}))
    for approach in APPROACHES:
        runs += [
            (f"{approach}-time-2ep", "time", {"approach": approach, "epochs": 2.0}),
            (f"{approach}-time-lr-half", "time", {"approach": approach, "lr": "half"}),
            (f"{approach}-time-lr-double", "time", {"approach": approach, "lr": "double"}),
            (f"{approach}-time-r32", "time", {"approach": approach, "lora_r": 32}),
            (f"{approach}-time-3ep", "time", {"approach": approach, "epochs": 3.0}),
        ]
    return runs


def make_config(data: str, split: str, out: Path, overrides: dict[str, Any]):
    from noshow.config import RunConfig, TrainConfig

    default_lr = TrainConfig().lr
    train: dict[str, Any] = {"output_dir": str(out)}
    lora: dict[str, Any] = {}
    for key, value in overrides.items():
        if key == "lr":
            train["lr"] = {"half": default_lr / 2, "double": default_lr * 2}.get(value, value)
        elif key == "lora_r":
            lora.update(r=value, alpha=2 * value)
        else:
            train[key] = value
    return RunConfig.from_dict(
        {"data": {"source": data, "split": split}, "lora": lora, "train": train}
    )


def summarize(name: str, split: str, result, seconds: float) -> dict[str, Any]:
    m = result.metrics or {}
    model, base = m.get("model") or {}, m.get("baseline") or {}
    raw, hybrid = m.get("model_uncalibrated") or {}, m.get("hybrid") or {}
    val = (m.get("validation") or {}).get("model") or {}
    diffs = m.get("differences") or []
    return {
        "name": name,
        "split": split,
        "state": result.state,
        "error": result.error,
        "run_dir": str(result.run_dir),
        "seconds": round(seconds, 1),
        "validation_roc_auc": val.get("roc_auc"),
        "test": {k: model.get(k) for k in ("roc_auc", "roc_auc_low", "roc_auc_high", "ece")},
        "test_uncalibrated_ece": raw.get("ece"),
        "baseline": {k: base.get(k) for k in ("roc_auc", "roc_auc_low", "roc_auc_high")},
        "hybrid": {k: hybrid.get(k) for k in ("roc_auc", "roc_auc_low", "roc_auc_high")},
        "differences": [d.get("text") for d in diffs],
        "statements_per_s": _train_rate(result.run_dir),
    }


def _train_rate(run_dir) -> float | None:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return None
    rates = [json.loads(x).get("samples_per_s") for x in path.read_text().splitlines()]
    rates = [r for r in rates if r]
    return rates[-1] if rates else None


def fmt_auc(d: dict[str, Any]) -> str:
    if not d or d.get("roc_auc") is None:
        return "-"
    if d.get("roc_auc_low") is None:
        return f"{d['roc_auc']:.3f}"
    return f"{d['roc_auc']:.3f} ({d['roc_auc_low']:.3f}-{d['roc_auc_high']:.3f})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", required=True, help="the real Kaggle CSV")
    p.add_argument("--out", default="runs-quality")
    p.add_argument("--budget-s", type=float, default=900.0)
    p.add_argument("--only", nargs="*", default=None, help="run names to run (default: all)")
    p.add_argument("--ship", default=None, help="ship each approach's chosen adapter here")
    args = p.parse_args(argv)

    from noshow.training.recipe import train

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    slowest = 0.0
    rows: list[dict[str, Any]] = []
    for name, split, overrides in plan():
        if args.only and name not in args.only:
            continue
        if time.time() - started + slowest > args.budget_s:
            print(f"[quality] budget reached: {name} and later runs not started", flush=True)
            break
        config = make_config(args.data, split, out / split, overrides)
        estimate = None
        if not rows:  # the preflight against the first run: is its time estimate true?
            estimate = preflight(config)
        t0 = time.time()
        result = train(config, on_progress=None)
        seconds = time.time() - t0
        slowest = max(slowest, seconds)
        row = summarize(name, split, result, seconds)
        if estimate is not None:
            row["preflight"] = estimate
            est_s = (estimate.get("minutes") or 0) * 60
            print(
                f"[quality] preflight estimated {est_s:.0f} s ({estimate.get('basis')}), "
                f"the run took {seconds:.0f} s: ratio {seconds / max(est_s, 1e-9):.2f}; "
                f"memory {estimate.get('gpu_mem_gb')} GB estimated",
                flush=True,
            )
        rows.append(row)
        print(f"[quality] {json.dumps(row)}", flush=True)
        (out / "summary.json").write_text(json.dumps(rows, indent=2))

    chosen = {}
    for approach in APPROACHES:
        candidates = [
            r for r in rows
            if r["name"].startswith(f"{approach}-time") and r["state"] == "completed"
        ]  # fmt: skip
        if candidates:
            chosen[approach] = max(candidates, key=lambda r: r["validation_roc_auc"] or 0.0)
    print("\n| run | split | validation ROC-AUC | test ROC-AUC (95% CI) | tuned baseline | "
          "hybrid | ECE raw -> calibrated | statements/s | s |")  # fmt: skip
    print("|---|---|---:|---|---|---|---|---:|---:|")
    for r in rows:
        mark = " (chosen on validation)" if r in chosen.values() else ""
        if r["state"] != "completed":
            print(f"| {r['name']} | {r['split']} | FAILED: {r['error']} | | | | | | |")
            continue
        ece = r["test"].get("ece")
        print(
            f"| {r['name']}{mark} | {r['split']} | {r['validation_roc_auc']:.4f} | "
            f"{fmt_auc(r['test'])} | {fmt_auc(r['baseline'])} | {fmt_auc(r['hybrid'])} | "
            f"{_num(r['test_uncalibrated_ece'])} -> {_num(ece)} | "
            f"{_num(r['statements_per_s'], 0)} | {r['seconds']:.0f} |"
        )
    for r in rows:
        for text in r["differences"]:
            print(f"- {r['name']}: {text}")
    if args.ship:
        from noshow.inference.ship import ship_adapter

        for approach, r in chosen.items():
            dest = Path(args.ship) / f"{approach}-smollm2-135m"
            ship_adapter(r["run_dir"], dest, data_path=args.data)  # card: its train.py command
    (out / "chosen.json").write_text(json.dumps(chosen, indent=2))
    return 0


def preflight(config) -> dict[str, Any]:
    """noshow.training.preflight's answer for `config` (it measures a 3-step run first)."""
    from noshow.data.load import choose_split, load_data
    from noshow.training.preflight import estimate_resources

    choice = choose_split(load_data(config.data.source), config.data.split, seed=config.data.seed)
    counts = choice.frame["split"].value_counts().to_dict()
    return estimate_resources(config, counts, measure=True)


def _num(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


if __name__ == "__main__":
    sys.exit(main())
