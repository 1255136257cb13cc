"""The engines that can score statements on a CPU, each built from a merged adapter by its
library's own tools, and run behind one interface: `runner(tails) -> (B, H)` hidden states
of each statement's last token (the heads stay in torch).

- `fused-bf16`, `fused-fp32`: the project's hand-written forward (`noshow.inference.cpu.forward`):
  bf16 weights prepacked for oneDNN with fp32 activations (only where the CPU has native
  bf16), or fp32 (oneDNN-packed where that is faster, plain products otherwise).
- `onnxruntime-fp32`: `ScoringGraph` exported with `torch.onnx.export(dynamo=True)`, run by
  ONNX Runtime's CPU provider.
- `onnxruntime-int8`: the graph with SmoothQuant's scaling (`smooth_graph`), exported and
  quantized by onnxruntime's `quantize_static` (QDQ, int8 weights per channel, uint8
  activations with ranges calibrated on real statements), the MLP's down projections (the
  most sensitive products) left in fp32.
- `onnxruntime-int8-dynamic`: onnxruntime's `quantize_dynamic` (per channel): activations
  quantized per call, so a statement's score depends on the statements beside it.
- `openvino-fp32`: the same ONNX file compiled by OpenVINO for the CPU (latency hint).
- `torch-int8-dynamic`: torch's `quantize_dynamic` on the graph's linear layers (fbgemm).

Artefacts (ONNX files) are cached under `cache_dir()/engines/<adapter>-<hash>/`; building
one (export ~1-2 min on a quiet 2-core CPU, several under load) happens once per adapter and
machine. Which engine the app uses is `noshow.inference.cpu.choice`'s decision.

    from noshow.inference.cpu.engines import build_runner
    runner = build_runner("onnxruntime-fp32", graph, folder)
    hidden = runner([tail_ids, ...])   # (B, H) float32
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from noshow.inference.cpu.graph import ScoringGraph, pad_rows

log = logging.getLogger(__name__)

GRAPH_VERSION = "1"  # bump when ScoringGraph's arithmetic or inputs change: old exports go
# int8 leaves the MLP's down projections in fp32: their inputs (SiLU(gate) * up) carry the
# outliers; in a per-layer measurement on the shipped classifier (int8 weights per channel,
# uint8 inputs, real statements) the 12 products with the largest error were all `down`
# (11-30% relative error, the others 1-10%).
INT8_KEEP_FP32 = ("down",)
SMOOTH_ALPHA = 0.5
CALIBRATION_BATCH = 8
# what building any ONNX artefact needs besides the runtime: torch's dynamo exporter writes
# through onnxscript, and onnx saves, renames and quantizes the files
EXPORT_PACKAGES = ("onnx", "onnxscript")

Runner = Callable[[Sequence[torch.Tensor]], torch.Tensor]


@dataclass(frozen=True)
class Engine:
    """One way of running the scoring forward."""

    name: str
    label: str
    package: str | None = None
    """The import name of the library it needs (None: torch alone)."""
    exact: bool = False
    """float32 arithmetic: scores equal the fp32 reference up to rounding (~1e-5)."""
    hand_written: bool = False


ENGINES: dict[str, Engine] = {
    e.name: e
    for e in (
        Engine("fused-bf16", "hand-written fused forward, bf16 oneDNN products", None, False, True),
        Engine("fused-fp32", "hand-written fused forward, fp32", None, True, True),
        Engine("onnxruntime-fp32", "ONNX Runtime fp32", "onnxruntime", True),
        Engine("onnxruntime-int8", "ONNX Runtime int8 static QDQ (calibrated)", "onnxruntime"),
        Engine("onnxruntime-int8-dynamic", "ONNX Runtime int8 dynamic", "onnxruntime"),
        Engine("openvino-fp32", "OpenVINO fp32", "openvino", True),
        Engine("torch-int8-dynamic", "torch int8 dynamic (fbgemm)", None),
    )
}


def why_unavailable(name: str, *, emulated_ok: bool = False) -> str | None:
    """None when engine `name` can run here, else why not (package missing, no native bf16;
    `emulated_ok`: bf16 runs emulated, many times slower, as a test may ask by name)."""
    engine = ENGINES.get(name)
    if engine is None:
        return f"unknown engine {name!r} (known: {', '.join(ENGINES)})"
    needs = ((engine.package,) if engine.package else ()) + (
        EXPORT_PACKAGES if engine.package in ("onnxruntime", "openvino") else ()
    )
    missing = [p for p in needs if importlib.util.find_spec(p) is None]
    if missing:
        return f"{', '.join(missing)} not installed (pip install -r requirements.txt)"
    if name == "fused-bf16" and not emulated_ok:
        from noshow.inference.cpu.weights import native_bf16

        if not native_bf16():
            return "this CPU has no native bf16 (emulated bf16 is several times slower)"
    return None


def engine_folder(adapter_dir: Path, root: Path | None = None) -> Path:
    """Where one adapter's artefacts live: keyed by the adapter's weights and the graph's
    version, so a retrained adapter never meets an old export."""
    from noshow.system.paths import cache_dir

    digest = hashlib.sha256(GRAPH_VERSION.encode())
    for name in ("adapter_model.safetensors", "noshow.json"):
        path = Path(adapter_dir) / name
        if path.exists():
            digest.update(path.read_bytes())
    root = root if root is not None else cache_dir() / "engines"
    return root / f"{Path(adapter_dir).name}-{digest.hexdigest()[:12]}"


# ----------------------------------------------------------------------------- building


def export_onnx(graph: ScoringGraph, path: Path) -> Path:
    """`graph` as ONNX (weights in `path`.data beside it) by torch's dynamo exporter, with
    dynamic batch and length; written to a temporary name and renamed when complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = torch.randint(0, 100, (2, 24))
    lengths = torch.tensor([24, 17])
    batch = torch.export.Dim("batch", min=1, max=256)
    tokens = torch.export.Dim("tokens", min=2, max=480)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.onnx")
    start = time.perf_counter()
    program = torch.onnx.export(
        graph.eval(),
        (ids, lengths),
        dynamo=True,
        input_names=["ids", "lengths"],
        output_names=["hidden"],
        dynamic_shapes=({0: batch, 1: tokens}, {0: batch}),
        optimize=True,
        verbose=False,
    )
    program.save(str(tmp), external_data=True)
    _rename_onnx(tmp, path)
    log.info("exported %s in %.0f s", path, time.perf_counter() - start)
    return path


def _rename_onnx(tmp: Path, path: Path) -> None:
    """Move an ONNX file and its external data to `path` (the file names the data file, so
    the data keeps its name: `<tmp>.data` is renamed and the reference rewritten)."""
    import onnx

    model = onnx.load(str(tmp), load_external_data=True)
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=path.name + ".data",
    )
    for leftover in (tmp, tmp.with_name(tmp.name + ".data")):
        leftover.unlink(missing_ok=True)


def onnx_fp32(graph: ScoringGraph, folder: Path) -> Path:
    path = folder / "graph-fp32.onnx"
    return path if path.exists() else export_onnx(graph, path)


def linear_names(graph: ScoringGraph) -> list[str]:
    return [name for name, m in graph.named_modules() if isinstance(m, torch.nn.Linear)]


@torch.inference_mode()
def smooth_graph(
    graph: ScoringGraph,
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    alpha: float = SMOOTH_ALPHA,
) -> ScoringGraph:
    """A copy of `graph` with SmoothQuant's scaling (Xiao et al. 2023): per input channel j
    of each product, s_j = max|x_j|^alpha / max|W_:,j|^(1 - alpha) over the calibration
    batches; x is divided by s (folded into the RMSNorm weight before q/k/v and gate/up, and
    into the `up` rows before `down`) and W's columns multiplied by s. The same function in
    fp32 (to rounding); the activations' outlier channels move into the weights, which int8
    holds per channel."""
    import copy

    smoothed = copy.deepcopy(graph).eval()
    peaks: dict[str, torch.Tensor] = {}
    hooks = []
    for name, module in smoothed.named_modules():
        if isinstance(module, torch.nn.Linear):

            def keep(_m, args, name=name):
                x = args[0].reshape(-1, args[0].shape[-1]).abs().amax(0)
                peaks[name] = torch.maximum(peaks[name], x) if name in peaks else x

            hooks.append(module.register_forward_pre_hook(keep))
    try:
        for ids, lengths in batches:
            smoothed(ids, lengths)
    finally:
        for hook in hooks:
            hook.remove()

    def scale(name: str, linear: torch.nn.Linear) -> torch.Tensor:
        x = peaks[name].clamp(min=1e-5)
        w = linear.weight.abs().amax(0).clamp(min=1e-5)
        return (x**alpha / w ** (1 - alpha)).clamp(min=1e-5)

    for i, block in enumerate(smoothed.blocks):
        for part, norm in (("qkv", block.norm_in), ("gate_up", block.norm_post)):
            linear = getattr(block, part)
            s = scale(f"blocks.{i}.{part}", linear)
            norm.div_(s)
            linear.weight.mul_(s)
        s = scale(f"blocks.{i}.down", block.down)
        block.gate_up.weight[block.intermediate :].div_(s.unsqueeze(1))  # the `up` rows
        block.down.weight.mul_(s)
    return smoothed


def _matmul_nodes(model, names: set[str]) -> list[str]:
    """The ONNX MatMul nodes that are the products of the named linear layers (the dynamo
    exporter records each node's module in its `name_scopes` metadata)."""
    found = []
    for node in model.graph.node:
        if node.op_type not in ("MatMul", "Gemm"):
            continue
        scopes = next((p.value for p in node.metadata_props if p.key == "namespace"), "")
        if any(f"/{name}: " in scopes for name in names):
            found.append(node.name)
    return found


class _Calibration:
    """onnxruntime's CalibrationDataReader over (ids, lengths) batches."""

    def __init__(self, batches):
        self._it = iter([{"ids": i.numpy(), "lengths": n.numpy()} for i, n in batches])

    def get_next(self):
        return next(self._it, None)

    def rewind(self):  # newer onnxruntime calls it between passes
        pass


def onnx_int8_static(
    graph: ScoringGraph,
    folder: Path,
    calibration: Sequence[torch.Tensor],
    keep_fp32: Sequence[str] = INT8_KEEP_FP32,
) -> Path:
    """`graph` smoothed (`smooth_graph`) and exported, then quantized by onnxruntime's
    `quantize_static`: QDQ, int8 weights per output channel, uint8 activations with MinMax
    ranges on `calibration` (1-D id tensors after the prefix), only products with constant
    weights; the linear layers named in `keep_fp32` stay fp32."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    reduce = reduce_range()
    path = folder / f"graph-int8-static{'-r7' if reduce else ''}.onnx"
    if path.exists():
        return path
    if not calibration:
        raise RuntimeError("needs calibration statements to build (scripts/bench_engines.py)")
    batches = calibration_batches(calibration)
    source = folder / "graph-smooth-fp32.onnx"
    if not source.exists():
        export_onnx(smooth_graph(graph, batches), source)
    kept = {n for n in linear_names(graph) if n.rsplit(".", 1)[-1] in keep_fp32}
    prepared = folder / f".prepared-{os.getpid()}.onnx"
    tmp = folder / f".{path.stem}-{os.getpid()}.onnx"
    try:
        # shapes inferred for the quantizer; no graph rewrites, so the exporter's node names
        # (and the module each node came from) still hold
        quant_pre_process(
            str(source),
            str(prepared),
            skip_optimization=True,
            skip_symbolic_shape=True,
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            external_data_location=prepared.name + ".data",
        )
        exclude = _matmul_nodes(onnx.load(str(source), load_external_data=False), kept)
        quantize_static(
            str(prepared),
            str(tmp),
            _Calibration(batches),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=reduce,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"],
            nodes_to_exclude=exclude,
            use_external_data_format=True,
            extra_options={
                "MatMulConstBOnly": True,
                "WeightSymmetric": True,
                "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},
            },
        )
        _rename_onnx(tmp, path)
    finally:
        for leftover in (prepared, tmp):
            leftover.unlink(missing_ok=True)
            leftover.with_name(leftover.name + ".data").unlink(missing_ok=True)
    return path


def onnx_int8_dynamic(graph: ScoringGraph, folder: Path) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    reduce = reduce_range()
    path = folder / f"graph-int8-dynamic{'-r7' if reduce else ''}.onnx"
    if path.exists():
        return path
    source = onnx_fp32(graph, folder)
    tmp = folder / f".{path.stem}-{os.getpid()}.onnx"
    quantize_dynamic(
        str(source),
        str(tmp),
        per_channel=True,
        reduce_range=reduce,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul"],
        use_external_data_format=True,
        extra_options={"MatMulConstBOnly": True},
    )
    _rename_onnx(tmp, path)
    return path


def reduce_range() -> bool:
    """7-bit weights where the CPU has no int8 dot-product instructions (VNNI): there
    onnxruntime's uint8 x int8 kernels sum pairs into 16 bits, which saturates with 8-bit
    weights (onnxruntime's quantization guide); measured here as max |dP| 0.37 without it."""
    from noshow.inference.cpu.features import cpu_flags, has_int8_dot

    return not has_int8_dot(cpu_flags())


def calibration_batches(rows: Sequence[torch.Tensor], size: int = CALIBRATION_BATCH):
    """(ids, lengths) batches of `size` rows, in the order given."""
    return [pad_rows(rows[i : i + size]) for i in range(0, len(rows), size)]


# ----------------------------------------------------------------------------- running


def _graph_runner(run: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Runner:
    def runner(tails: Sequence[torch.Tensor]) -> torch.Tensor:
        ids, lengths = pad_rows(tails)
        return torch.from_numpy(np.asarray(run(ids.numpy(), lengths.numpy()), np.float32))

    return runner


def threads() -> int:
    return torch.get_num_threads()


def ort_runner(path: Path) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # no busy-waiting between calls: on 2 shared cores a spinning pool starves torch's
    # OpenMP team (the heads, the other adapter) and everything else in the process
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return _graph_runner(
        lambda ids, lengths: session.run(None, {"ids": ids, "lengths": lengths})[0]
    )


def openvino_runner(path: Path) -> Runner:
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(
        core.read_model(str(path)),
        "CPU",
        {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads(), "NUM_STREAMS": 1},
    )
    request = compiled.create_infer_request()

    def run(ids, lengths):
        request.infer({"ids": ids, "lengths": lengths})
        return request.get_output_tensor(0).data.copy()

    return _graph_runner(run)


def torch_int8_runner(graph: ScoringGraph) -> Runner:
    import copy

    from torch.ao.quantization import quantize_dynamic

    quantized = quantize_dynamic(copy.deepcopy(graph).eval(), {torch.nn.Linear}, torch.qint8)

    def runner(tails):
        with torch.inference_mode():
            return quantized(*pad_rows(tails))

    return runner


def build_runner(
    name: str,
    graph: ScoringGraph,
    folder: Path,
    calibration: Sequence[torch.Tensor] = (),
) -> Runner:
    """A runner for a graph engine (not the hand-written `fused-*`), building and caching
    its artefact in `folder` where needed. RuntimeError says why an engine cannot run."""
    why = why_unavailable(name)
    if why:
        raise RuntimeError(f"{name}: {why}")
    if name == "onnxruntime-fp32":
        return ort_runner(onnx_fp32(graph, folder))
    if name == "onnxruntime-int8":
        return ort_runner(onnx_int8_static(graph, folder, calibration))
    if name == "onnxruntime-int8-dynamic":
        return ort_runner(onnx_int8_dynamic(graph, folder))
    if name == "openvino-fp32":
        return openvino_runner(onnx_fp32(graph, folder))
    if name == "torch-int8-dynamic":
        return torch_int8_runner(graph)
    raise RuntimeError(f"{name} is not a graph engine")
