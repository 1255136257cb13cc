"""Which weights to score with on the CPU: exact fp32 (transformers' forward), the candidate
forms the app times at load (fp32 oneDNN-packed, bf16 linear layers with fp32 activations,
oneDNN-packed; noshow/inference/cpu/runtime.py), and two forms tried and not adopted (a whole-bf16
model, int8 dynamic quantization of the decoder's linear layers), on the same test
statements for each adapter: ROC-AUC, the largest and mean change
in P(no-show) against fp32 (dP, absolute), and the seconds the batch took.

    python scripts/bench_cpu_weights.py                    # shipped adapters, 400 real test rows
    python scripts/bench_cpu_weights.py --rows 100 --data synthetic --generative runs/<id> ...

Prints a Markdown table (nothing is written); BENCHMARKS.md quotes it with the command.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench_common import default_data_source, format_table  # noqa: E402
from bench_predict import APPROACHES, SHIPPED  # noqa: E402

COLUMNS = ("adapter", "weights", "rows", "ROC-AUC", "max dP vs fp32", "mean dP", "seconds")


def test_rows(source: str, rows: int, seed: int):
    from noshow.data.load import load_data
    from noshow.data.splits import split_data

    loaded = load_data(source)
    frame = split_data(loaded.frame, "time", seed=seed) if loaded.has_features else loaded.frame
    test = frame[frame["split"] == "test"] if "split" in frame.columns else frame
    test = test.sample(min(rows, len(test)), random_state=seed)
    return test["statement"].tolist(), test["no_show"].astype(int).to_numpy()


def variants(path: Path):
    """(label, predictor) for each way of holding the weights, built from one fp32 load."""
    import torch

    from noshow.inference.cpu.forward import uninstall_fast_forward
    from noshow.inference.predict import load_predictor

    exact = load_predictor(path, device="cpu", cpu_weights="float32")
    uninstall_fast_forward(exact.model.get_decoder())  # the reference: transformers' forward
    yield "float32 (exact)", exact
    for name in ("float32-onednn", "bfloat16"):
        candidate = load_predictor(path, device="cpu", cpu_weights=name)
        yield candidate.weights.split(", merged")[0] + " (candidate)", candidate
    whole = copy.copy(exact)
    whole.model = copy.deepcopy(exact.model).to(torch.bfloat16)
    yield "whole model bf16", whole
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice
        from torch.ao.quantization import quantize_dynamic

        int8 = copy.copy(exact)
        int8.model = copy.deepcopy(exact.model)  # Llama's decoder is `.model` in both classes
        int8.model.model = quantize_dynamic(int8.model.model, {torch.nn.Linear}, torch.qint8)
    yield "int8 dynamic (decoder linears)", int8


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=400)
    p.add_argument("--data", default=None, help="default: the real file if present")
    p.add_argument("--seed", type=int, default=1)
    for approach in APPROACHES:
        p.add_argument(f"--{approach}", default=str(SHIPPED[approach]))
    args = p.parse_args(argv)
    from sklearn.metrics import roc_auc_score

    statements, labels = test_rows(args.data or default_data_source(), args.rows, args.seed)
    two_classes = len(set(labels.tolist())) == 2
    table = []
    for approach in APPROACHES:
        path = Path(getattr(args, approach))
        reference = None
        for label, predictor in variants(path):
            t0 = time.perf_counter()
            probs = np.asarray(predictor.predict_proba(statements))
            seconds = time.perf_counter() - t0
            reference = probs if reference is None else reference
            auc = roc_auc_score(labels, probs) if two_classes else float("nan")
            table.append(
                [
                    f"{approach}: {path.name}",
                    label,
                    f"{len(statements)}",
                    f"{auc:.4f}",
                    f"{np.abs(probs - reference).max():.4f}",
                    f"{np.abs(probs - reference).mean():.4f}",
                    f"{seconds:.1f}",
                ]
            )
            print(" | ".join(table[-1]), file=sys.stderr)
    print(format_table(COLUMNS, table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
