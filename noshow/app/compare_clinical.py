"""The batch view's sections a clinic acts on, from the batch's own scored rows: net benefit
(a plot and a sentence on which policy is best where), capacity (the share of no-shows
reached and calls per no-show when the top K% are called, for the shares a clinic picks)
and subgroups (per age band, gender, reminder, scholarship, neighbourhood, lead time and
first visit: ROC-AUC, observed against predicted, share flagged, each with a 95% interval,
and the groups that differ named in words). The figures come from
`noshow.evaluation.clinical.clinical_report`, the same function eval.json's sections do.

Nothing here imports Gradio:

    from noshow.app.compare_clinical import batch_clinical, capacity_view, subgroup_view
    clinical = batch_clinical(result, rows)     # after batch_compare
    table, sentence, figure = capacity_view(clinical, 0.1)
    table, figure = subgroup_view(clinical, "classifier")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from noshow.app.compare_slots import (
    BASELINE,
    CLASSIFIER,
    GENERATIVE,
    TUNED_BASELINE,
    model_name,
)

CAPACITY_DEFAULT = 0.10  # where the capacity control starts: a tenth of the day's list
# How a sentence names each model of a batch (model_name gives the tables' short names).
SENTENCE_NAMES = {
    GENERATIVE: "generative adapter",
    CLASSIFIER: "classifier adapter",
    BASELINE: "untuned tabular baseline",
    TUNED_BASELINE: "tuned tabular model",
}


def sentence_name(key: str) -> str:
    """A batch model's name in a sentence: "classifier adapter", "tuned tabular model",
    "hybrid (classifier + tabular)"."""
    return SENTENCE_NAMES.get(key) or model_name(key)


def tuned_tabular(
    adapters: Mapping[str, Any], rows: pd.DataFrame, tuned_baselines: Any
) -> tuple[np.ndarray, float] | None:
    """(P on `rows`, threshold) of the tuned tabular model the adapters' hybrids blend (the
    settings in their hybrid.json, refitted once by `tuned_baselines`); None when no adapter
    names one or it cannot be had (the hybrid's own row says why)."""
    for predictor in adapters.values():
        hybrid = getattr(predictor, "hybrid", None)
        if hybrid is None or not hybrid.baseline_params or tuned_baselines is None:
            continue
        baseline = tuned_baselines(hybrid.baseline_params)
        if baseline is None or baseline.model is None:
            continue
        try:
            return np.asarray(baseline.predict(rows), dtype=float), float(baseline.threshold)
        except Exception:  # noqa: BLE001 - rows without tabular columns: no tuned row
            return None
    return None


@dataclass
class BatchClinical:
    """A batch's clinical sections and what the capacity and subgroup controls redraw from."""

    report: dict[str, Any]  # clinical_report(...): net_benefit, capacity, subgroups, seconds
    labels: np.ndarray
    scores: dict[str, np.ndarray]
    groups: np.ndarray | None
    names: dict[str, str] = field(default_factory=dict)
    rows: pd.DataFrame | None = None  # the batch's rows, for the facts' average


def batch_clinical(result: Any, rows: pd.DataFrame) -> BatchClinical:
    """Net benefit, capacity and subgroups of every model of a `BatchResult` on its rows
    (`rows`: what `select_eval_rows` gave, in the same order), clustered by patient."""
    from noshow.evaluation.clinical import clinical_report

    preds = result.predictions
    labels = preds["label"].to_numpy().astype(int)
    scores = {key: preds[f"p_{key}"].to_numpy(dtype=float) for key in result.per_model}
    thresholds = {key: float(m["threshold"]) for key, m in result.per_model.items()}
    groups = rows["patient_id"].to_numpy() if "patient_id" in rows.columns else None
    names = {key: sentence_name(key) for key in scores}
    report = clinical_report(rows, labels, scores, thresholds, groups=groups, names=names)
    return BatchClinical(
        report=report, labels=labels, scores=scores, groups=groups, names=names, rows=rows
    )


# ----------------------------------------------------------------------------- net benefit


def net_benefit_view(clinical: BatchClinical) -> tuple[Any, str]:
    """(decision-curve figure, the sentence under it)."""
    from noshow.evaluation.decision_plots import plot_net_benefit

    curves = clinical.report["net_benefit"]
    figure = plot_net_benefit(curves, {k: model_name(k) for k in clinical.scores})
    text = (
        f"**Net benefit.** {curves['text']} A threshold of 20% means calling a patient whose "
        "risk of missing is 20% or more: one call is worth making for every four wasted "
        "(odds 20:80). Net benefit counts the no-shows reached per appointment, less the "
        f"wasted calls at those odds; bands are {curves['interval']}s."
    )
    return figure, text


# ----------------------------------------------------------------------------- capacity


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.0f}%"


def _span(low: float | None, high: float | None, fmt: str = "pct") -> str:
    if low is None or high is None:
        return ""
    if fmt == "pct":
        return f" ({low * 100:.0f}-{high * 100:.0f}%)"
    return f" ({low:.1f}-{high:.1f})"


def capacity_shares(share: float | None) -> list[float]:
    """The table's shares: 5, 10, 20, 30% and the clinic's own, sorted."""
    from noshow.evaluation.decision import CAPACITY_SHARES

    picked = {round(float(s), 4) for s in CAPACITY_SHARES}
    if share is not None and 0 < float(share) <= 1:
        picked.add(round(float(share), 4))
    return sorted(picked)


def capacity_view(clinical: BatchClinical, share: float | None = CAPACITY_DEFAULT) -> tuple:
    """(table, sentence, figure) for calling the top 5/10/20/30% and the clinic's `share`:
    one row per model and one for calling at random; each cell the share of no-shows
    reached (95% CI) and calls per no-show reached (95% CI)."""
    from noshow.evaluation.decision import capacity_table, describe_capacity
    from noshow.evaluation.decision_plots import plot_capacity

    shares = capacity_shares(share)
    cap = capacity_table(clinical.labels, clinical.scores, shares=shares, groups=clinical.groups)
    table = []
    for key, rows in cap["models"].items():
        line = {"model": model_name(key)}
        for r in rows:
            per = r["calls_per_no_show"]
            per_text = "none reached" if per is None else f"{per:.1f}"
            span = _span(r["calls_per_no_show_low"], r["calls_per_no_show_high"], "num")
            line[f"top {r['share'] * 100:g}% ({r['called']:,} calls)"] = (
                f"{_pct(r['recall'])}{_span(r['recall_low'], r['recall_high'])}; "
                f"{per_text}{span} calls"
            )
        table.append(line)
    random = {"model": "calling at random"}
    for r, column in zip(cap["random"], list(table[0])[1:], strict=True):
        per = r["calls_per_no_show"]
        random[column] = f"{_pct(r['recall'])}; " + (f"{per:.1f} calls" if per else "none")
    table.append(random)
    chosen = share if share is not None else CAPACITY_DEFAULT
    names = {k: sentence_name(k) for k in clinical.scores}
    sentence = describe_capacity(cap, round(float(chosen), 4), names)
    figure = plot_capacity(
        clinical.labels,
        clinical.scores,
        {k: model_name(k) for k in clinical.scores},
        mark=float(chosen),
    )
    note = (
        f"**Capacity.** {sentence} Each cell: the share of all no-shows reached (95% CI); "
        f"calls made per no-show reached (95% CI). Intervals: {cap['interval']}, with the "
        "called appointments held fixed."
    )
    return pd.DataFrame(table), note, figure


# ----------------------------------------------------------------------------- subgroups


def _auc_text(fig: Mapping[str, Any]) -> str:
    if fig.get("auc") is None:
        return "n/a (one outcome only)"
    span = ""
    if fig.get("auc_low") is not None and fig.get("auc_high") is not None:
        span = f" ({fig['auc_low']:.2f}-{fig['auc_high']:.2f})"
    return f"{fig['auc']:.2f}{span}"


def _rate_text(fig: Mapping[str, Any], name: str) -> str:
    return f"{_pct(fig.get(name))}{_span(fig.get(f'{name}_low'), fig.get(f'{name}_high'))}"


def subgroup_view(clinical: BatchClinical, model: str | None = None) -> tuple[pd.DataFrame, str]:
    """(table for one model, the differences in words for every model). The table: one row
    per subgroup (and the whole set first) with ROC-AUC, observed and predicted no-show
    rates, the share flagged at the model's threshold, each with its 95% interval, and
    which figure differs from the whole set's beyond the group's interval."""
    report = clinical.report.get("subgroups")
    if not report:
        return pd.DataFrame(), "No subgroups: these rows carry no tabular facts."
    keys = list(report["overall"])
    model = model if model in keys else keys[0]
    flagged: dict[tuple[str, str], list[str]] = {}
    for f in report["flags"]:
        if f["model"] == model:
            word = {"auc": "ROC-AUC", "gap": "calibration", "flagged": "share flagged"}
            flagged.setdefault((f["by"], f["group"]), []).append(word[f["metric"]])
    lines = []
    whole = report["overall"][model]
    lines.append(_subgroup_row("All", "all appointments", len(clinical.labels), None, whole, []))
    for g in report["groups"]:
        fig = g["models"][model]
        marks = flagged.get((g["by"], g["group"]), [])
        lines.append(_subgroup_row(g["by_title"], g["group"], g["n"], g["positives"], fig, marks))
    lines[0]["no-shows"] = int(clinical.labels.sum())
    from noshow.evaluation.subgroups import MAX_FINDINGS, describe_flags

    mine = [f for f in report["flags"] if f["model"] == model][:MAX_FINDINGS]
    findings = describe_flags(mine, clinical.names)
    head = (
        f"**Subgroups of the {clinical.names.get(model, model)}** ({report['interval']}; "
        f"neighbourhoods with fewer than {report['min_rows']} appointments pooled). "
    )
    if not findings:
        return pd.DataFrame(lines), head + "No group differs from the whole set beyond its "
        "interval on these rows."
    text = head + "Where a group differs from the whole set beyond its interval:\n\n"
    return pd.DataFrame(lines), text + "\n".join(f"- {f}" for f in findings)


def _subgroup_row(
    by: str,
    group: str,
    n: int,
    positives: int | None,
    fig: Mapping[str, Any],
    marks: Sequence[str],
) -> dict[str, Any]:
    return {
        "subgroup": by,
        "group": group,
        "appointments": int(n),
        "no-shows": positives,
        "ROC-AUC (95% CI)": _auc_text(fig),
        "observed no-show rate": _rate_text(fig, "observed"),
        "mean predicted P": _pct(fig.get("predicted")),
        "flagged at threshold": _rate_text(fig, "flagged"),
        "differs from all": ", ".join(marks),
    }


def subgroup_choices(clinical: BatchClinical | None) -> list[tuple[str, str]]:
    """(label, key) of the models the subgroup table can show."""
    if clinical is None:
        return []
    return [(model_name(k), k) for k in clinical.scores]


def default_subgroup_model(clinical: BatchClinical | None) -> str | None:
    """The classifier adapter when it scored, else the first model."""
    if clinical is None or not clinical.scores:
        return None
    return CLASSIFIER if CLASSIFIER in clinical.scores else next(iter(clinical.scores))
