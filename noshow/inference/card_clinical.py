"""The parts of a model card that report an adapter like a clinical prediction model (the
items of TRIPOD+AI that apply): net benefit against calling everyone or no one, capacity
(no-shows reached when the top K% are called), performance by subgroup with the groups
that differ named, and a checklist that points each item to its section.

    from noshow.inference.card_clinical import clinical_card, render_clinical_sections
    card["clinical"] = clinical_card(report, rows_note="the run's test split")
    lines = render_clinical_sections(card)     # Markdown lines for the card's body

`clinical_card` keeps what the card shows from eval.json's `net_benefit`, `capacity` and
`subgroups` (noshow.evaluation.clinical); `noshow.inference.model_card` calls both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

CARD_THRESHOLDS = (0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.40, 0.50)
CARD_MODELS = {
    "model": "This adapter",
    "hybrid": "Hybrid",
    "stacked": "Stacked",
    "baseline": "Tuned tabular",
}
NET_BENEFIT_PNG = "net_benefit.png"
# TRIPOD+AI items a shipped adapter's card answers, and where.
TRIPOD_ITEMS = (
    ("Intended use, users and not-for-use", "Intended use and limits"),
    ("Data source and its period", "At a glance (data set)"),
    ("Split into development and evaluation data", "At a glance (split)"),
    ("Outcome and predictors", "Input"),
    ("Model and how it was fitted", "How it was made"),
    ("Performance with intervals", "Test metrics next to the tabular baseline"),
    ("Calibration", "Test metrics (Brier, ECE) and Calibration"),
    ("Clinical usefulness", "Net benefit; Capacity"),
    ("Fairness: performance by subgroup", "Subgroups"),
    ("Limitations", "Intended use and limits"),
)


def _pick(curve: Mapping[str, Any], thresholds: Sequence[float], index: dict) -> dict:
    return {
        k: [curve[k][index[t]] if t in index else None for t in thresholds]
        for k in ("net_benefit", "low", "high")
        if k in curve
    }


def clinical_card(report: Mapping[str, Any], rows_note: str | None = None) -> dict[str, Any] | None:
    """The card's clinical sections from a report with `net_benefit`, `capacity` and
    `subgroups`; None when the report predates them."""
    nb = report.get("net_benefit")
    if not nb:
        return None
    index = {round(t, 4): i for i, t in enumerate(nb["thresholds"])}
    thresholds = [t for t in CARD_THRESHOLDS if round(t, 4) in index]
    keys = [k for k in CARD_MODELS if k in nb["models"]]
    subgroups = report.get("subgroups") or {}
    return {
        "rows": (report.get("model") or {}).get("n"),
        "positives": (report.get("model") or {}).get("positives"),
        "rows_note": rows_note or "the run's test split",
        "net_benefit": {
            "thresholds": thresholds,
            "interval": nb["interval"],
            "models": {k: _pick(nb["models"][k], thresholds, index) for k in keys},
            "call_everyone": _pick(nb["call_everyone"], thresholds, index),
            "ranges": nb["ranges"],
            "text": nb["text"],
        },
        "capacity": report.get("capacity"),
        "subgroups": {
            "interval": subgroups.get("interval"),
            "min_rows": subgroups.get("min_rows"),
            "overall": subgroups.get("overall"),
            "groups": subgroups.get("groups") or [],
            "findings": subgroups.get("findings") or [],
        }
        if subgroups
        else None,
    }


def _pct(v: Any) -> str:
    return "n/a" if v is None else f"{v * 100:.0f}%"


def _nb(v: Any, low: Any = None, high: Any = None) -> str:
    if v is None:
        return "n/a"
    span = f" ({low * 100:.1f} to {high * 100:.1f})" if low is not None and high is not None else ""
    return f"{v * 100:.1f}{span}"


def render_clinical_sections(card: Mapping[str, Any]) -> list[str]:
    """Markdown lines: Net benefit, Capacity, Subgroups, Reporting checklist; [] without
    `card["clinical"]`."""
    c = card.get("clinical")
    if not c:
        return []
    files = (card.get("weights") or {}).get("files") or {}
    out = ["", "## Net benefit", ""]
    nb = c["net_benefit"]
    out.append(
        f"Is acting on this adapter better than calling every patient, or none? Decision "
        f"curves on {c['rows_note']} ({c['rows']:,} appointments), net no-shows reached per "
        "100 appointments (95% CI, clustered by patient). A threshold of 20% means calling "
        "a patient whose predicted risk is 20% or more: one call is worth four wasted. "
        f"**{nb['text']}**"
    )
    out += [
        "",
        "| Threshold | "
        + " | ".join(CARD_MODELS[k] for k in nb["models"])
        + " | Call everyone | Call no one |",
    ]
    out.append("|---|" + "---|" * (len(nb["models"]) + 2))
    for j, t in enumerate(nb["thresholds"]):
        cells = [_nb(m["net_benefit"][j], m["low"][j], m["high"][j]) for m in nb["models"].values()]
        cells.append(_nb(nb["call_everyone"]["net_benefit"][j]))
        out.append(f"| {t * 100:.0f}% | " + " | ".join(cells) + " | 0.0 |")
    if NET_BENEFIT_PNG in files or c.get("figure"):
        out += [
            "",
            f"![Net benefit of this adapter, its hybrid and the tabular model]({NET_BENEFIT_PNG})",
        ]
    cap = c.get("capacity")
    if cap:
        out += ["", "## Capacity", ""]
        out.append(
            "A clinic can call only so many patients. Share of all no-shows reached when the "
            "top K% of appointments by P are called, and calls made per no-show reached (95% "
            f"CI; {cap['interval']}, the called appointments held fixed)."
        )
        keys = [k for k in CARD_MODELS if k in cap["models"]]
        out += ["", "| Calls | " + " | ".join(CARD_MODELS[k] for k in keys) + " | At random |"]
        out.append("|---|" + "---|" * (len(keys) + 1))
        for j, share in enumerate(cap["shares"]):
            cells = []
            for k in keys:
                r = cap["models"][k][j]
                per = r["calls_per_no_show"]
                cells.append(
                    f"{_pct(r['recall'])} ({_pct(r['recall_low'])}-{_pct(r['recall_high'])}); "
                    + (f"{per:.1f} calls each" if per else "none reached")
                )
            rand = cap["random"][j]["calls_per_no_show"]
            cells.append(f"{_pct(share)}; {rand:.1f} calls each" if rand else _pct(share))
            out.append(f"| top {share * 100:g}% | " + " | ".join(cells) + " |")
    sub = c.get("subgroups")
    if sub and sub.get("groups"):
        out += ["", "## Subgroups", ""]
        out.append(
            "Does it work as well for everyone? This adapter by subgroup: ROC-AUC, the observed "
            "no-show rate against its mean predicted P, and the share flagged at its threshold "
            f"({sub['interval']}; neighbourhoods with fewer than {sub['min_rows']} appointments "
            "pooled). Groups whose figure differs from the whole set's beyond the group's "
            "interval:"
        )
        findings = [f for f in sub["findings"] if "this adapter" in f.lower()]
        out += [""] + ([f"- {f}" for f in findings] or ["- none on these rows."])
        out += [
            "",
            "| Group | Appointments | No-shows | ROC-AUC (95% CI) | Observed | Predicted | Flagged |",
            "|---|---|---|---|---|---|---|",
        ]
        whole = (sub.get("overall") or {}).get("model") or {}
        rows = [("all appointments", c["rows"], c.get("positives"), whole)]
        rows += [
            (g["group"], g["n"], g["positives"], g["models"].get("model") or {})
            for g in sub["groups"]
        ]
        for group, n, pos, fig in rows:
            auc = "n/a"
            if fig.get("auc") is not None:
                auc = f"{fig['auc']:.3f} ({fig['auc_low']:.3f}-{fig['auc_high']:.3f})"
            obs = f"{_pct(fig.get('observed'))} ({_pct(fig.get('observed_low'))}-{_pct(fig.get('observed_high'))})"
            flag = f"{_pct(fig.get('flagged'))} ({_pct(fig.get('flagged_low'))}-{_pct(fig.get('flagged_high'))})"
            pos_text = f"{pos:,}" if pos is not None else "-"
            out.append(
                f"| {group} | {n:,} | {pos_text} | {auc} | {obs} | {_pct(fig.get('predicted'))} | {flag} |"
            )
    out += ["", "## Reporting checklist (TRIPOD+AI items that apply)", ""]
    out += ["| Item | Where in this card |", "|---|---|"]
    out += [f"| {item} | {where} |" for item, where in TRIPOD_ITEMS]
    return out


def write_net_benefit(report: Mapping[str, Any], path: Path) -> bool:
    """The card's decision-curve figure from a report's `net_benefit`; False without one."""
    from noshow.evaluation.decision_plots import plot_net_benefit

    curves = report.get("net_benefit")
    if not curves:
        return False
    names = {k: v for k, v in CARD_MODELS.items() if k in curves["models"]}
    plot_net_benefit(curves, names).savefig(path, dpi=80)
    return True
