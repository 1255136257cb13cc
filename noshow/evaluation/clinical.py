"""The sections of a report a clinic acts on, from the same scored rows as its ROC-AUC:
net benefit (`decision.decision_curves`), capacity (`decision.capacity_table`) and
subgroups (`subgroups.subgroup_report`), each with intervals clustered by patient. The
end of a run (`noshow.evaluation.report.evaluate_run`, into eval.json), the Compare tab's
batch view and the shipped adapters' cards all call `clinical_report`.

    from noshow.evaluation.clinical import clinical_report
    sections = clinical_report(test_frame, y, {"model": p, "baseline": q},
                               {"model": 0.25, "baseline": 0.22}, names=REPORT_NAMES)
    sections["net_benefit"]["text"]; sections["capacity"]; sections["subgroups"]["findings"]
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from noshow.evaluation.decision import CAPACITY_SHARES, THRESHOLDS, capacity_table, decision_curves
from noshow.evaluation.subgroups import MIN_ROWS, subgroup_report

CLINICAL_SECTIONS = ("net_benefit", "capacity", "subgroups")


def clinical_report(
    frame: pd.DataFrame | None,
    y_true: Sequence | np.ndarray,
    scores: Mapping[str, Sequence | np.ndarray],
    thresholds: Mapping[str, float],
    *,
    groups: Sequence | np.ndarray | None = None,
    names: Mapping[str, str] | None = None,
    shares: Sequence[float] = CAPACITY_SHARES,
    threshold_range: Sequence[float] = THRESHOLDS,
    min_rows: int = MIN_ROWS,
) -> dict[str, Any]:
    """{net_benefit, capacity, subgroups, seconds} for `scores` ({model: P}) on the rows of
    `y_true`; `frame` holds those rows' facts (in order) for the subgroups (None, or a
    frame without the tabular columns, leaves subgroups None). `groups`: patient ids."""
    started = time.perf_counter()
    names = dict(names or {})
    out: dict[str, Any] = {
        "net_benefit": decision_curves(
            y_true, scores, thresholds=threshold_range, groups=groups, names=names
        ),
        "capacity": capacity_table(y_true, scores, shares=shares, groups=groups),
        "subgroups": None,
    }
    if frame is not None and len(frame) and {"age", "gender"} <= set(frame.columns):
        out["subgroups"] = subgroup_report(
            frame, y_true, scores, thresholds, groups=groups, names=names, min_rows=min_rows
        )
    out["seconds"] = round(time.perf_counter() - started, 3)
    return out
