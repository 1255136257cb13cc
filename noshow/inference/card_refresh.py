"""A shipped adapter's clinical card sections recomputed after shipping: its raw P on rows
of the real data scored later (an adapter shipped before eval.json had net benefit,
capacity and subgroups), through its calibration.json and hybrid.json, into card.json's
`clinical`, the README and net_benefit.png; `scripts/refresh_card_sections.py` is the CLI.

    from noshow.inference.card_refresh import refresh_clinical_sections
    card = refresh_clinical_sections("adapters/<name>", frame, {record_id: p}, "how scored")
    record_base_rate("adapters/<name>", frame)  # calibration.json made before base_rate
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from noshow.inference.card_clinical import NET_BENEFIT_PNG, clinical_card, write_net_benefit


def refresh_clinical_sections(
    adapter_dir: str | Path,
    frame: pd.DataFrame,
    raw_p: Mapping[int, float],
    rows_note: str,
    *,
    baselines: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Recompute a shipped adapter's clinical sections (its card.json `clinical`, the
    README and net_benefit.png) from the adapter's raw P on rows of `frame` (the real
    data, split by time): {record_id: P}, for rows scored after shipping. The adapter's
    calibration.json, its hybrid.json with the tuned tabular model refitted on `frame`'s
    train split (kept in `baselines` between adapters), each at the threshold its run
    chose. Returns the new card."""
    import json

    from noshow.evaluation.baseline import baseline_predict, refit_tuned_baseline
    from noshow.evaluation.calibration import Calibrator
    from noshow.evaluation.clinical import clinical_report
    from noshow.evaluation.hybrid import Hybrid
    from noshow.evaluation.report import REPORT_NAMES
    from noshow.inference.model_card import render_model_card

    folder = Path(adapter_dir)
    card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
    rows = frame[frame["record_id"].isin(list(raw_p))].reset_index(drop=True)
    if rows.empty:
        raise ValueError(f"none of the {len(raw_p)} scored rows are in the data given.")
    calibrator = Calibrator.load(folder)
    p = calibrator.apply(rows["record_id"].map(raw_p).to_numpy(dtype=float))
    scores = {"model": p}
    thresholds = {"model": float(calibrator.threshold or card["threshold"])}
    hybrid = Hybrid.load(folder)
    if hybrid is not None and hybrid.baseline_params:
        key = json.dumps(hybrid.baseline_params, sort_keys=True)
        cache = baselines if baselines is not None else {}
        if key not in cache:
            cache[key] = refit_tuned_baseline(
                frame[frame["split"] == "train"], hybrid.baseline_params
            )
        tuned = np.asarray(baseline_predict(cache[key], rows), dtype=float)
        scores["hybrid"] = hybrid.predict(p, tuned)
        thresholds["hybrid"] = float(hybrid.threshold)
        scores["baseline"] = tuned
        thresholds["baseline"] = float(card["test_metrics"]["baseline"]["threshold"])
    sections = clinical_report(
        rows,
        rows["no_show"].to_numpy(),
        scores,
        thresholds,
        groups=rows["patient_id"].to_numpy(),
        names=REPORT_NAMES,
    )
    report = {**sections, "model": {"n": len(rows), "positives": int(rows["no_show"].sum())}}
    card["clinical"] = clinical_card(report, rows_note=rows_note)
    if write_net_benefit(report, folder / NET_BENEFIT_PNG):
        card["clinical"]["figure"] = NET_BENEFIT_PNG
    (folder / "card.json").write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    render_model_card(card).save(folder / "README.md")
    return card


def record_base_rate(adapter_dir: str | Path, frame: pd.DataFrame) -> float | None:
    """For an adapter whose calibration.json predates `base_rate` (the no-show rate of the
    rows it was calibrated on, what a clinic's own rate replaces): the rate of the split
    those rows were drawn from, the validation split of `frame` (the real data split by
    time, as its run split it), written with where it came from. Returns the rate written,
    or None when the file already has one."""
    import json

    from noshow.evaluation.calibration import CALIBRATION_FILE
    from noshow.system.files import write_json_atomic

    path = Path(adapter_dir) / CALIBRATION_FILE
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("base_rate") is not None:
        return None
    validation = frame.loc[frame["split"] == "validation", "no_show"]
    if validation.empty:
        raise ValueError("the data given has no validation split to take the base rate from.")
    data["base_rate"] = float(validation.mean())
    data["base_rate_source"] = (
        f"the no-show rate of the time split's {len(validation):,} validation rows, which the "
        f"{data.get('rows', 0):,} calibration rows were drawn from (recorded after shipping)"
    )
    write_json_atomic(path, data)
    # the card holds the calibration's figures and each shipped file's hash: both follow
    from noshow.inference.model_card import render_model_card
    from noshow.inference.ship import sha256_file

    card_path = Path(adapter_dir) / "card.json"
    card = json.loads(card_path.read_text(encoding="utf-8"))
    card.setdefault("calibration", {}).update(
        base_rate=data["base_rate"], base_rate_source=data["base_rate_source"]
    )
    files = card.get("weights", {}).get("files", {})
    if CALIBRATION_FILE in files:
        files[CALIBRATION_FILE].update(bytes=path.stat().st_size, sha256=sha256_file(path))
    card_path.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    render_model_card(card).save(Path(adapter_dir) / "README.md")
    return data["base_rate"]
