"""Compare results in words: the side-by-side cards of one statement (P with a gauge, the
prediction at the model's threshold and where that threshold came from, the base rate, the
calibration or blend line its scorer wrote, why the generative word can differ from the
prediction, the data set's outcome, how the score was served), the adapters' agreement, the
what-if table, and both results as flat JSON for the API. Every model text is HTML-escaped.

Nothing here imports Gradio or scores anything; it reads the result dicts of
`noshow.app.compare_single`:

    from noshow.app.compare_cards import compare_summary, render_compare_html
    html = render_compare_html(result)
    summary = compare_summary(result)
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from noshow.app.compare_slots import (
    BASELINE,
    CLASSIFIER,
    GENERATIVE,
    HYBRID,
    MODEL_NAMES,
    SLOT_TITLES,
    THRESHOLD_SOURCE,
    answers_in_words,
)
from noshow.app.compare_stacked import STACKED, stacked_title

# ----------------------------------------------------------------------------- one statement


def label_text(label: int | None) -> str:
    return {1: "No-show", 0: "Shows up"}.get(label, "-") if label is not None else "-"


def agreement_text(agree: bool | None, gen: Mapping[str, Any], clf: Mapping[str, Any]) -> str:
    if agree is None:
        return "Agreement: needs a score from both adapters."
    gap = abs(gen["p"] - clf["p"])
    if agree:
        return f"The adapters agree: {label_text(gen['label'])} (P differ by {gap:.2f})."
    return (
        f"The adapters disagree: generative says {label_text(gen['label'])}, classifier says "
        f"{label_text(clf['label'])} (P differ by {gap:.2f})."
    )


def threshold_line(slot: Mapping[str, Any], base_rate: float | None) -> str:
    """One line: what the threshold is, where it came from, and the base rate."""
    where = slot.get("threshold_source") or THRESHOLD_SOURCE
    line = f"Threshold {float(slot['threshold']):.2f}: {where}."
    if base_rate is not None:
        line += f" On average {base_rate:.0%} of appointments are missed (train split)."
    return line


def answer_line(slot: Mapping[str, Any]) -> str:
    """Why the generative adapter's word can differ from its prediction."""
    said = slot.get("generated")
    p, threshold = float(slot["p"]), float(slot["threshold"])
    rule = (
        'The word is the model\'s most likely next word: "Yes" only when P > 0.50. The '
        f"prediction compares P with the threshold {threshold:.2f} instead"
    )
    word_label = {"yes": 1, "no": 0}.get(str(said or "").strip().strip(".").lower())
    if word_label is None:
        return rule + "; here the model wrote neither Yes nor No."
    if word_label == slot["label"]:
        return rule + ", and here both say the same."
    if word_label == 0:
        return (
            rule + f", so P = {p:.2f}, between {threshold:.2f} and 0.50, gives the word "
            "No and the prediction No-show."
        )
    return rule + f", so P = {p:.2f} above 0.50 but below the threshold gives Yes and Shows up."


def timing_line(slot: Mapping[str, Any]) -> str:
    """How this card's score was served: cached, or the forward's time, size and wait."""
    short = str(slot.get("weights") or "").split(",")[0].split(" (")[0]
    weights = f" ({short} weights)" if short else ""
    if slot.get("cached"):
        return f"Answered from the cache: this statement was scored before{weights}."
    if slot.get("latency_ms") is None:
        return ""
    size = int(slot.get("batch_size") or 1)
    shared = f", one forward for {size} statements" if size > 1 else ""
    wait = slot.get("queue_ms")
    waited = f"; waited {wait:.0f} ms for the model" if wait is not None else ""
    return f"Latency: {slot['latency_ms']:.0f} ms{weights}{shared}{waited}."


def _bar(p: float, threshold: float) -> str:
    pct = max(0.0, min(1.0, p)) * 100
    mark = max(0.0, min(1.0, threshold)) * 100
    color = "#c0392b" if p >= threshold else "#2e86c1"
    return (
        '<div class="noshow-gauge" style="position:relative;height:18px;border-radius:9px;'
        'background:#e8ecf1;overflow:hidden;margin:6px 0;">'
        f'<div style="width:{pct:.1f}%;height:100%;background:{color};"></div>'
        f'<div title="threshold {threshold:.2f}" style="position:absolute;top:0;left:{mark:.1f}%;'
        'width:2px;height:100%;background:#222;"></div></div>'
    )


_NOTE = 'style="color:#57606a;font-size:0.88em;margin-top:3px;"'


def _card(
    slot: Mapping[str, Any] | None,
    title: str,
    base_rate: float | None = None,
    truth: int | None = None,
    facts_source: str | None = None,
) -> str:
    esc = html.escape
    if slot is None:
        return ""
    head = f'<div style="font-weight:600;margin-bottom:4px;">{esc(title)}</div>'
    box = (
        'style="flex:1;min-width:240px;border:1px solid #d0d7de;border-radius:10px;'
        'padding:10px 14px;"'
    )
    kind = esc(str(slot.get("approach") or ""))
    if slot.get("p") is None:
        # a baseline or hybrid without facts is expected for free text; an adapter without a
        # score is not
        style = "info" if slot.get("approach") in (BASELINE, HYBRID, STACKED) else "error"
        body = f'<div class="noshow-msg-{style}">{esc(str(slot.get("error") or "no score"))}</div>'
        return f'<div class="noshow-card" data-approach="{kind}" {box}>{head}{body}</div>'
    p, threshold = float(slot["p"]), float(slot["threshold"])
    lines = []
    if slot.get("name"):
        lines.append(f'<div style="color:#57606a;font-size:0.9em;">{esc(str(slot["name"]))}</div>')
    lines += [
        f'<div style="font-size:1.6em;font-weight:700;">P(no-show) = '
        f'<span class="noshow-p">{p:.3f}</span></div>',
    ]
    lines += [
        _bar(p, threshold),
        f"<div>Prediction: <b>{esc(label_text(slot['label']))}</b> "
        f"(P {'≥' if slot['label'] else '<'} threshold {threshold:.2f})</div>",
        f'<div class="noshow-why" {_NOTE}>{esc(threshold_line(slot, base_rate))}</div>',
    ]
    if slot.get("calibration"):
        lines.append(f'<div class="noshow-calibrated" {_NOTE}>{esc(slot["calibration"])}</div>')
    if slot.get("blend"):
        lines.append(f'<div class="noshow-blend" {_NOTE}>{esc(slot["blend"])}</div>')
    if slot.get("clinic"):
        lines.append(f'<div class="noshow-clinic" {_NOTE}>{esc(slot["clinic"])}</div>')
    if answers_in_words(slot.get("approach")):
        said = slot.get("generated")
        shown = esc(said) if said else "<i>(nothing)</i>"
        lines.append(f"<div>Generated answer: <code>{shown}</code></div>")
        lines.append(f'<div class="noshow-why" {_NOTE}>{esc(answer_line(slot))}</div>')
    if slot.get("approach") == BASELINE and facts_source:
        lines.append(f"<div {_NOTE}>Facts: {esc(facts_source)}.</div>")
    if truth is not None:
        right = int(slot["label"]) == int(truth)
        mark = "✓ matches" if right else "✗ differs from"
        lines.append(
            f'<div class="noshow-truth-{"ok" if right else "miss"}">{mark} the data set\'s '
            "outcome</div>"
        )
    timing = timing_line(slot)
    if timing:
        lines.append(f'<div class="noshow-timing" {_NOTE}>{esc(timing)}</div>')
    if slot.get("engine"):  # which CPU engine scored, and why this one (noshow.inference.cpu)
        lines.append(
            f'<details class="noshow-engine" {_NOTE}><summary>Engine</summary>'
            f"{esc(slot['engine'])}</details>"
        )
    return f'<div class="noshow-card" data-approach="{kind}" {box}>{head}{"".join(lines)}</div>'


def statement_key(statement: str) -> str:
    """A short stable id of a statement (the result's data-key: what a browser test or
    timing script waits for)."""
    import hashlib

    return hashlib.sha1(statement.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def render_compare_html(result: Mapping[str, Any]) -> str:
    """Side-by-side cards (P with a gauge, prediction, why, timing, generated text), the
    data set's outcome for a data set row, agreement and the server's time."""
    truth = result.get("truth")
    rate = result.get("base_rate")
    facts = result.get("facts_source")
    cards = [
        _card(result.get(GENERATIVE), SLOT_TITLES[GENERATIVE], rate, truth),
        _card(result.get(CLASSIFIER), SLOT_TITLES[CLASSIFIER], rate, truth),
    ]
    if result.get(BASELINE) is not None:
        cards.append(_card(result[BASELINE], SLOT_TITLES[BASELINE], rate, truth, facts))
    hybrids = [
        _card(slot, f"Hybrid: {approach} + tabular", rate, truth)
        for approach, slot in (result.get(HYBRID) or {}).items()
    ]
    hybrids += [
        _card(slot, stacked_title(key), rate, truth)
        for key, slot in (result.get(STACKED) or {}).items()
    ]
    parts = []  # the notice (text cut, not English, ...) is the message box's, shown once
    if truth is not None:
        where = f" ({html.escape(str(facts))})" if facts else ""
        outcome = "missed the appointment" if int(truth) else "showed up"
        parts.append(
            f'<div class="noshow-msg-info noshow-truth">In the data set this patient '
            f"<b>{outcome}</b>{where}: true label {label_text(int(truth))}.</div>"
        )
    row = '<div style="display:flex;gap:12px;flex-wrap:wrap;margin-bottom:12px;">{}</div>'
    parts.append(row.format("".join(cards)))
    if hybrids:  # a row of their own: each blends a card above with the baseline
        parts.append(row.format("".join(hybrids)))
    kind = "ok" if result.get("agree") else ("error" if result.get("agree") is False else "info")
    parts.append(
        f'<div class="noshow-msg-{kind}" style="margin-top:8px;">'
        f"{html.escape(result.get('agree_text') or '')}</div>"
    )
    if result.get("server_ms") is not None:
        parts.append(
            f'<div class="noshow-server-time" {_NOTE}>Answered in '
            f"{float(result['server_ms']):.0f} ms on the server.</div>"
        )
    key = statement_key(str(result.get("statement", "")))
    return f'<div class="noshow-result" data-key="{key}">{"".join(parts)}</div>'


SUMMARY_SLOT_KEYS = (
    "name",
    "p",
    "calibration",
    "blend",
    "clinic",
    "p_unadjusted",
    "threshold",
    "threshold_source",
    "label",
    "latency_ms",
    "queue_ms",
    "batch_size",
    "cached",
    "generated",
    "weights",
    "engine",
    "error",
)


def compare_summary(result: Mapping[str, Any]) -> dict[str, Any]:
    """A flat JSON summary of a comparison (what the API returns next to the HTML)."""
    out: dict[str, Any] = {
        "statement": result["statement"],
        "notice": result.get("notice"),
        "agree": result.get("agree"),
        "facts_source": result.get("facts_source"),
        "row": result.get("row"),
        "truth": result.get("truth"),
        "base_rate": result.get("base_rate"),
        "clinic_rate": result.get("clinic_rate"),
        "server_ms": result.get("server_ms"),
    }
    for key in (GENERATIVE, CLASSIFIER, BASELINE):
        slot = result.get(key)
        if slot is None:
            continue
        out[key] = {k: slot.get(k) for k in SUMMARY_SLOT_KEYS if k in slot}
    for key in (HYBRID, STACKED):
        out[key] = {
            name: {k: slot.get(k) for k in SUMMARY_SLOT_KEYS if k in slot}
            for name, slot in (result.get(key) or {}).items()
        }
    return out


# ----------------------------------------------------------------------------- what-if

WHAT_IF_NOTE = (
    "These are the models' predictions for the changed statement, not the effect the change "
    "would have: the models learned associations in past appointments (reminders, for "
    "example, went to appointments booked further ahead), which need not be causes."
)


def render_what_if_html(result: Mapping[str, Any]) -> str:
    """A table: per model, P(no-show) now, P with the fact changed, and the difference."""
    esc = html.escape
    rows = []
    for key, (before, after) in result["models"].items():
        name = MODEL_NAMES.get(key, key)
        if before.get("p") is None or after.get("p") is None:
            error = before.get("error") or after.get("error") or "no score"
            rows.append(
                f'<tr data-model="{esc(key)}"><td>{esc(name)}</td>'
                f'<td colspan="4" class="noshow-msg-error">{esc(str(error))}</td></tr>'
            )
            continue
        p0, p1 = float(before["p"]), float(after["p"])
        delta = p1 - p0
        arrow = "↑" if delta > 0.0005 else ("↓" if delta < -0.0005 else "→")
        color = "#c0392b" if delta > 0.0005 else ("#2e86c1" if delta < -0.0005 else "#57606a")
        rows.append(
            f'<tr data-model="{esc(key)}"><td>{esc(name)}</td>'
            f'<td class="noshow-p-before">{p0:.3f}</td>'
            f'<td class="noshow-p-after">{p1:.3f}</td>'
            f'<td style="color:{color};font-weight:600;">{arrow} {delta:+.3f}</td>'
            f"<td>{esc(label_text(before.get('label')))} → {esc(label_text(after.get('label')))}"
            "</td></tr>"
        )
    head = (
        f"<div>If <b>{esc(result['fact'])}</b> were <b>{esc(result['new'])}</b> instead of "
        f"<b>{esc(result['old'])}</b>, the models would predict:</div>"
    )
    table = (
        '<table class="noshow-what-if" style="border-collapse:collapse;margin:6px 0;">'
        "<thead><tr><th>model</th><th>P(no-show) now</th><th>P if changed</th>"
        "<th>change</th><th>prediction</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    note = f'<div class="noshow-why" {_NOTE}>{esc(WHAT_IF_NOTE)}</div>'
    changed = f"<details><summary>Changed statement</summary>{esc(result['after'])}</details>"
    return f'<div class="noshow-what-if-result">{head}{table}{note}{changed}</div>'


def what_if_summary(result: Mapping[str, Any]) -> dict[str, Any]:
    """The what-if as flat JSON: per model P before and after and the difference."""
    models = {}
    for key, (before, after) in result["models"].items():
        p0, p1 = before.get("p"), after.get("p")
        models[key] = {
            "p_before": p0,
            "p_after": p1,
            "delta": None if p0 is None or p1 is None else p1 - p0,
            "label_before": before.get("label"),
            "label_after": after.get("label"),
            "error": before.get("error") or after.get("error"),
        }
    return {
        "fact": result["fact"],
        "old": result["old"],
        "new": result["new"],
        "statement_after": result["after"],
        "models": models,
    }
