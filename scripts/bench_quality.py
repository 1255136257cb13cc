"""Quality figures with 95% intervals: the tuned and the untuned tabular baseline on the real
data's time and patient splits (ROC-AUC, the paired difference, tuning time), the interval
methods side by side (DeLong and bootstrap, by row and by patient: width and time), and,
given adapters, their calibration before/after and the hybrid, through the same functions a
training run calls (`noshow.evaluation.report.evaluate_run`).

    python scripts/bench_quality.py                                  # baselines, both splits
    python scripts/bench_quality.py --split time --adapters adapters/classifier-smollm2-135m \
        adapters/generative-smollm2-135m --rows 0 --device cuda      # full splits, on a GPU
    python scripts/bench_quality.py --split time --adapters ... --rows 3000 --cache /tmp/q
        # CPU preview: a seeded sample of 3,000 validation and 3,000 test rows per adapter
    ... --rows 0 --save-to /tmp/fitted   # also write each adapter's calibration.json,
        # hybrid.json and stacked.json (for shipped adapters trained before these files)

Adapter scores are cached as <cache>/scores_<adapter folder name>.csv (record_id, p) so an
interrupted preview resumes. Prints tables; --json writes every figure to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from noshow.evaluation.baseline import baseline_predict, fit_tabular_baseline, tune_tabular_baseline  # noqa: E402
from noshow.evaluation.intervals import compare_auc  # noqa: E402
from noshow.evaluation.metrics import format_auc  # noqa: E402
from noshow.evaluation.report import evaluate_run  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "KaggleV2-May-2016.csv"
SCORE_CHUNK = 64


def say(*parts: Any) -> None:
    print(*parts, flush=True)


def load_splits(data: str, split: str) -> dict[str, pd.DataFrame]:
    from noshow.data.load import load_data
    from noshow.data.splits import split_data

    frame = split_data(load_data(data).frame, split)
    return {name: frame[frame["split"] == name] for name in ("train", "validation", "test")}


def bench_baselines(parts: dict[str, pd.DataFrame], seed: int) -> dict[str, Any]:
    """Untuned and tuned baseline: fit times, validation and test ROC-AUC with intervals."""
    train, val, test = parts["train"], parts["validation"], parts["test"]
    t0 = time.perf_counter()
    untuned = fit_tabular_baseline(train, seed=seed)
    untuned_s = time.perf_counter() - t0
    tuned = tune_tabular_baseline(train, val, seed=seed)
    scores = {"tuned": tuned.predict(test), "untuned": baseline_predict(untuned, test)}
    y = test["no_show"].to_numpy()
    patients = test["patient_id"].to_numpy()
    methods = {}
    for method in ("delong", "bootstrap"):
        for unit, groups in (("row", None), ("patient", patients)):
            t0, c0 = time.perf_counter(), time.process_time()
            result = compare_auc(
                y, scores, [("tuned", "untuned")], method=method, groups=groups, seed=seed
            )
            methods[f"{method}/{unit}"] = {
                "seconds": time.perf_counter() - t0,
                "cpu_seconds": time.process_time() - c0,
                **result,
            }
    return {
        "rows": {k: len(v) for k, v in parts.items()},
        "test_patients": int(test["patient_id"].nunique()),
        "untuned_fit_s": untuned_s,
        "tuning": tuned.to_dict(),
        "methods": methods,
    }


def print_baselines(split: str, result: dict[str, Any]) -> None:
    tuning = result["tuning"]
    say(f"\n== {split} split: rows {result['rows']}, test patients {result['test_patients']:,}")
    say(f"untuned fit {result['untuned_fit_s']:.1f} s; tuning {tuning['seconds']:.1f} s")
    for t in tuning["trials"]:
        say(
            f"  grid neighbourhood={t['neighbourhood']:<8} leaves={t['max_leaf_nodes']:<3} "
            f"trees={t['n_iter']:<4} validation AUC {t['validation_auc']:.4f}  {t['seconds']:.1f} s"
        )
    params = {k: tuning["params"][k] for k in ("neighbourhood", "max_leaf_nodes", "n_iter")}
    say(f"chosen {params} (validation AUC {tuning['validation_auc']:.4f})")
    say("test ROC-AUC, 95% intervals by method (width), and tuned - untuned:")
    for name, m in result["methods"].items():
        auc, diff = m["auc"], m["differences"][0]
        widths = "  ".join(
            f"{k} {v['estimate']:.4f} [{v['low']:.4f}, {v['high']:.4f}] (w {v['high'] - v['low']:.4f})"
            for k, v in auc.items()
        )
        say(f"  {name:<18} {m['seconds']:5.2f} s ({m['cpu_seconds']:.2f} s CPU)  {widths}")
        say(f"  {'':<18} {diff['text']}")


# ---------------------------------------------------------------------------------------------
# adapters


def sample_rows(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """All rows (rows=0) or a seeded random sample, in the frame's order."""
    if rows <= 0 or rows >= len(frame):
        return frame
    rng = np.random.default_rng(seed)
    return frame.iloc[np.sort(rng.choice(len(frame), rows, replace=False))]


def score_adapter(
    adapter: Path, rows: pd.DataFrame, cache: Path | None, device: str | None
) -> np.ndarray:
    """P(no-show) of `adapter` for `rows`, reusing and extending the cache file."""
    path = cache / f"scores_{adapter.name}.csv" if cache else None
    known: dict[int, float] = {}
    if path is not None and path.exists():
        cached = pd.read_csv(path)
        known = dict(zip(cached["record_id"].astype(int), cached["p"].astype(float), strict=True))
    todo = rows[~rows["record_id"].isin(known)]
    if len(todo):
        from noshow.inference.predict import load_predictor

        predictor = load_predictor(adapter, device=device) if device else load_predictor(adapter)
        started = time.perf_counter()
        for first in range(0, len(todo), SCORE_CHUNK):
            chunk = todo.iloc[first : first + SCORE_CHUNK]
            p = predictor.predict_proba(chunk["statement"].tolist(), calibrated=False)
            known.update(zip(chunk["record_id"].astype(int), p, strict=True))
            if path is not None:
                out = pd.DataFrame({"record_id": chunk["record_id"], "p": p})
                out.to_csv(path, mode="a", header=not path.exists(), index=False)
            done = first + len(chunk)
            rate = (time.perf_counter() - started) / done
            say(f"  {adapter.name}: {done:,}/{len(todo):,} scored ({rate:.3f} s/row)")
    return np.array([known[int(r)] for r in rows["record_id"]])


def cached_rows(rows: pd.DataFrame, adapter: Path, cache: Path | None) -> pd.DataFrame:
    """The rows of `rows` whose scores are already in the cache (a preview still running)."""
    path = cache / f"scores_{adapter.name}.csv" if cache else None
    if path is None or not path.exists():
        return rows.iloc[:0]
    return rows[rows["record_id"].isin(pd.read_csv(path)["record_id"])]


def hybrid_alternatives(
    val: pd.DataFrame, test: pd.DataFrame, run: Any, seed: int
) -> dict[str, dict[str, float]]:
    """The blend against gradient boosting fitted on the validation rows with the adapter's
    logit as one more column (with and without the baseline's logit): 5-fold validation
    ROC-AUC (folds by patient) and test ROC-AUC when fitted on all validation rows."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    from noshow.evaluation.baseline import (
        _categorical_mask,
        _column_transformer,
        _feature_frame,
        _one_thread,
    )
    from noshow.evaluation.hybrid import _folds, _logit

    scores = run.scores
    sv, st = scores[scores["split"] == "validation"], scores[scores["split"] == "test"]
    columns = _column_transformer().fit(_feature_frame(val))
    mask = _categorical_mask("code")

    def design(rows: pd.DataFrame, s: pd.DataFrame, with_baseline: bool) -> np.ndarray:
        extra = [_logit(s["p_no_show"].to_numpy())]
        if with_baseline:
            extra.append(_logit(s["p_baseline"].to_numpy()))
        return np.column_stack([columns.transform(_feature_frame(rows)), *extra])

    y_val, y_test = sv["label"].to_numpy(), st["label"].to_numpy()
    fold = _folds(y_val, val["patient_id"].to_numpy(), 5, seed)
    out: dict[str, dict[str, float]] = {}
    for name, with_baseline in (
        ("boosted: columns + adapter", False),
        ("boosted: + baseline", True),
    ):
        xv, xt = design(val, sv, with_baseline), design(test, st, with_baseline)

        def fit(x: np.ndarray, y: np.ndarray) -> HistGradientBoostingClassifier:
            model = HistGradientBoostingClassifier(
                learning_rate=0.05,
                max_iter=300,
                max_leaf_nodes=15,
                min_samples_leaf=50,
                l2_regularization=1.0,
                categorical_features=mask + [False] * (x.shape[1] - len(mask)),
                early_stopping=True,  # on a random 10% of the fitting rows
                random_state=seed,
            )
            with _one_thread():  # OpenMP threads spin-wait on a busy machine
                return model.fit(x, y)

        cv = [
            roc_auc_score(
                y_val[fold == k],
                fit(xv[fold != k], y_val[fold != k]).predict_proba(xv[fold == k])[:, 1],
            )
            for k in range(5)
        ]
        out[name] = {
            "cv_auc": float(np.mean(cv)),
            "test_auc": float(roc_auc_score(y_test, fit(xv, y_val).predict_proba(xt)[:, 1])),
        }
    out["blend (shipped)"] = {
        "cv_auc": run.hybrid.cv_auc["hybrid"],
        "test_auc": run.report["hybrid"]["roc_auc"],
    }
    return out


def bench_adapter(
    parts: dict[str, pd.DataFrame], adapter: Path, args: argparse.Namespace
) -> dict[str, Any]:
    val = sample_rows(parts["validation"], args.rows, args.seed)
    test = sample_rows(parts["test"], args.rows, args.seed + 1)
    if args.cached_only:
        val, test = cached_rows(val, adapter, args.cache), cached_rows(test, adapter, args.cache)
    p_val = score_adapter(adapter, val, args.cache, args.device)
    p_test = score_adapter(adapter, test, args.cache, args.device)
    run = evaluate_run(
        parts["train"], val, test, p_val, p_test, tuning_rows=parts["validation"], seed=args.seed
    )
    report = run.report
    if run.hybrid is not None and "patient_id" in val.columns:
        report["hybrid_alternatives"] = hybrid_alternatives(val, test, run, args.seed)
    if args.save_to:
        # calibration.json / hybrid.json for an adapter trained before they existed; copy
        # them into its folder (and its threshold into noshow.json) when the rows were all
        folder = args.save_to / adapter.name
        folder.mkdir(parents=True, exist_ok=True)
        run.calibrator.save(folder)
        if run.hybrid is not None:
            run.hybrid.save(folder)
        if run.stacked is not None:
            run.stacked.save(folder)
        say(f"  saved {folder}/ (calibrated threshold {run.calibrator.threshold:.4f})")
    return report


def print_adapter(name: str, report: dict[str, Any]) -> None:
    model = report["model"]
    say(f"\n== {name}: {model['n']:,} test rows, validation {report['validation']['model']['n']:,}")
    for key, label in report["names"].items():
        m = report.get(key)
        if m:
            say(
                f"  {label:<34} ROC-AUC {format_auc(m)}  ECE {m['ece']:.4f}  "
                f"mean P {m['mean_p']:.3f} (rate {m['prevalence']:.3f})"
            )
    cal = report["calibration"]
    say(
        f"  calibration: {cal['method']} slope {cal['slope']:.3f} intercept {cal['intercept']:.3f}"
        f"; validation ECE {report['validation']['model_uncalibrated']['ece']:.4f} -> "
        f"{report['validation']['model']['ece']:.4f} (held-out folds {cal['cv_ece']:.4f}); "
        f"threshold {report['model_uncalibrated']['threshold']:.3f} -> {report['threshold']:.3f}"
    )
    if report.get("hybrid_model"):
        h = report["hybrid_model"]
        say(
            f"  hybrid: w_adapter {h['w_adapter']:.3f} w_baseline {h['w_baseline']:.3f} "
            f"intercept {h['intercept']:.3f}; 5-fold validation AUC {h['cv_auc']}"
        )
    for name, figures in report.get("hybrid_alternatives", {}).items():
        say(
            f"  hybrid kind {name:<28} validation 5-fold AUC {figures['cv_auc']:.4f}  "
            f"test AUC {figures['test_auc']:.4f}"
        )
    for d in report["differences"]:
        say(f"  {d['text']}")
    for key, section in ((report.get("recalibration") or {}).get("models") or {}).items():
        ece = "  ".join(
            f"{variant} {e['estimate']:.4f} [{e['low']:.4f}, {e['high']:.4f}]"
            for variant, e in section["ece"].items()
        )
        say(f"  test ECE, {key} (window {section['window_days']} days): {ece}")
    say(f"  timings {report['quality_timings']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data", default=str(DEFAULT_DATA), help="data file, or 'synthetic' for the demo data"
    )
    parser.add_argument("--split", nargs="+", default=["time", "patient"])
    parser.add_argument("--adapters", nargs="*", type=Path, default=[])
    parser.add_argument(
        "--rows", type=int, default=0, help="validation/test rows per adapter; 0 = all"
    )
    parser.add_argument("--cache", type=Path, help="folder for cached adapter scores")
    parser.add_argument("--device", help="cpu or cuda (default: noshow.inference.predict's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-baselines", action="store_true")
    parser.add_argument(
        "--cached-only",
        action="store_true",
        help="score nothing: evaluate the sampled rows already in --cache (a running preview)",
    )
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument(
        "--save-to",
        type=Path,
        help="write each adapter's calibration.json, hybrid.json and stacked.json to <dir>/<adapter>/",
    )
    args = parser.parse_args()
    if args.data != "synthetic" and not Path(args.data).exists():
        sys.exit(f"data file not found: {args.data} (pass --data)")
    if args.cache:
        args.cache.mkdir(parents=True, exist_ok=True)
    say(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    figures: dict[str, Any] = {}
    for split in args.split:
        parts = load_splits(args.data, split)
        if not args.skip_baselines:
            figures[f"{split}/baselines"] = result = bench_baselines(parts, args.seed)
            print_baselines(split, result)
        for adapter in args.adapters:
            report = bench_adapter(parts, adapter, args)
            figures[f"{split}/{adapter.name}"] = report
            print_adapter(f"{split} split, {adapter.name}", report)
    say(f"\nload average {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=float))
        say(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
