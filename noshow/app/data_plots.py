"""The Data tab's summary plots: no-show rate by lead time, age band, weekday and SMS, and
the class balance, over the rows that match the filters (no Gradio here):

    from noshow.app.data_plots import summary_view
    figure, caption = summary_view(entry.frame, {"label": "No-show"}, entry.label)
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from noshow.app.data_views import ALL, LEAD_BUCKETS, SPLIT_CHOICES, WEEKDAYS, filter_frame

PLOT_COLUMNS = {"lead_days", "age_band", "weekday", "sms_received"}


def lead_bucket(lead_days: pd.Series) -> pd.Categorical:
    labels = [name for _, _, name in LEAD_BUCKETS]
    edges = [-0.5] + [hi + 0.5 for _, hi, _ in LEAD_BUCKETS]
    return pd.cut(lead_days, bins=edges, labels=labels)


def rate_table(frame: pd.DataFrame, by: pd.Series | str) -> pd.DataFrame:
    """No-show rate, count, and no-shows per group (groups in their natural order)."""
    key = frame[by] if isinstance(by, str) else by
    g = frame["no_show"].groupby(key, observed=True)
    return pd.DataFrame({"rate": g.mean(), "n": g.size(), "no_shows": g.sum()})


def _bar_rates(
    ax: Any,
    table: pd.DataFrame,
    title: str,
    overall: float,
    xlabel: str,
    count_label: int | None = None,
) -> None:
    """Bars of the no-show rate, each marked with its rate and size; with `count_label`
    (1 = no-show, 0 = showed up) the mark says how many rows of that label the bar holds."""
    x = np.arange(len(table))
    ax.bar(x, table["rate"].to_numpy(), color="#5b8def")
    ax.axhline(overall, color="#d9534f", linestyle="--", linewidth=1, label=f"all {overall:.1%}")
    ax.set_xticks(x, [str(i) for i in table.index], rotation=30 if len(table) > 4 else 0)
    ax.set(title=title, xlabel=xlabel, ylabel="no-show rate")
    ax.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    for xi, (rate, n, misses) in zip(x, table[["rate", "n", "no_shows"]].to_numpy(), strict=True):
        if count_label is None:
            text = f"{rate:.0%}\nn={int(n):,}"
        else:
            k = int(misses) if count_label == 1 else int(n - misses)
            text = f"{rate:.0%}\n{k:,}/{int(n):,}"
        ax.annotate(text, (xi, rate), ha="center", va="bottom", fontsize=7)
    ax.set_ylim(0, max(0.05, float(table["rate"].max()) * 1.35))
    ax.legend(fontsize="small", loc="upper left")


def _class_balance(ax: Any, frame: pd.DataFrame) -> None:
    splits = [s for s in SPLIT_CHOICES[1:] if s in set(frame["split"])]
    shows = [int(((frame["split"] == s) & (frame["no_show"] == 0)).sum()) for s in splits]
    misses = [int(((frame["split"] == s) & (frame["no_show"] == 1)).sum()) for s in splits]
    x = np.arange(len(splits))
    ax.bar(x, shows, color="#9fc5e8", label="showed up")
    ax.bar(x, misses, bottom=shows, color="#e06666", label="no-show")
    for xi, s, m in zip(x, shows, misses, strict=True):
        total = s + m
        ax.annotate(
            f"{m / total:.1%} no-show\nn={total:,}" if total else "empty",
            (xi, total),
            ha="center",
            va="bottom",
            fontsize=7,
        )
    ax.set_xticks(x, splits)
    ax.set(title="Class balance per split", ylabel="appointments")
    ax.set_ylim(
        0, max(1, max((s + m for s, m in zip(shows, misses, strict=True)), default=1)) * 1.25
    )
    ax.legend(fontsize="small", loc="upper right")


def summary_figure(frame: pd.DataFrame, title: str = "", count_label: int | None = None) -> Figure:
    """No-show rate by lead time, age band, weekday, SMS and earlier no-shows, plus the class
    balance per split; statements-only data gets the class balance alone. `count_label`
    (1 / 0) marks each bar with its rows of that label (see `summary_view`)."""
    has_features = set(frame.columns) >= PLOT_COLUMNS
    if not has_features or frame.empty:
        fig = Figure(figsize=(6, 3.6), layout="constrained")
        ax = fig.subplots()
        if frame.empty:
            ax.text(0.5, 0.5, "no rows", ha="center", va="center", transform=ax.transAxes)
        else:
            _class_balance(ax, frame)
        return fig
    fig = Figure(figsize=(15, 8), layout="constrained")
    axes = fig.subplots(2, 3).ravel()
    overall = float(frame["no_show"].mean())
    bar = functools.partial(_bar_rates, overall=overall, count_label=count_label)
    bar(
        axes[0],
        rate_table(frame, lead_bucket(frame["lead_days"])),
        "By lead time",
        xlabel="days booked ahead",
    )
    bands = rate_table(frame, "age_band")
    band_order = frame.groupby("age_band", observed=True)["age"].min().sort_values().index
    bar(axes[1], bands.loc[band_order], "By age band", xlabel="age")
    days = rate_table(frame, "weekday")
    bar(axes[2], days.loc[[d for d in WEEKDAYS if d in days.index]], "By weekday", xlabel="")
    sms = rate_table(frame, frame["sms_received"].map({0: "no SMS", 1: "SMS"}))
    bar(
        axes[3],
        sms.loc[[s for s in ("no SMS", "SMS") if s in sms.index]],
        "By SMS reminder",
        xlabel="",
    )
    if "prior_no_shows" in frame.columns:
        history = np.select(
            [frame["prior_appointments"] == 0, frame["prior_no_shows"] == 0],
            ["first visit", "none missed"],
            "missed before",
        )
        hist = rate_table(frame, pd.Series(history, index=frame.index))
        order = [h for h in ("first visit", "none missed", "missed before") if h in hist.index]
        bar(axes[4], hist.loc[order], "By earlier appointments", xlabel="")
    else:
        axes[4].set_axis_off()
    _class_balance(axes[5], frame)
    if title:
        fig.suptitle(title)
    return fig


def summary_view(
    frame: pd.DataFrame, filters: dict[str, Any], data_label: str
) -> tuple[Figure, str]:
    """The summary plots of the rows that match `filters`, and a caption saying what they
    show.

    With the Label filter on one class every no-show rate would read 100% (or 0%), which
    says nothing. The rates are then computed over the rows that match the *other* filters,
    and each bar is marked "k/n": k rows of the chosen label among its n rows; the caption
    and the plot's title say so.
    """
    label = filters.get("label") or ALL
    if not set(frame.columns) >= PLOT_COLUMNS:
        rows = filter_frame(frame, **filters)
        figure = summary_figure(rows, title=f"{data_label}: {len(rows):,} rows")
        return figure, (
            f"{data_label} has statements only: the class balance per split of the "
            f"{len(rows):,} matching rows, no rates by feature."
        )
    if label == ALL:
        rows = filter_frame(frame, **filters)
        where = "matching rows" if len(rows) < len(frame) else "rows"
        figure = summary_figure(rows, title=f"{data_label}: {len(rows):,} {where}")
        caption = (
            f"No-show rate by feature over the {len(rows):,} {where}; each bar: its rate and "
            "number of rows; dashed line: the rate over all of them."
        )
        return figure, caption
    chosen = 1 if label == "No-show" else 0
    rows = filter_frame(frame, **{**filters, "label": ALL})
    k = int((rows["no_show"] == chosen).sum()) if len(rows) else 0
    figure = summary_figure(
        rows,
        title=(
            f"{data_label}: no-show rates over the {len(rows):,} rows that match the other "
            f"filters · each bar: rate, then {label} rows / rows"
        ),
        count_label=chosen,
    )
    caption = (
        f"**Label = {label}:** within one label every no-show rate would read "
        f"{'100%' if chosen else '0%'}, so the rates are over the {len(rows):,} rows that "
        f"match the other filters ({k:,} of them {label}). Under each rate: {label} rows / "
        "all rows of that bar."
    )
    return figure, caption
