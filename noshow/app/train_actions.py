"""What the Train tab's Preflight check and Start training do, without Gradio: the form's
values -> a RunConfig (the data source read against the Data tab), the rows the run will use,
the preflight's estimate (measured one at a time, never while a job trains), and the start:
refused while a measurement runs or a job trains, and asked about first when the run is
longer than a day or evaluates on fewer than 100 rows (`noshow.training.preflight.run_cautions`):
the answer gives the reasons, and a second Start of the same configuration within
CONFIRM_WITHIN_S, or Start anyway, starts it.

    actions = TrainActions(ctx, n_gpus=0)
    html = actions.preflight(values, data_key)
    answer = actions.start(values, data_key, gpus=1, asked=None)  # .message, .run_id, .asked
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from noshow.app import train_form as tf
from noshow.app import train_views as tv
from noshow.app.common import SYNTHETIC_SOURCE, error_box, info_box, ok_box, user_message
from noshow.config import RunConfig, preset_config

# One measurement at a time: two would compete for the machine and time each other.
MEASURE_LOCK = threading.Lock()
MEASURING_REFUSAL = (
    "A preflight check is measuring a configuration on this machine (up to a minute on a "
    "CPU); a job started now would skew its figures. Start again once it has answered."
)
CONFIRM_WITHIN_S = tv.CONFIRM_WITHIN_S


@dataclass
class StartAnswer:
    """What Start training answered: the message (HTML), the run it started (None: none),
    and the question it asked (None: none), which a second Start or Start anyway answers."""

    message: str
    run_id: str | None = None
    asked: dict[str, Any] | None = None


class TrainActions:
    """The Train tab's two actions over the app's services (`ctx`: jobs, data cache)."""

    def __init__(self, ctx: Any, n_gpus: int = 0) -> None:
        self.ctx = ctx
        self.jobs = ctx.jobs
        self.n_gpus = n_gpus

    # -- the configuration and its rows

    def config_from(self, values: dict[str, Any], key: Any) -> RunConfig:
        """The RunConfig of the form's values (ConfigError names a field and its range)."""
        demo = self.ctx.demo_mode
        if demo and values["data_source"] not in (None, "", *tf.SOURCE_CHOICES):
            raise ValueError("Reading files from the server is turned off in demo mode.")
        data_tab_source = None
        if values["data_source"] == tf.SOURCE_DATA_TAB:
            loaded = self.ctx.get_data(key).loaded
            data_tab_source = SYNTHETIC_SOURCE if loaded.is_synthetic else str(loaded.source)
        source = tf.resolve_train_source(values["data_source"], data_tab_source)
        if demo and source not in (None, SYNTHETIC_SOURCE):
            raise ValueError("Reading files from the server is turned off in demo mode.")
        return tf.build_run_config(
            **{**values, "data_source": source}, output_dir=self.ctx.runs_dir
        )

    def row_counts(self, config: RunConfig) -> dict[str, int]:
        from noshow.app.data_views import load_entry

        # The same load + split as training, so the row counts are the ones that will be used.
        entry = load_entry(self.ctx.cache, config.data.source, split_method=config.data.split)
        counts = entry.frame["split"].value_counts()
        return {k: int(counts.get(k, 0)) for k in ("train", "validation", "test")}

    @staticmethod
    def quick_of(config: RunConfig) -> RunConfig | None:
        """The quick CPU preset on the same data and approach (None when `config` is it)."""
        quick = preset_config(
            tf.CPU_PRESET,
            data={"source": config.data.source, "split": config.data.split},
            train={"approach": config.train.approach, "output_dir": config.train.output_dir},
        )
        return None if quick.to_dict() == config.to_dict() else quick

    @staticmethod
    def estimate(config: RunConfig, rows: dict[str, int], measure: bool) -> dict[str, Any]:
        from noshow.training.preflight import estimate_resources

        if not measure:
            return estimate_resources(config, rows, measure=False)
        failures: list[str] = []
        with MEASURE_LOCK:
            found = estimate_resources(config, rows, measure=True, log=failures.append)
        found["failures"] = failures
        return found

    def busy_reason(self) -> str:
        snap = self.jobs.snapshot()
        return (
            f"run {snap['run_id']} is training on this machine and a measurement would "
            "compete with it; Preflight check measures once it has ended"
        )

    # -- Preflight check

    def preflight(self, values: dict[str, Any], key: Any) -> str:
        """The preflight's verdict as HTML: fits, how long (measured when nothing is cached,
        nothing trains and the model is here), or why not."""
        from noshow.modeling.presets import local_folder

        try:
            config = self.config_from(values, key)
            rows = self.row_counts(config)
            found = self.estimate(config, rows, measure=False)
            not_measured = ""
            if found["fits"] and found["minutes"] is None:
                if self.jobs.is_busy():
                    not_measured = self.busy_reason()
                elif local_folder(config.train.model) is None:
                    not_measured = (
                        f"{config.train.model} is not on this machine yet (training "
                        "downloads it first)"
                    )
                else:
                    found = self.estimate(config, rows, measure=True)
                    if found["minutes"] is None:
                        not_measured = "; ".join(found.get("failures") or []) or "it failed"
            quick_minutes = None
            quick = self.quick_of(config)
            if found["fits"] and found.get("long") and quick is not None:
                # the quick preset's time, for comparison (measured too when nothing trains)
                measure = not self.jobs.is_busy()
                quick_minutes = self.estimate(quick, rows, measure=measure)["minutes"]
            fits, text = tv.describe_estimate(
                found, quick_minutes=quick_minutes, not_measured=not_measured
            )
        except Exception as e:  # noqa: BLE001 - shown to the user
            return error_box(user_message(e))
        long = found.get("long") or found["minutes"] is None
        return (error_box if not fits else info_box if long else ok_box)(text)

    # -- Start training

    def start(
        self,
        values: dict[str, Any],
        key: Any,
        gpus: Any = 1,
        asked: Any = None,
        anyway: bool = False,
    ) -> StartAnswer:
        """Check the configuration (no measurement: a cached one or a rough figure) and start
        it in the background. A run `run_cautions` has doubts about starts only when `asked`
        (the question a Start of it asked) is for the same run and recent, or `anyway` (Start
        anyway was pressed under that question)."""
        from noshow.training.preflight import run_cautions

        try:
            n = tf.whole_or_none(gpus) or 1
            if not 1 <= n <= max(self.n_gpus, 1):
                raise ValueError(f"GPUs must be between 1 and {max(self.n_gpus, 1)}, got {n}.")
            config = self.config_from(values, key)
            if MEASURE_LOCK.locked():  # the job would slow the probe and skew its figures
                return StartAnswer(error_box(MEASURING_REFUSAL))
            if self.jobs.is_busy():  # a cheap refusal before the preflight loads anything
                snap = self.jobs.snapshot()
                message = (
                    f"A training job is already running (run {snap['run_id']}). "
                    "Cancel it or wait for it to finish before starting another."
                )
                return StartAnswer(error_box(message), snap["run_id"])
            rows = self.row_counts(config)
            found = self.estimate(config, rows, measure=False)
            quick = self.quick_of(config)
            quick_minutes = None
            if found.get("long") and quick is not None:
                quick_minutes = self.estimate(quick, rows, measure=False)["minutes"]
            fits, text = tv.describe_estimate(found, quick_minutes=quick_minutes)
            if not fits:
                return StartAnswer(error_box(text))
            doubts = run_cautions(found["rows"], found["minutes"], found.get("steps"))
            question = {"run": _run_key(config, n), "at": time.time()}
            if doubts and not _answered(asked, question, anyway):
                return StartAnswer(info_box(tv.describe_cautions(doubts)), asked=question)
            run_id = self.jobs.start(config, gpus=n) if n > 1 else self.jobs.start(config)
        except Exception as e:  # noqa: BLE001 - JobBusyError names the running job
            return StartAnswer(error_box(user_message(e)))
        where = f" on {n} GPUs" if n > 1 else ""
        return StartAnswer(ok_box(f"Started run {run_id}{where}.\n{text}"), run_id)


def _run_key(config: RunConfig, gpus: int) -> str:
    return json.dumps([config.to_dict(), gpus], sort_keys=True, default=str)


def _answered(asked: Any, question: dict[str, Any], anyway: bool) -> bool:
    """True when `asked` was the same run's question, and Start anyway answered it or a
    second Start came within CONFIRM_WITHIN_S."""
    if not isinstance(asked, dict) or asked.get("run") != question["run"]:
        return False
    return anyway or question["at"] - float(asked.get("at") or 0) <= CONFIRM_WITHIN_S
