"""Both adapters together: the stacked model (noshow.evaluation.stacking) of the tuned tabular
model and two adapters trained on the same data and split (a generative and a classifier
run), fitted on their shared validation rows by cross-fitting and reported on their shared
test rows against each of its parts: each adapter, each adapter's hybrid and stacked model,
and the tuned baseline. Every ROC-AUC and difference carries its 95% interval (DeLong,
clustered by patient); the test ECE is also given recalibrated day by day
(noshow.evaluation.recalibration).

    from noshow.evaluation.two_adapters import evaluate_two_adapters
    section, stacked = evaluate_two_adapters(
        frame, {"generative": predictions_a, "classifier": predictions_b}, baseline_params=...
    )

`predictions_*` are the runs' predictions (record_id, split, label, p_no_show calibrated,
p_baseline, and p_hybrid / p_stacked when the run had them); `frame` holds the rows' columns
(the loaded data set, found by record id). `scripts/stack_adapters.py RUN_A RUN_B` reads two
runs and stores the section in their eval.json as "two_adapters", which model cards show.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from noshow.evaluation.intervals import compare_auc
from noshow.evaluation.metrics import choose_threshold, compute_metrics
from noshow.evaluation.recalibration import recalibrate_run
from noshow.evaluation.stacking import Stacked, StackingError, rows_by_id, stack_run

BOTH = "both"


def _shared(predictions: Mapping[str, pd.DataFrame], split: str) -> pd.DataFrame:
    """One row per record both runs scored in `split`: label, each run's P columns by name."""
    tables = []
    for name, table in predictions.items():
        part = table[table["split"] == split].set_index("record_id")
        columns = {"p_no_show": name, "p_hybrid": f"hybrid_{name}", "p_stacked": f"stacked_{name}"}
        keep = part[[c for c in columns if c in part.columns]].rename(columns=columns)
        if not tables:
            keep = keep.join(
                part[["label", "p_baseline"]] if "p_baseline" in part.columns else part[["label"]]
            )
        elif "label" in part.columns:
            keep = keep.join(part[["label"]].rename(columns={"label": f"label_{name}"}))
        tables.append(keep)
    joined = tables[0].join(tables[1:], how="inner")
    for column in [c for c in joined.columns if c.startswith("label_")]:
        if (joined[column] != joined["label"]).any():
            raise StackingError(
                f"the two runs disagree on {int((joined[column] != joined['label']).sum())} "
                f"{split} labels (clinician labels in one of them?): stack runs on the same labels."
            )
        joined = joined.drop(columns=column)
    return joined.reset_index()


def evaluate_two_adapters(
    frame: pd.DataFrame,
    predictions: Mapping[str, pd.DataFrame],
    *,
    baseline_params: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> tuple[dict[str, Any], Stacked]:
    """The two-adapter stacked model and its report section (see the module docstring).
    Raises StackingError when the runs share too few rows, lack the tuned baseline's P or
    disagree on labels."""
    names = list(predictions)
    if len(names) != 2:
        raise StackingError(f"two adapters are stacked together, got {len(names)}.")
    val, test = _shared(predictions, "validation"), _shared(predictions, "test")
    if "p_baseline" not in val.columns:
        raise StackingError("the first run has no tuned baseline P (p_baseline) to stack on.")
    if len(val) < 50 or len(test) < 2:
        raise StackingError(
            f"the runs share {len(val)} validation and {len(test)} test rows: stack two runs "
            "evaluated on the same data set and split."
        )
    val_rows = rows_by_id(frame, val["record_id"]).assign(no_show=val["label"].to_numpy())
    test_rows = rows_by_id(frame, test["record_id"]).assign(no_show=test["label"].to_numpy())
    y_val, y_test = val["label"].to_numpy(), test["label"].to_numpy()
    stacked, (p_val, p_test) = stack_run(
        val_rows,
        test_rows,
        y_val,
        {name: (val[name].to_numpy(), test[name].to_numpy()) for name in names},
        (val["p_baseline"].to_numpy(), test["p_baseline"].to_numpy()),
        baseline_params=baseline_params,
        seed=seed,
    )
    # each part in reading order: the adapters, their hybrids and stacked models, the baseline
    order = [*names, *(f"{kind}_{n}" for kind in ("hybrid", "stacked") for n in names)]
    parts = [c for c in [*order, "p_baseline"] if c in test.columns]
    scores_val = {BOTH: p_val, **{c: val[c].to_numpy() for c in parts}}
    scores_test = {BOTH: p_test, **{c: test[c].to_numpy() for c in parts}}
    display = {BOTH: "both adapters + tabular (stacked)", "p_baseline": "tuned tabular baseline"}
    for name in names:
        display.update(
            {
                name: f"{name} adapter",
                f"hybrid_{name}": f"hybrid ({name} + tabular)",
                f"stacked_{name}": f"stacked ({name} + tabular)",
            }
        )
    groups = test_rows["patient_id"].to_numpy() if "patient_id" in test_rows.columns else None
    auc = compare_auc(
        y_test,
        scores_test,
        [(BOTH, part) for part in parts],
        groups=groups,
        names=display,
    )
    metrics = {}
    for key, p in scores_test.items():
        m = compute_metrics(y_test, p, choose_threshold(y_val, scores_val[key]))
        m.update(roc_auc_low=auc["auc"][key]["low"], roc_auc_high=auc["auc"][key]["high"])
        metrics[key] = m
    recalibration, _, note = recalibrate_run(
        val_rows, test_rows, {BOTH: (p_val, p_test, None)}, groups=groups, seed=seed
    )
    section = {
        "adapters": names,
        "rows": {"validation": len(val), "test": len(test)},
        "model": stacked.summary(),
        "metrics": metrics,
        "names": display,
        "differences": auc["differences"],
        "intervals": {k: auc[k] for k in ("method", "level", "unit")},
        "recalibration": recalibration,
        "notes": [note] if note else [],
    }
    return section, stacked
