"""A clinic's own no-show rate on the Compare tab: every card's P moved from the rate of the
appointments its model was calibrated on to the clinic's (`noshow.evaluation.recalibration.
shift_prior`, prior-probability shift), its threshold moved the same way so the prediction
stays, and a line saying so. The adapters' rate is the one their calibration.json records,
the hybrids' and stacked models' the same (fitted on those validation rows), the tabular
baseline's the loaded data's train split.

Nothing here imports Gradio:

    from noshow.app.compare_clinic import parse_clinic_rate, adjust_to_clinic
    rate = parse_clinic_rate(box_value)              # None when the box is empty
    adjust_to_clinic(result, rate, predictors)       # result of compare_statement, in place
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from noshow.app.compare_input import CompareInputError
from noshow.app.compare_slots import BASELINE, BOTH, CLASSIFIER, GENERATIVE, HYBRID, STACKED
from noshow.evaluation.recalibration import (
    PRIOR_SHIFT_TEXT,
    RecalibrationError,
    check_rate,
    describe_prior_shift,
    shift_prior,
)

CLINIC_RATE_LABEL = "Your clinic's no-show rate (optional: e.g. 15% or 0.15)"
CLINIC_RATE_INFO = PRIOR_SHIFT_TEXT
NO_RATE = (
    "Not adjusted to your clinic's rate: this adapter was made before its calibration "
    "recorded the no-show rate it was calibrated on (scripts/refresh_card_sections.py "
    "records it for a shipped adapter)."
)


def clinic_rate_problem(value: Any) -> str | None:
    """Why the box's rate cannot be read, or None when it can (empty included)."""
    try:
        parse_clinic_rate(value)
    except CompareInputError as e:
        return str(e)
    return None


def parse_clinic_rate(value: Any) -> float | None:
    """The rate typed in the box: None when empty, else a share in (0, 1) ("15%" is 0.15);
    CompareInputError saying how to write it otherwise."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str) and value.strip().endswith("%"):
        typed = value.strip()
        try:
            value = float(typed[:-1].replace(",", ".")) / 100
        except ValueError:
            raise CompareInputError(
                f"The clinic's no-show rate must be a percentage like 15% or a share like "
                f"0.15, got {typed[:40]!r}."
            ) from None
        if not 0 < value < 1:  # a percentage gets a percentage's range, not a share's hint
            raise CompareInputError(
                f"The clinic's no-show rate must be a percentage strictly between 0% and "
                f"100%, got {typed[:40]!r}."
            )
    try:
        return check_rate(value, "clinic's no-show rate")
    except RecalibrationError as e:
        raise CompareInputError(str(e)[:1].upper() + str(e)[1:]) from e


def calibrated_rate(predictor: Any) -> float | None:
    """The no-show rate an adapter's P is calibrated to (its calibration.json), or None."""
    return getattr(getattr(predictor, "calibrator", None), "base_rate", None)


def adjust_slot(slot: dict[str, Any], from_rate: float | None, to_rate: float) -> None:
    """One card at the clinic's rate, in place: P and threshold through the same odds
    factor (so the label stays), the unadjusted P kept as `p_unadjusted`, `clinic` saying
    what was done. A card without a score is left alone."""
    if slot.get("p") is None:
        return
    if from_rate is None:
        slot["clinic"] = NO_RATE
        return
    p = float(shift_prior(slot["p"], from_rate, to_rate))
    slot["p_unadjusted"], slot["p"] = slot["p"], p
    if slot.get("threshold") is not None:
        slot["threshold"] = float(shift_prior(slot["threshold"], from_rate, to_rate))
    slot.pop("calibration", None)  # its "of 100 like this one" spoke of the unadjusted P
    slot["clinic"] = (
        f"{describe_prior_shift(from_rate, to_rate)} Of 100 appointments scored like this one "
        f"at your clinic, about {round(100 * p)} would be missed; the threshold moved with P, "
        "so the prediction is unchanged."
    )


def _slots(result: Mapping[str, Any], rates: Mapping[str, float | None]) -> Iterable[tuple]:
    """(slot, the rate its P is calibrated to) for every card of a Compare result."""
    for approach in (GENERATIVE, CLASSIFIER):
        if result.get(approach) is not None:
            yield result[approach], rates.get(approach)
    if result.get(BASELINE) is not None:
        yield result[BASELINE], result.get("base_rate")
    for approach, slot in (result.get(HYBRID) or {}).items():
        yield slot, rates.get(approach)
    for key, slot in (result.get(STACKED) or {}).items():
        yield slot, rates.get(GENERATIVE if key == BOTH else key)


def adjust_to_clinic(
    result: dict[str, Any], clinic_rate: float | None, predictors: Mapping[str, Any]
) -> dict[str, Any]:
    """A Compare result with every card moved to `clinic_rate` (in place; returned). The
    adapters' rates come from `predictors` ({approach: predictor}); nothing changes when
    `clinic_rate` is None."""
    result["clinic_rate"] = clinic_rate
    if clinic_rate is None:
        return result
    rates = {approach: calibrated_rate(p) for approach, p in predictors.items()}
    for slot, rate in _slots(result, rates):
        adjust_slot(slot, rate, clinic_rate)
    return result


def adjust_pairs_to_clinic(
    models: Mapping[str, tuple[dict[str, Any], dict[str, Any]]],
    clinic_rate: float | None,
    predictors: Mapping[str, Any],
    base_rate: float | None,
) -> None:
    """The what-if's (before, after) slots per model at `clinic_rate`, in place."""
    if clinic_rate is None:
        return
    rates = {approach: calibrated_rate(p) for approach, p in predictors.items()}
    rates[BASELINE] = base_rate
    for key, pair in models.items():
        for slot in pair:
            adjust_slot(slot, rates.get(key), clinic_rate)
