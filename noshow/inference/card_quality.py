"""The model card's sections on the hybrid variants and on calibration that follows the clinic,
from card.json (what the run's eval.json reported): the stacked model against its parts, both
adapters together (when `scripts/stack_adapters.py --into-runs` stored it), the test ECE
uncalibrated, calibrated once and recalibrated as outcomes arrive, each with its interval,
and how to give the adapter a clinic's own no-show rate.

    from noshow.inference.card_quality import quality_sections
    lines = quality_sections(card)      # Markdown lines; [] for a card without these figures

`noshow.inference.model_card` renders them after the test metrics.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from noshow.evaluation.metrics import format_auc
from noshow.evaluation.recalibration import PRIOR_SHIFT_TEXT, VARIANT_NAMES

CARD_KEYS = ("stacked_model", "recalibration", "two_adapters")  # eval.json -> card.json


def _interval(figure: Mapping[str, Any] | None) -> str:
    if not figure:
        return "n/a"
    return f"{figure['estimate']:.3f} ({figure['low']:.3f}-{figure['high']:.3f})"


def stacked_lines(card: Mapping[str, Any]) -> list[str]:
    """The stacked model: what it is (its differences are in the card's list)."""
    metrics = (card.get("test_metrics") or {}).get("stacked")
    model = card.get("stacked_model")
    if not metrics or not model:
        return []
    trees = model.get("n_trees") or 0
    return [
        "",
        "## Stacked model",
        "",
        f"**Stacked** (`stacked.json`): gradient boosting that starts from the blend of the "
        f"tuned tabular model's and this adapter's logit and adds {trees} trees (depth "
        f"{model['settings'].get('max_depth')}) on the appointment's facts and both scores. It "
        f"was fitted on {int(model.get('rows') or 0):,} validation rows by cross-fitting "
        f"({model.get('folds')} folds of whole {model.get('fold_unit')}s): no validation row "
        "was scored by a model that saw its label, and the number of trees is the one with "
        f"the lowest held-out log-loss. Test ROC-AUC {format_auc(metrics)}; its differences "
        "to the tuned baseline, this adapter and the hybrid are listed above.",
    ]


def two_adapters_lines(card: Mapping[str, Any]) -> list[str]:
    """Both adapters together: every model on the shared test rows, and the differences."""
    two = card.get("two_adapters")
    if not two:
        return []
    model, rows = two["model"], two["rows"]
    lines = [
        "",
        "## Both adapters together",
        "",
        f"The stacked model of the tuned tabular model and both adapters "
        f"({' and '.join(two['adapters'])}; runs {', '.join(two.get('runs') or [])}), fitted "
        f"by cross-fitting on the {rows['validation']:,} validation rows both runs scored "
        f"({model['n_trees']} trees), on their {rows['test']:,} shared test rows:",
        "",
        "| Model | Test ROC-AUC (95% CI) | ECE | Brier |",
        "|---|---|---|---|",
    ]
    for key, m in two["metrics"].items():
        lines.append(
            f"| {two['names'].get(key, key)} | {format_auc(m)} | {m['ece']:.3f} | "
            f"{m['brier']:.3f} |"
        )
    lines.append("")
    lines += [f"- {d['text']}" for d in two.get("differences") or []]
    return lines


def recalibration_lines(card: Mapping[str, Any]) -> list[str]:
    """The test ECE uncalibrated, calibrated once and recalibrated day by day."""
    models = ((card.get("recalibration") or {}).get("models")) or {}
    if not models:
        return []
    names = {"model": "This adapter", "hybrid": "Hybrid", "stacked": "Stacked"}
    columns = list(VARIANT_NAMES)
    lines = [
        "",
        "## Calibration that follows the clinic",
        "",
        "A calibrator fitted once keeps the validation days' no-show rate; the test days' "
        "rate differs. Recalibrated as outcomes arrive, each test day is scored through a "
        "calibrator refitted on the outcomes of the days before it (a window of days chosen "
        "on the validation days alone): the ECE a clinic that refits every evening would "
        "see. Intervals: 95%, bootstrap over patients.",
        "",
        "| Model | " + " | ".join(VARIANT_NAMES[c].capitalize() for c in columns) + " | Window |",
        "|---|" + "---|" * (len(columns) + 1),
    ]
    for key, section in models.items():
        ece = section["ece"]
        cells = [_interval(ece.get(c)) if c in ece else "-" for c in columns]
        days = section["window_days"]
        window = "every earlier day" if not days else f"{days} day{'s' if days != 1 else ''}"
        lines.append(f"| {names.get(key, key)} | " + " | ".join(cells) + f" | {window} |")
    rates = models.get("model", next(iter(models.values())))["observed_rate"]
    lines += [
        "",
        f"Observed no-show rate: validation {rates['validation']:.3f}, test {rates['test']:.3f}.",
    ]
    lines += [f"- {d['text']}" for d in models.get("model", {}).get("differences") or []]
    return lines


def clinic_rate_lines(card: Mapping[str, Any]) -> list[str]:
    """How to give the adapter a clinic's own no-show rate, and the rate it is calibrated to."""
    rate = (card.get("calibration") or {}).get("base_rate")
    where = (
        f"This adapter's P is calibrated to a no-show rate of {rate:.1%} (its validation rows)."
        if rate
        else "This adapter's calibration.json does not record the rate its P is calibrated to "
        "(it predates that field): evaluate it again before using a clinic's rate."
    )
    name = card.get("name", "<name>")
    return [
        "",
        "## Your clinic's no-show rate",
        "",
        f"{PRIOR_SHIFT_TEXT} {where} (Prior-probability shift, Saerens et al. 2002: the odds "
        "are multiplied by the ratio of the two rates' odds.)",
        "",
        "```python",
        f'load_predictor("adapters/{name}").predict_proba([statement], clinic_rate=0.15)',
        "```",
        "",
        f"From the command line: `python scripts/score.py adapters/{name} statements.csv "
        "--clinic-rate 0.15`; in the app, the Compare tab's *Your clinic's no-show rate* box.",
    ]


def quality_sections(card: Mapping[str, Any]) -> list[str]:
    """Every section above that the card has figures for, in reading order."""
    return (
        stacked_lines(card)
        + two_adapters_lines(card)
        + recalibration_lines(card)
        + clinic_rate_lines(card)
    )
