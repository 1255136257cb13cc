"""CPU engines (noshow.inference.cpu): the CPU's kind from its flags, the engine chosen from
the measured table (fastest within the drift bound, exact engines winning ties, nothing that
cannot run here, the exact path for an unknown kind, a name overriding), the scoring graph
equal to transformers' forward, and on the shipped adapters every engine the table can offer
within the drift bound of fp32 (|dP| and ROC-AUC) on 200 real test rows (skipped where its
package is missing)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SHIPPED

from noshow.inference.cpu.choice import (
    MAX_AUC_DRIFT,
    MAX_DP,
    choose_engine,
    load_table,
    pick,
    within_bound,
)
from noshow.inference.cpu.engines import ENGINES, why_unavailable
from noshow.inference.cpu.features import cpu_kind
from noshow.inference.cpu.forward import FUSED_ATTR
from noshow.modeling.approaches import get_approach

ZEN3 = {"fpu", "sse4_2", "avx", "avx2", "fma", "bmi2"}
ZEN4 = ZEN3 | {"avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"}
ICELAKE = ZEN3 | {"avx512f", "avx512bw", "avx512_vnni"}
SAPPHIRE = ICELAKE | {"avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"}


def test_cpu_kind_comes_from_the_flags():
    assert cpu_kind(ZEN3) == "avx2"
    assert cpu_kind(ZEN4) == "avx512_bf16"
    assert cpu_kind(ICELAKE) == "avx512_vnni"
    assert cpu_kind(SAPPHIRE) == "amx"
    assert cpu_kind(ZEN3 | {"avx512f"}) == "avx512"
    assert cpu_kind({"fp", "asimd", "sve"}) == "other"  # Arm


def row(engine, p50, dp=0.0, auc=0.0):
    return {"engine": engine, "p50_ms": p50, "max_dp": dp, "auc_drift": auc, "measured": "t"}


def everything_runs(_name):
    return None


TABLE = {
    "avx2": {
        "classifier": [
            row("fused-fp32", 150),
            row("onnxruntime-fp32", 120),
            row("onnxruntime-int8", 60, dp=0.008, auc=0.001),
            row("onnxruntime-int8-dynamic", 50, dp=0.25, auc=-0.02),
        ]
    },
    "amx": {"classifier": [row("fused-fp32", 140), row("fused-bf16", 70, dp=0.009)]},
}


@pytest.mark.parametrize(
    ("flags", "expected"),
    [(ZEN3, "onnxruntime-int8"), (SAPPHIRE, "fused-bf16"), (ZEN4, "fused-fp32")],
)
def test_the_fastest_engine_within_the_drift_bound_is_chosen(flags, expected):
    choice = choose_engine("classifier", flags=flags, table=TABLE, available=everything_runs)
    assert choice.engine == expected  # int8 dynamic is faster but drifts past the bound
    assert choice.kind == cpu_kind(flags)


def test_an_unmeasured_kind_gets_the_exact_fp32_path_and_says_how_to_measure_it():
    choice = choose_engine("classifier", flags=ZEN4, table=TABLE, available=everything_runs)
    assert choice.engine == "fused-fp32" and "bench_engines.py" in choice.reason


def test_an_exact_engine_wins_a_near_tie_and_missing_packages_are_skipped():
    rows = [row("fused-fp32", 100), row("onnxruntime-int8", 97, dp=0.005)]
    assert pick(rows, everything_runs)[0] == "fused-fp32"
    rows = [row("fused-fp32", 150), row("onnxruntime-fp32", 100)]
    assert pick(rows, lambda name: "not installed" if "onnx" in name else None)[0] == ("fused-fp32")
    assert pick([row("onnxruntime-int8-dynamic", 50, dp=0.2)], everything_runs) is None
    assert not within_bound({"max_dp": MAX_DP + 1e-4, "auc_drift": 0.0})


def test_a_missing_package_is_named_in_the_reason_and_the_log(caplog):
    def no_onnxruntime(name):
        return "onnxruntime not installed" if name.startswith("onnxruntime") else None

    with caplog.at_level("WARNING", logger="noshow.inference"):
        choice = choose_engine("classifier", flags=ZEN3, table=TABLE, available=no_onnxruntime)
    assert choice.engine == "fused-fp32"
    assert "onnxruntime-int8 (onnxruntime not installed)" in choice.reason
    assert "onnxruntime-int8-dynamic" not in choice.reason  # outside the bound: not a loss
    assert "onnxruntime not installed" in caplog.text


def test_an_onnx_engine_needs_the_exporter_too(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name)
    )
    assert "onnxscript" in why_unavailable("openvino-fp32")
    assert why_unavailable("torch-int8-dynamic") is None


def test_a_named_engine_wins_and_old_names_still_work(monkeypatch):
    monkeypatch.delenv("NOSHOW_CPU_ENGINE", raising=False)
    monkeypatch.setenv("NOSHOW_CPU_WEIGHTS", "float32")
    assert choose_engine("classifier", flags=ZEN3, table=TABLE).engine == "fused-fp32"
    monkeypatch.setenv("NOSHOW_CPU_ENGINE", "fused-fp32")
    choice = choose_engine("classifier", flags=ZEN3, table=TABLE)
    assert choice.engine == "fused-fp32" and choice.reason == "set by name"
    with pytest.raises(ValueError, match="use auto or one of"):
        choose_engine("classifier", requested="int4", flags=ZEN3, table=TABLE)


def test_the_shipped_table_names_known_engines_and_both_approaches():
    table = load_table()
    assert table, "noshow/inference/cpu/engine_table.json is missing or unreadable"
    for kind, approaches in table.items():
        assert approaches and set(approaches) <= {"generative", "classifier"}, (
            kind
        )  # a kind may lack one: the exact path
        for rows in approaches.values():
            assert rows and all(r["engine"] in ENGINES and r["measured"] for r in rows), kind


def test_the_scoring_graph_equals_transformers_forward_with_and_without_a_prefix(
    tiny_model_dir,
):
    from noshow.inference.cpu.graph import ScoringGraph, pad_rows
    from noshow.modeling.models import load_base

    model, _ = load_base(tiny_model_dir, get_approach("generative"), "none", device="cpu")
    decoder = model.eval().get_decoder()
    prefix = [5, 6, 7, 8]
    rows = [torch.tensor(prefix + list(range(20, 20 + n))) for n in (9, 3, 14)]
    with torch.inference_mode():
        want = torch.stack([decoder(input_ids=r[None]).last_hidden_state[0, -1] for r in rows])
        graph = ScoringGraph(decoder, prefix).eval()
        got = graph(*pad_rows([r[len(prefix) :] for r in rows]))
        plain = ScoringGraph(decoder).eval()(*pad_rows(rows))
        alone = graph(*pad_rows([rows[1][len(prefix) :]]))
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(plain, want, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(alone[0], got[1], atol=1e-5, rtol=1e-5)  # padding is inert


def test_the_predictor_says_which_engine_scores_and_why(adapters, monkeypatch):
    from noshow.inference.predict import load_predictor

    monkeypatch.setenv("NOSHOW_CPU_ENGINE", "fused-fp32")
    predictor = load_predictor(adapters.classifier, device="cpu")
    state = getattr(predictor.model.get_decoder(), FUSED_ATTR)
    assert state.matmuls.dtype == torch.float32
    assert predictor.weights.startswith("float32") and "set by name" in predictor.engine


DRIFT_ROWS = 200  # real test rows per engine: enough for a ROC-AUC, seconds per engine


def offered(engine: str) -> bool:
    """Whether the shipped table may choose `engine` for some adapter on some CPU kind (a
    row within the drift bound): then both shipped adapters must keep the bound with it."""
    return any(
        r["engine"] == engine and within_bound(r)
        for approaches in load_table().values()
        for rows in approaches.values()
        for r in rows
    )


@pytest.fixture(scope="module")
def real_rows(real_data_path):
    """DRIFT_ROWS real test statements and their labels to score, 32 validation statements
    to calibrate int8 on (the time split, seeded)."""
    from noshow.data.load import load_data
    from noshow.data.splits import split_data

    frame = split_data(load_data(real_data_path).frame, "time", seed=0)
    test = frame[frame["split"] == "test"].sample(DRIFT_ROWS, random_state=5)
    val = frame[frame["split"] == "validation"].sample(32, random_state=5)
    return (
        test["statement"].tolist(),
        test["no_show"].astype(int).to_numpy(),
        val["statement"].tolist(),
    )


@pytest.fixture(scope="module")
def exact_predictors(real_rows):
    """approach -> (predictor, its exact fp32 scores of the real rows), loaded once; each
    engine is then installed behind the same merged decoder in turn."""
    from noshow.inference.predict import load_predictor

    loaded = {}

    def get(approach):
        if approach not in loaded:
            predictor = load_predictor(SHIPPED[approach], device="cpu", cpu_weights="fused-fp32")
            loaded[approach] = (predictor, np.array(predictor.predict_proba(real_rows[0])))
        return loaded[approach]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("engine", [e for e in ENGINES if e != "fused-fp32"])
@pytest.mark.parametrize("approach", ["generative", "classifier"])
def test_every_engine_the_table_offers_scores_within_the_drift_bound(
    engine, approach, real_rows, exact_predictors
):
    """The shipped adapters' P(no-show) on DRIFT_ROWS real test rows through each engine
    that the shipped table may choose, against the exact fp32 path: max |dP| <= MAX_DP and
    |dROC-AUC| <= MAX_AUC_DRIFT, the bound the choice applies; a statement in a batch within
    1e-3 of itself alone. Engines outside the bound in every measured row are skipped (the
    app never chooses them). Builds and caches an engine's artefact on first use (minutes
    for an ONNX export on a 2-core CPU; seconds per engine once cached)."""
    from sklearn.metrics import roc_auc_score

    from noshow.inference.cpu.runtime import install_engine

    if not offered(engine):
        pytest.skip(
            f"the shipped table chooses {engine} on no CPU kind (absent or outside the bound)"
        )
    why = why_unavailable(engine)
    if why:
        pytest.skip(why)
    statements, labels, calibration_texts = real_rows
    predictor, exact = exact_predictors(approach)
    cut = len(predictor.bound.prefix_ids)
    encoded = predictor.bound.encode(
        calibration_texts, np.zeros(32), np.arange(32), train=False
    ).input_ids
    installed = install_engine(
        predictor.model.get_decoder(),
        tuple(predictor.bound.prefix_ids),
        predictor.adapter_dir,
        approach,
        requested=engine,
        calibration=[torch.tensor(ids[cut:]) for ids in encoded],
    )
    assert not installed.note, installed.note
    predictor.single_rows = installed.single_rows
    batched = np.array(predictor.predict_proba(statements))
    max_dp = np.abs(batched - exact).max()
    auc_drift = roc_auc_score(labels, batched) - roc_auc_score(labels, exact)
    assert max_dp <= MAX_DP, f"{engine}: max |dP| {max_dp:.4f} against fp32"
    assert abs(auc_drift) <= MAX_AUC_DRIFT, f"{engine}: ROC-AUC moved by {auc_drift:+.4f}"
    single = np.array([predictor.predict_proba([s])[0] for s in statements[:3]])
    assert np.abs(single - batched[:3]).max() <= 1e-3, engine
