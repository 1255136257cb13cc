"""The Compare tab's slots and the adapters that fill them. A slot is one model's answer for
one statement, as a dict: P(no-show), the label at its threshold and where that threshold
came from, what the calibration means, how it was served (latency, shared forward, cache),
the generative word, or an `error` that says why there is no score. This module names the
slots (the two adapters, the tabular baseline, each adapter's hybrid), loads an adapter for
its slot and scores statements into slots.

Model calls go through `noshow.inference.serving` (an `AdapterService`, or a loader function
wrapped in one): concurrent Compares share forwards. A missing folder, an adapter of the
wrong approach or a failed forward comes back as a message in its slot, never as an
exception. Nothing here imports Gradio:

    from noshow.app.compare_slots import GENERATIVE, load_slot, score_slot
    slot = score_slot(gen_path, GENERATIVE, "A 34-year-old woman ...", service)
    predictor, error = load_slot(gen_path, GENERATIVE, service, background=True)
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from noshow.app.compare_input import REFRESH_BUTTON
from noshow.config import APPROACHES

# How long a Compare waits for its forward before the slot says the server is too busy.
INTERACTIVE_TIMEOUT_S = 120.0
# Where an adapter's threshold comes from: training picks it on the validation split
# (noshow.evaluation.report.build_report -> choose_threshold, objective F1).
THRESHOLD_SOURCE = "chosen on the adapter's validation split, where F1 peaked"

GENERATIVE, CLASSIFIER = APPROACHES  # the two adapter slots, by approach
BASELINE = "baseline"
HYBRID = "hybrid"  # a result's {approach: slot} of the adapters that carry a hybrid.json
TUNED_BASELINE = "tuned_baseline"  # a batch's tuned tabular model (the one the hybrids blend)
STACKED = "stacked"  # a result's {approach or BOTH: slot}: noshow.app.compare_stacked
BOTH = "both"  # the stacked model of both adapters together
SLOT_TITLES = {
    GENERATIVE: "Generative adapter",
    CLASSIFIER: "Classifier adapter",
    BASELINE: "Tabular baseline",
}
MODEL_NAMES = {
    GENERATIVE: "generative",
    CLASSIFIER: "classifier",
    BASELINE: "tabular baseline",
    TUNED_BASELINE: "tuned tabular baseline",
}


def hybrid_key(approach: str) -> str:
    """A batch result's column key for the hybrid of the `approach` adapter."""
    return f"{HYBRID}_{approach}"


def stacked_key(key: str) -> str:
    """A batch result's column key for a stacked model (`key`: an approach or BOTH)."""
    return f"{STACKED}_{key}"


def model_name(key: str) -> str:
    """The display name of a batch result's model key (adapters, baseline, hybrids, stacked)."""
    if key.startswith(HYBRID + "_"):
        return f"hybrid ({key[len(HYBRID) + 1 :]} + tabular)"
    if key.startswith(STACKED + "_"):
        which = key[len(STACKED) + 1 :]
        return f"stacked ({'both adapters' if which == BOTH else which} + tabular)"
    return MODEL_NAMES.get(key, key)


Loader = Callable[..., Any]  # (path, expected_approach) -> a predictor


# ----------------------------------------------------------------------------- adapters


def as_service(source: Any = None) -> Any:
    """An `AdapterService` from `source`: a service (as is), a loader function (tests, the
    public demo's listed-only loader) or None (any folder, `get_predictor`)."""
    from noshow.inference.serving import AdapterService

    if isinstance(source, AdapterService):
        return source
    return AdapterService(loader=source)


def load_slot(
    path: Any, approach: str, source: Any = None, *, background: bool = False, owner: str = ""
) -> tuple[Any, str | None]:
    """(predictor, None) or (None, message) for the adapter chosen in one slot. `source` is an
    AdapterService or a loader (see `as_service`); the predictor's calls go through the
    scheduler, as background work (chunked, behind Compares) when `background`."""
    if not path or not str(path).strip():
        return None, (
            f"No {approach} adapter chosen: pick one from the list (press {REFRESH_BUTTON} after a "
            "training run finishes) or train one in the Train tab."
        )
    service = as_service(source)
    try:
        predictor = service.load(str(path).strip(), approach)
    except Exception as e:  # noqa: BLE001 - shown in the slot instead of a traceback
        from noshow.app.common import user_message

        return None, user_message(e)
    return service.wrap(predictor, background=background, owner=owner), None


def adapter_meta(predictor: Any) -> dict[str, Any]:
    """The adapter's noshow.json (threshold, and calibration once training stores one);
    {} for predictors without a folder (tests' fakes)."""
    folder = getattr(predictor, "adapter_dir", None)
    if folder is None:
        return dict(getattr(predictor, "meta", None) or {})
    return _read_meta(str(folder))


@functools.lru_cache(maxsize=64)
def _read_meta(folder: str) -> dict[str, Any]:
    try:
        return json.loads((Path(folder) / "noshow.json").read_text())
    except (OSError, ValueError):
        return {}


def calibration_line(calibrator: Any, p: float) -> str:
    """What this card's P means, in a clinician's words: calibrated on validation rows
    (noshow.evaluation.calibration, applied by noshow.inference.predict before any P is shown), or not."""
    if calibrator is None or getattr(calibrator, "method", "identity") == "identity":
        return (
            "Not calibrated (no calibration.json with this adapter): read P as a score for "
            "ranking patients, not as a frequency."
        )
    return (
        f"Calibrated on {int(calibrator.rows):,} validation appointments "
        f"({calibrator.method} scaling): of 100 appointments scored like this one, about "
        f"{round(100 * p)} were missed."
    )


def answers_in_words(approach: Any) -> bool:
    """Whether this card's model also answers in words (the baseline and hybrid do not)."""
    from noshow.modeling.approaches import REGISTRY

    spec = REGISTRY.get(str(approach))
    return bool(spec is not None and spec.answers_in_words)


def _slot_error(approach: str, error: str) -> dict[str, Any]:
    return {"approach": approach, "name": None, "p": None, "error": error}


def _scored_slot(approach: str, predictor: Any, path: Any, scored: Any) -> dict[str, Any]:
    """A card's data from one `noshow.inference.serving.Scored`."""
    threshold = float(getattr(predictor, "threshold", 0.5))
    meta = adapter_meta(predictor)
    p = float(scored.p)
    out: dict[str, Any] = {
        "approach": approach,
        "name": getattr(predictor, "name", None) or Path(str(path)).name,
        "p": p,
        "threshold": threshold,
        "threshold_source": meta.get("threshold_source") or THRESHOLD_SOURCE,
        "label": int(p >= threshold),
        "calibration": calibration_line(getattr(predictor, "calibrator", None), p),
        # the forward that scored it (0 when answered from the cache)
        "latency_ms": 0.0 if scored.cached else scored.run_ms,
        "queue_ms": scored.queue_ms,
        "batch_size": 0 if scored.cached else scored.batch_size,
        "cached": scored.cached,
        "generated": scored.answer if answers_in_words(approach) else None,
        "weights": getattr(predictor, "weights", None),
        "engine": getattr(predictor, "engine", None),
        "error": None,
    }
    return out


def score_statements(
    statements: Sequence[str],
    paths: Mapping[str, Any],
    source: Any = None,
    owner: str = "",
) -> dict[str, list[dict[str, Any]]]:
    """Score `statements` with the adapter chosen for each approach in `paths`
    ({approach: path}); every adapter's call is queued before any is waited for, so they
    share the scheduler's next round. Returns {approach: [slot per statement]}; a slot
    whose `error` says why it has no score (missing folder, wrong approach, scoring failed)."""
    out, pending = submit_statements(statements, paths, as_service(source), owner)
    return collect_slots(out, pending, paths, len(statements))


def score_slot(
    path: Any, approach: str, statement: str, source: Any = None, *, owner: str = ""
) -> dict[str, Any]:
    """P(no-show), label at the adapter's threshold, timing and (generative) the answer text
    for one statement (`source`: see `as_service`).

    Keys: approach, name, p, threshold, threshold_source, label, calibration, latency_ms,
    queue_ms, batch_size, cached, generated, weights, error.
    """
    return score_statements([statement], {approach: path}, source, owner)[approach][0]


def submit_statements(
    statements: Sequence[str], paths: Mapping[str, Any], service: Any, owner: str
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """Queue `statements` on every adapter in `paths` without waiting: (slots of the adapters
    that could not be queued, {approach: (predictor, future)}) for `collect_slots`. The
    caller may do other work (the baseline) while the scheduler runs the forwards."""
    out: dict[str, list[dict[str, Any]]] = {}
    pending: dict[str, Any] = {}
    for approach, path in paths.items():
        predictor, error = load_slot(path, approach, service)
        if predictor is None:
            out[approach] = [_slot_error(approach, error) for _ in statements]
            continue
        try:
            pending[approach] = (predictor, service.submit(predictor, statements, owner))
        except Exception as e:  # noqa: BLE001 - BusyError: too many waiting for this user
            from noshow.app.common import user_message

            out[approach] = [_slot_error(approach, user_message(e)) for _ in statements]
    return out, pending


def collect_slots(
    out: dict[str, list[dict[str, Any]]],
    pending: Mapping[str, Any],
    paths: Mapping[str, Any],
    n: int,
) -> dict[str, list[dict[str, Any]]]:
    """Wait for what `submit_statements` queued: {approach: [slot per statement]} in the
    order of `paths`; a timeout or a failure becomes the error of that adapter's slots."""
    for approach, (predictor, future) in pending.items():
        try:
            answers = future.result(INTERACTIVE_TIMEOUT_S)
        except TimeoutError:
            message = "no answer in time: the server is very busy; try again in a minute."
            out[approach] = [_slot_error(approach, f"Scoring failed: {message}")] * n
            continue
        except Exception as e:  # noqa: BLE001 - a scoring failure stays inside its slot
            from noshow.app.common import user_message

            message = f"Scoring failed: {user_message(e)}"
            out[approach] = [_slot_error(approach, message) for _ in range(n)]
            continue
        out[approach] = [_scored_slot(approach, predictor, paths[approach], a) for a in answers]
    return {a: out[a] for a in paths}


def missing_adapters_text(found: Mapping[str, Sequence[Any]]) -> str:
    """What to do when an approach has no finished adapter to list ("" when both have)."""
    missing = [a for a in (GENERATIVE, CLASSIFIER) if not found.get(a)]
    if not missing:
        return ""
    return (
        f"No finished {' or '.join(missing)} adapter yet: train one in the Train tab (the quick "
        f"CPU demo takes a minute), then press {REFRESH_BUTTON}."
    )
