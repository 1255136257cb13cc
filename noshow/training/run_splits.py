"""The rows a run trains and is judged on: load the data, apply the one split policy
(`noshow.data.splits.choose_split`, shared with the Data tab), let clinician labels override
the data set's where asked, subsample, and refuse data that cannot train, with a message that
says why.

    from noshow.training.run_splits import prepare_splits
    splits = prepare_splits(config)       # .train / .validation / .test frames
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from noshow.config import ConfigError, RunConfig
from noshow.training import runs
from noshow.training.session import TrainingError, TrainingSession


@dataclass
class Splits:
    """Train/validation/test frames (columns: record_id, statement, no_show, + features)."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    source: str
    is_synthetic: bool
    split_method: str
    notes: list[str] = field(default_factory=list)
    labels_used: dict[str, Any] | None = None


def prepare_splits(config: RunConfig, log: Callable[[str], None] = print) -> Splits:
    """Load, split, apply clinician labels and subsample, refusing data that cannot train."""
    from noshow.data.load import load_data
    from noshow.data.splits import choose_split

    dc = config.data
    loaded = load_data(dc.source)
    notes = list(getattr(loaded.report, "notes", []) or [])
    choice = choose_split(loaded, dc.split, seed=dc.seed)  # the policy the Data tab uses too
    if choice.note:
        log(choice.note)
    frame, method = choice.frame, choice.method
    labels_used = None
    if dc.use_clinician_labels:
        frame, labels_used = apply_clinician_labels(frame, log)
    parts = {}
    for name in ("train", "validation", "test"):
        part = frame[frame["split"] == name]
        limit = dc.max_train_rows if name == "train" else dc.max_eval_rows
        parts[name] = _stratified_sample(part, limit, dc.seed).reset_index(drop=True)
    train_part = parts["train"]
    if len(train_part) == 0:
        raise TrainingError(
            "The training split is empty after filtering: check the data and split."
        )
    if train_part["no_show"].nunique() < 2:
        raise TrainingError(
            "The training rows hold only one class "
            f"({'no-show' if train_part['no_show'].iloc[0] == 1 else 'shows up'}): "
            "the model cannot learn to tell them apart. Use more rows or another split."
        )
    for name in ("validation", "test"):
        if len(parts[name]) == 0:
            raise TrainingError(f"The {name} split is empty: use more data or another split.")
    if config.train.batch_size > len(train_part):
        raise ConfigError(
            f"batch size {config.train.batch_size} is larger than the {len(train_part)} "
            f"training rows: lower batch_size to {len(train_part)} or fewer."
        )
    return Splits(
        train=train_part,
        validation=parts["validation"],
        test=parts["test"],
        source=loaded.source,
        is_synthetic=loaded.is_synthetic,
        split_method=method,
        notes=notes,
        labels_used=labels_used,
    )


def apply_clinician_labels(
    frame: pd.DataFrame, log: Callable[[str], None] = print, store: Any = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Override the data set's labels with clinicians' consensus labels where they exist."""
    from noshow.labels.events import labels_fingerprint
    from noshow.labels.store import LabelStore, default_label_db

    store = store or LabelStore(default_label_db())
    overrides = store.consensus_labels()
    frame = frame.copy()
    known = frame["record_id"].isin(list(overrides))
    before = frame.loc[known, "no_show"].copy()
    frame.loc[known, "no_show"] = frame.loc[known, "record_id"].map(overrides).astype(int)
    changed = int((before != frame.loc[known, "no_show"]).sum())
    used = {**labels_fingerprint(overrides), "applied": int(known.sum()), "changed": changed}
    log(
        f"Clinician labels: {used['applied']} records labelled, {changed} differ from the "
        f"data set (hash {used['hash'][:12]})."
    )
    return frame, used


def _stratified_sample(part: pd.DataFrame, limit: int | None, seed: int) -> pd.DataFrame:
    if limit is None or len(part) <= limit:
        return part
    frac = limit / len(part)
    sampled = part.groupby("no_show", group_keys=False).sample(frac=frac, random_state=seed)
    return sampled.sort_index()


def record_splits(session: TrainingSession, splits: Splits) -> None:
    """Log the data used; store clinician-label overrides (count + hash) in config.json."""
    if splits.labels_used:
        session.config.labels_used = splits.labels_used
        if session.is_writer:
            runs.write_config(session.run_dir, session.config)
    for note in splits.notes:
        session.log(note)
    session.log(
        f"Data: {splits.source} ({splits.split_method} split): train {len(splits.train)}, "
        f"validation {len(splits.validation)}, test {len(splits.test)}"
        + (" - SYNTHETIC data" if splits.is_synthetic else "")
    )
