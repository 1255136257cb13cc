"""Data-parallel training (noshow/training/distributed.py) on the CPU: real multi-process runs under
`torchrun --standalone --nproc_per_node 2` on the gloo backend, with the tiny random Llama.

- the step's all_reduce weighting: the gradient summed over 2 processes equals the 1-process
  gradient of the same global batch (uneven shards, an empty shard, an OOM back-off on one
  rank only), and a failure on one rank stops both;
- the same through torch DDP (`data_parallel="ddp"`, noshow/training/ddp.py): the same
  gradients and losses, no_sync micro-batches, a rank's zero step, cancel and a failing rank
  stop both at the same step; a failure inside DDP's synchronised backward ends the launch
  at once instead of hanging;
- scripts/train.py under torchrun, flat and DDP: one run folder, completed, adapter saved
  once, metrics once per step, the same losses and LoRA weights on both ranks and as a
  1-process run; --data-parallel is in --help; scripts/bench_scaling.py's CPU smoke run;
- the app path: with a faked GPU count the Train tab shows a GPUs input and starts torchrun
  through the JobManager; progress shows, and cancel stops both ranks at the same step.

    .venv/bin/python -m pytest -q tests/test_distributed.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.delenv("NOSHOW_DATA", raising=False)
    monkeypatch.setenv("NOSHOW_LABELS_DB", str(tmp_path / "labels.sqlite"))
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):  # this process is a single process
        monkeypatch.delenv(name, raising=False)


@pytest.fixture()
def statements_csv(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    ages = rng.integers(1, 90, 240)
    rows = [
        {
            "Statement": f"A {a}-year-old patient booked {int(d)} days ahead.",
            "NoShow": "Yes" if a < 30 else "No",
        }
        for a, d in zip(ages, rng.integers(0, 30, 240), strict=True)
    ]
    path = tmp_path / "statements.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def run_torchrun(args: list[str], env_extra: dict[str, str], timeout: float = 150) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", **env_extra}
    proc = subprocess.run(
        [*TORCHRUN, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    return output


# ----------------------------------------------------------------------------- the step's weighting

# The pieces below are imported by the torchrun helper too (tests/ is on its path).
ROWS = 9
BATCH_UNEVEN = np.array([4, 0, 7, 2, 8, 1, 5])  # 4 rows on rank 0, 3 on rank 1
BATCH_ONE_ROW = np.array([3])  # rank 1's shard is empty
BATCH_FAILS = np.array([2, 6])  # row 6 lands on rank 1, which fails on it


def rank_one_guard(rank: int, ooms: list[int]):
    """A check run on each batch part: rank 1 runs out of memory once on more than 2 rows
    (`ooms` records it), and fails on BATCH_FAILS (its row 6)."""

    def guard(part):
        if rank == 1 and len(part) > 2 and not ooms:
            ooms.append(len(part))
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (test)")
        if rank == 1 and 6 in part:
            raise ValueError("boom on rank 1")

    return guard


def make_linear_problem():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    rng = np.random.default_rng(0)
    from noshow.modeling.batching import Encoded

    x = (rng.normal(size=(ROWS, 3)) * 0.3).round(3).tolist()
    return model, Encoded(x, rng.integers(0, 2, ROWS), np.arange(ROWS))


def linear_loss(model, enc, part, weights):
    """sum(weight * cross-entropy) of rows `part`: what a step function back-propagates."""
    x = torch.tensor([enc.input_ids[i] for i in part], dtype=torch.float32)
    rows = F.cross_entropy(model(x), torch.as_tensor(enc.labels[part]), reduction="none")
    return (rows * torch.as_tensor(weights, dtype=torch.float32)).sum()


def linear_step_fn(model, enc, guard=None):
    """A loop step function for the linear problem (see noshow.training.loop.StepFn)."""

    def step_fn(part, weights):
        if guard is not None:
            guard(part)
        loss = linear_loss(model, enc, part, weights)
        loss.backward()
        return loss.detach()

    return step_fn


def uniform(idx):
    return np.full(len(idx), 1.0 / len(idx), dtype=np.float32)


class RecordingOptimizer:
    """Stands in for AdamW: keeps the (clipped) gradient it is asked to apply."""

    def __init__(self, params):
        self.params = list(params)
        self.seen: list[torch.Tensor] = []

    def step(self):
        self.seen.append(torch.cat([p.grad.reshape(-1) for p in self.params]).clone())


HELPER = """
import sys
from types import SimpleNamespace

import torch

sys.path.insert(0, {tests!r})
import test_distributed as t
from noshow.training.distributed import StepFlags, init_group
from noshow.training.loop import STEP_FLAG_SLOTS, LoopState, _distributed_step
from noshow.training.step import FlatGrads

group = init_group()
model, enc = t.make_linear_problem()
params = list(model.parameters())
grads = FlatGrads(params, extra_slots=STEP_FLAG_SLOTS)
opt = t.RecordingOptimizer(params)
ooms = []
guard = t.rank_one_guard(group.rank, ooms)

step_fn = t.linear_step_fn(model, enc, guard)

session = SimpleNamespace(dist=group, stop_vote=lambda: False, warn=print, failure_shared=False,
                          run_dir=__import__("pathlib").Path({out!r}))
flags = StepFlags(group.device)
state = LoopState(micro_batch=4)
losses, error = [], None
for idx in (t.BATCH_UNEVEN, t.BATCH_ONE_ROW, t.BATCH_FAILS):
    try:
        from noshow.training.loop import _check_step_flags
        _check_step_flags(session, flags)
        losses.append(float(_distributed_step(
            step_fn, idx, t.uniform(idx), opt, grads, state, session, flags)))
        state.step += 1
    except Exception as e:
        error = f"{{type(e).__name__}}: {{e}}"
        break
else:
    try:
        _check_step_flags(session, flags)
    except Exception as e:
        error = f"{{type(e).__name__}}: {{e}}"
torch.save({{"grads": opt.seen, "losses": losses, "error": error, "ooms": ooms,
            "micro_batch": state.micro_batch, "shared": session.failure_shared}},
           {out!r} + f"/rank{{group.rank}}.pt")
group.finish(barrier=session.failure_shared)
"""


def test_gradient_summed_over_two_processes_equals_one_process_gradient(tmp_path):
    from noshow.training.loop import LoopState, _optimizer_step
    from noshow.training.step import FlatGrads

    out = tmp_path / "ranks"
    out.mkdir()
    helper = tmp_path / "helper.py"
    helper.write_text(HELPER.format(tests=str(REPO / "tests"), out=str(out)))
    run_torchrun([str(helper)], {})
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in (0, 1)]

    # one process, the whole global batch at once
    model, enc = make_linear_problem()
    opt = RecordingOptimizer(model.parameters())
    grads = FlatGrads(list(model.parameters()))
    session = SimpleNamespace(log=print)
    single_losses = []
    for idx in (BATCH_UNEVEN, BATCH_ONE_ROW):
        state = LoopState(micro_batch=len(idx))
        step_fn = linear_step_fn(model, enc)
        loss = _optimizer_step(step_fn, idx, uniform(idx), opt, grads, state, session)
        single_losses.append(float(loss))
    for g in opt.seen:
        assert 0 < g.norm() < 0.9  # below the clipping norm, so a wrong scale would show

    r0, r1 = ranks
    # rank 1 alone halved its micro-batch (3 rows -> 2 + 1): the sum is the same
    assert r1["ooms"] == [3] and r1["micro_batch"] == 2 and r0["micro_batch"] == 4
    for step in range(2):
        assert torch.equal(r0["grads"][step], r1["grads"][step])  # one all_reduce result
        torch.testing.assert_close(r0["grads"][step], opt.seen[step], atol=1e-6, rtol=1e-5)
    assert np.allclose(r0["losses"][:2], single_losses, atol=1e-6)
    assert r0["losses"][:2] == r1["losses"]
    # the third batch fails on rank 1 only; both stop, rank 0 with the count, not a hang
    assert r1["error"] == "ValueError: boom on rank 1"
    assert r0["error"].startswith("TrainingError: Training failed in 1 of 2 processes at step 3")
    assert r0["shared"] and r1["shared"]


# ----------------------------------------------------------------------------- the DDP step


def linear_batch(enc, part, weights):
    """The linear problem's rows as a `Batch`; `last_index` carries the row ids (the guard's)."""
    from noshow.modeling.batching import Batch

    x = torch.tensor([enc.input_ids[i] for i in part], dtype=torch.float32)
    return Batch(
        x,
        torch.as_tensor(np.asarray(part, dtype=np.int64)),
        torch.as_tensor(enc.labels[part]),
        torch.as_tensor(weights, dtype=torch.float32),
    )


def linear_batch_loss(guard=None):
    """batch_loss(model, batch) of the linear problem; `guard(rows)` runs inside the forward."""

    def batch_loss(model, batch):
        if guard is not None:
            guard(batch.last_index.tolist())
        rows = F.cross_entropy(model(batch.input_ids), batch.labels, reduction="none")
        return (rows * batch.weight).sum()

    return batch_loss


DDP_HELPER = """
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, {tests!r})
import test_distributed as t
from noshow.training.ddp import DDPStep
from noshow.training.distributed import StepFlags, init_group
from noshow.training.loop import STEP_FLAG_SLOTS, LoopState, _check_step_flags, _distributed_step
from noshow.training.step import StepRunner

group = init_group()
ooms = []
guard = t.rank_one_guard(group.rank, ooms)

def run(batches, stop_at=None):
    model, enc = t.make_linear_problem()
    step = DDPStep(model, t.linear_batch_loss(guard), group, "eager", STEP_FLAG_SLOTS)
    runner = StepRunner(model, step.batch_loss, "eager", step.grads, ddp=step.ddp)
    opt = t.RecordingOptimizer(step.module.trainable)
    state = LoopState(micro_batch=4)
    session = SimpleNamespace(
        dist=group, warn=print, failure_shared=False, run_dir=Path({out!r}),
        stop_vote=lambda: group.rank == 1 and state.step + 1 == stop_at,
    )
    flags = StepFlags(group.device)
    step_fn = lambda part, w: runner(t.linear_batch(enc, part, w))
    losses, error = [], None
    try:
        for idx in batches:
            _check_step_flags(session, flags)
            loss = _distributed_step(
                step_fn, idx, t.uniform(idx), opt, step.grads, state, session, flags, step)
            losses.append(float(loss))
            state.step += 1
        _check_step_flags(session, flags)
    except Exception as e:
        error = f"{{type(e).__name__}}: {{e}}"
    return {{"grads": opt.seen, "losses": losses, "error": error, "steps": state.step,
             "micro_batch": state.micro_batch, "shared": session.failure_shared}}

if {in_backward!r}:  # rank 1 fails inside the synchronised backward: no way to rejoin
    class Boom(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, g):
            raise RuntimeError("boom in backward on rank 1")

    model, enc = t.make_linear_problem()
    def loss_fn(model, batch):
        out = t.linear_batch_loss()(model, batch)
        return Boom.apply(out) if group.rank == 1 else out
    step = DDPStep(model, loss_fn, group, "eager", STEP_FLAG_SLOTS)
    state = LoopState(micro_batch=4)
    session = SimpleNamespace(dist=group, warn=print, failure_shared=False, stop_vote=lambda: False)
    step_fn = lambda part, w: StepRunner(model, step.batch_loss, "eager", step.grads,
                                         ddp=step.ddp)(t.linear_batch(enc, part, w))
    try:
        _distributed_step(step_fn, t.BATCH_UNEVEN, t.uniform(t.BATCH_UNEVEN),
                          t.RecordingOptimizer([]), step.grads, state, session,
                          StepFlags(group.device), step)
    except RuntimeError as e:
        Path({out!r}, f"rank{{group.rank}}.txt").write_text(str(e))
        raise
    Path({out!r}, f"rank{{group.rank}}.txt").write_text("finished")
else:
    result = {{
        "cancel": run([t.BATCH_UNEVEN, t.BATCH_ONE_ROW, t.BATCH_UNEVEN], stop_at=2),
        "ooms": ooms,
        "fail": run([t.BATCH_FAILS, t.BATCH_UNEVEN]),
    }}
    torch.save(result, {out!r} + f"/rank{{group.rank}}.pt")
    group.finish(barrier=True)
"""


def test_bucket_grads_zero_and_clip_like_torch_across_buckets_and_their_rebuild(tmp_path):
    """DDP's buckets (here 2: the first closes past 1 MiB) hold the gradients; zero and clip
    act on them like clip_grad_norm_ on plain gradients, also after DDP rebuilt its buckets in
    the second step's forward."""
    import copy

    import torch.distributed as dist

    from noshow.modeling.batching import Batch
    from noshow.training.ddp import BucketGrads, wrap_model

    def loss_fn(model, batch):
        return (model(batch.input_ids) ** 2).sum() * 100  # gradients far above the clip norm

    dist.init_process_group(
        "gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1
    )
    try:
        torch.manual_seed(0)
        layers = [torch.nn.Linear(600, 600), torch.nn.Linear(600, 600), torch.nn.Linear(600, 8)]
        model = torch.nn.Sequential(*layers)
        reference = copy.deepcopy(model)
        ddp = wrap_model(model, loss_fn, torch.device("cpu"))
        grads = BucketGrads(list(model.parameters()))
        for _ in range(3):
            x = torch.randn(4, 600)
            grads.zero()
            ddp(x, None, None, None).backward()
            norm = grads.clip_(1.0)
            reference.zero_grad()
            loss_fn(reference, Batch(x, None, None, None)).backward()
            expected = torch.nn.utils.clip_grad_norm_(reference.parameters(), 1.0)
            torch.testing.assert_close(norm, expected, rtol=1e-5, atol=1e-6)
            for p, q in zip(model.parameters(), reference.parameters(), strict=True):
                torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6)
        assert ddp._get_ddp_logging_data()["has_rebuilt_buckets"] == 1
        assert len(grads.buckets()) == 2
        snapshot = grads.snapshot()
        grads.zero()
        assert all(not b.any() for b in grads.buckets())
        grads.restore(snapshot)
        assert all(torch.equal(b, s) for b, s in zip(grads.buckets(), snapshot, strict=True))
    finally:
        dist.destroy_process_group()


def test_ddp_step_sums_like_one_process_and_stops_both_ranks_alike(tmp_path):
    from noshow.training.loop import LoopState, _optimizer_step
    from noshow.training.step import FlatGrads

    out = tmp_path / "ranks"
    out.mkdir()
    helper = tmp_path / "ddp_helper.py"
    helper.write_text(DDP_HELPER.format(tests=str(REPO / "tests"), out=str(out), in_backward=False))
    run_torchrun([str(helper)], {})
    r0, r1 = (torch.load(out / f"rank{r}.pt", weights_only=False) for r in (0, 1))

    model, enc = make_linear_problem()
    opt = RecordingOptimizer(model.parameters())
    grads = FlatGrads(list(model.parameters()))
    single_losses = []
    for idx in (BATCH_UNEVEN, BATCH_ONE_ROW):
        state = LoopState(micro_batch=len(idx))
        step_fn = linear_step_fn(model, enc)
        session = SimpleNamespace(log=print)
        loss = _optimizer_step(step_fn, idx, uniform(idx), opt, grads, state, session)
        single_losses.append(float(loss))

    c0, c1 = r0["cancel"], r1["cancel"]
    # rank 1 alone ran out of memory inside DDP's forward and went on with 2 + 1 rows
    assert r1["ooms"] == [3] and c1["micro_batch"] == 2 and c0["micro_batch"] == 4
    for step in range(2):  # step 2: rank 1's shard is empty, it joins with a zero step
        assert torch.equal(c0["grads"][step], c1["grads"][step])
        torch.testing.assert_close(c0["grads"][step], opt.seen[step], atol=1e-6, rtol=1e-5)
    assert np.allclose(c0["losses"], single_losses, atol=1e-6) and c0["losses"] == c1["losses"]
    # rank 1 voted to stop in step 2: both stop before step 3, at the same step
    assert c0["error"] == c1["error"] == "TrainingCancelled: " and c0["steps"] == c1["steps"] == 2

    f0, f1 = r0["fail"], r1["fail"]
    assert f1["error"] == "ValueError: boom on rank 1" and f1["steps"] == 0
    assert f0["error"].startswith("TrainingError: Training failed in 1 of 2 processes at step 1")
    assert f0["steps"] == 1 and f0["shared"] and f1["shared"]


def test_ddp_failure_inside_the_synchronised_backward_ends_the_launch(tmp_path):
    out = tmp_path / "ranks"
    out.mkdir()
    helper = tmp_path / "ddp_helper.py"
    helper.write_text(DDP_HELPER.format(tests=str(REPO / "tests"), out=str(out), in_backward=True))
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    t0 = time.time()
    proc = subprocess.run(
        [*TORCHRUN, str(helper)], cwd=REPO, env=env, capture_output=True, text=True, timeout=150
    )
    assert proc.returncode != 0  # the launcher saw rank 1 fail and ended rank 0
    assert (out / "rank1.txt").read_text() == "boom in backward on rank 1"
    # rank 0 never finished its step: ended by the launcher, or (gloo) its all_reduce failed
    # when rank 1's process went away
    rank0 = out / "rank0.txt"
    assert not rank0.exists() or "Connection closed by peer" in rank0.read_text()
    assert time.time() - t0 < 120


# ----------------------------------------------------------------------------- scripts/train.py


def cli_args(model_dir: Path, data: Path, out: Path, approach: str, steps: int) -> list[str]:
    return [
        "--yes",  # 32 evaluation rows: a test of the launcher, not a model to judge
        "--approach",
        approach,
        "--model",
        str(model_dir),
        "--data",
        str(data),
        "--split",
        "random",
        "--max-train-rows",
        "64",
        "--max-eval-rows",
        "32",
        "--max-steps",
        str(steps),
        "--batch-size",
        "16",
        "--quantize",
        "none",
        "--lora-r",
        "4",
        "--lora-alpha",
        "8",
        "--lora-dropout",
        "0",
        "--lr",
        "1e-3",
        "--output-dir",
        str(out),
    ]


def load_cli():
    """scripts/train.py as a module (scripts are not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("noshow_train_cli", REPO / "scripts/train.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    return cli


def test_torchrun_two_processes_train_like_one_process_flat_and_ddp(
    tiny_model_dir, statements_csv, tmp_path, monkeypatch
):
    from noshow.training import runs

    cli = load_cli()
    args = cli_args(tiny_model_dir, statements_csv, tmp_path / "unused", "classifier", 4)
    finished = {}
    for mode in ("flat", "ddp"):
        out, ranks = tmp_path / f"runs-{mode}", tmp_path / f"ranks-{mode}"
        t0 = time.time()
        output = run_torchrun(
            [str(REPO / "scripts" / "train.py"), *args[:-1], str(out), "--data-parallel", mode],
            {"NOSHOW_DEBUG_RANK_STATE": str(ranks)},
        )
        elapsed = time.time() - t0
        (run_dir,) = list(out.iterdir())  # exactly one run folder
        assert runs.read_status(run_dir)["state"] == "completed", output[-3000:]
        assert runs.adapter_dir(run_dir) is not None
        assert not list(run_dir.glob("*.partial"))
        log = (run_dir / "train.log").read_text()
        assert log.count("adapter saved to") == 1  # saved once, by rank 0
        assert f"2 processes ({mode})" in log
        assert output.count("Run folder:") == 1  # one closing line, from rank 0
        assert "Test ROC-AUC" in output
        metrics = runs.read_metrics(run_dir).dropna(subset=["loss"])
        assert metrics["step"].tolist() == [1, 2, 3, 4]  # one line per step, not per rank
        preds = runs.read_predictions(run_dir)
        assert len(preds) == 48 and preds["p_no_show"].between(0, 1).all()

        r0, r1 = (torch.load(ranks / f"rank{r}.pt") for r in (0, 1))
        assert r0["step"] == r1["step"] == 4
        assert r0["trainable"].keys() == r1["trainable"].keys() and r0["trainable"]
        assert all(torch.equal(r0["trainable"][k], r1["trainable"][k]) for k in r0["trainable"])
        finished[mode] = (metrics["loss"].to_numpy(), r0["trainable"], preds)
        print(f"torchrun 2 processes ({mode}), 4 steps, end to end: {elapsed:.1f}s")

    # the same run in one process: the same losses at every step, the same weights
    from noshow.training.recipe import train

    monkeypatch.setenv("NOSHOW_DEBUG_RANK_STATE", str(tmp_path / "single"))
    config = cli.config_from_args(cli.parse_args([*args[:-1], str(tmp_path / "single-runs")]))
    single = train(config)
    assert single.state == "completed"
    one = torch.load(tmp_path / "single" / "rank0.pt")
    single_losses = runs.read_metrics(single.run_dir).dropna(subset=["loss"])["loss"].to_numpy()
    single_preds = runs.read_predictions(single.run_dir)
    for mode, (losses, trainable, preds) in finished.items():
        np.testing.assert_allclose(losses, single_losses, atol=1e-6, err_msg=mode)
        for k, v in one["trainable"].items():
            torch.testing.assert_close(trainable[k], v, atol=1e-6, rtol=1e-5, msg=mode)
        # scores gathered from both ranks' shards land on the right rows (raw scores: on this
        # random model the calibration method is a near-tie that 1e-7 can flip)
        np.testing.assert_allclose(preds["p_no_show_raw"], single_preds["p_no_show_raw"], atol=1e-5)
        assert preds["record_id"].tolist() == single_preds["record_id"].tolist()


def test_data_parallel_flag_is_in_train_help_from_the_config(capsys, monkeypatch):
    from noshow.config import option

    monkeypatch.setenv("COLUMNS", "2000")
    with pytest.raises(SystemExit):
        load_cli().parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    o = option("train", "data_parallel")
    assert o.choices == ("flat", "ddp") and o.default == "flat"
    assert f"--data-parallel {{flat,ddp}} {o.help} (default: flat)" in text


def test_bench_scaling_runs_every_row_on_the_cpu(tiny_model_dir, statements_csv, tmp_path):
    """scripts/bench_scaling.py --device cpu: one process, then flat and DDP on 2 processes
    (gloo); every row trains to the end and the table has its columns (no speed is judged)."""
    env = {k: v for k, v in os.environ.items() if k not in ("NOSHOW_DATA", "WORLD_SIZE")}
    out = tmp_path / "scaling"
    args = cli_args(tiny_model_dir, statements_csv, tmp_path / "unused", "classifier", 4)
    keep = ["--model", "--split", "--max-train-rows", "--quantize", "--lora-r", "--lr"]
    extra = [w for i, w in enumerate(args) if w in keep or (i and args[i - 1] in keep)]
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_scaling.py"), "--data", str(statements_csv),
         "--device", "cpu", "--steps", "4", "--steady-from", "1", "--batch-size", "16",
         "--eval-rows", "32", "--out", str(out), *extra],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == [
        "processes",
        "data parallel",
        "engine",
        "steady statements/s",
        "speed-up",
        "final loss",
        "test ROC-AUC",
        "wall s",
    ]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]
    assert [c[:3] for c in cells] == [
        ["1", "-", "eager"],
        ["2", "flat", "eager"],
        ["2", "ddp", "eager"],
    ]
    assert cells[0][4] == "1.00x" and all(c[4].endswith("x") for c in cells)
    losses = [float(c[5]) for c in cells]
    assert max(losses) - min(losses) < 1e-4  # the same run, however it is spread
    rows = json.loads((out / "scaling.json").read_text())
    assert all(r["statements_per_s"] > 0 and r["test_roc_auc"] is not None for r in rows)
    log = (out / "procs-2-ddp" / "train.log").read_text()
    assert "2 processes (ddp)" in log


# ----------------------------------------------------------------------------- the app


def _tab(ctx):
    import gradio as gr

    from noshow.app.train_tab import build_train_tab

    with gr.Blocks():
        ctx.data_key = gr.State(None)
        return build_train_tab(ctx)


def test_gpu_control_is_hidden_without_several_gpus(tmp_path, monkeypatch):
    import noshow.training.distributed
    from noshow.app.common import UIContext
    from noshow.training.jobs import JobManager

    assert noshow.training.distributed.visible_gpu_count() <= 1  # this CPU machine
    ctx = UIContext(jobs=JobManager(runs_dir=tmp_path), store=None, runs_dir=tmp_path)
    assert _tab(ctx)["gpus"] is None
    monkeypatch.setattr(noshow.training.distributed, "visible_gpu_count", lambda: 1)
    assert _tab(ctx)["gpus"] is None


def test_app_starts_torchrun_on_fake_gpus_and_cancel_stops_both_ranks(
    tiny_model_dir, statements_csv, tmp_path, monkeypatch
):
    import noshow.training.distributed
    import noshow.training.preflight
    from noshow.app.common import UIContext
    from noshow.training import runs
    from noshow.training.jobs import JobManager

    monkeypatch.setattr(noshow.training.distributed, "visible_gpu_count", lambda: 2)
    monkeypatch.setenv("NOSHOW_DEBUG_RANK_STATE", str(tmp_path / "ranks"))
    # its 24 evaluation rows would make Start ask first (tests/test_browser_newcomer.py)
    monkeypatch.setattr(noshow.training.preflight, "run_cautions", lambda *a, **k: [])
    runs_dir = tmp_path / "runs"
    jobs = JobManager(runs_dir=runs_dir)
    tab = _tab(UIContext(jobs=jobs, store=None, runs_dir=runs_dir))
    assert tab["gpus"] is not None  # its range is the refusal's below (no browser pop-up)
    form = dict(
        approach="generative",
        model=str(tiny_model_dir),
        data_source=str(statements_csv),
        split="random",
        max_train_rows=64,
        max_eval_rows=32,
        epochs=1,
        max_steps=1000,
        lr=1e-3,
        batch_size=16,
        lora_r=4,
        eval_every=0,
        quantize="none",
        wandb=False,
        use_clinician_labels=False,
    )
    assert "between 1 and 2" in tab["start_training"](**form, gpus=3)
    message = tab["start_training"](**form, gpus=2)
    assert "on 2 GPUs" in message, message

    deadline = time.time() + 120
    while time.time() < deadline and jobs.snapshot()["progress"].get("step", 0) < 2:
        assert jobs.snapshot()["active"], jobs.snapshot()
        time.sleep(0.1)
    snap = jobs.snapshot()
    assert snap["progress"]["phase"] == "training" and snap["progress"]["total_steps"] == 1000
    assert snap["gpus"] == 2 and any("loss" in p for p in snap["history"])
    assert jobs.cancel()
    assert jobs.wait(90), "torchrun did not stop"
    snap = jobs.snapshot()
    assert snap["state"] == "cancelled", snap
    run_dir = Path(snap["run_dir"])
    assert [p.name for p in runs_dir.iterdir()] == [run_dir.name]
    assert runs.read_status(run_dir)["state"] == "cancelled"
    assert runs.adapter_dir(run_dir) is None
    assert (run_dir / noshow.training.distributed.CANCEL_FILE).exists()
    assert json.loads((run_dir / "config.json").read_text())["train"]["approach"] == "generative"
    r0, r1 = (torch.load(tmp_path / "ranks" / f"rank{r}.pt") for r in (0, 1))
    assert 2 <= r0["step"] == r1["step"] < 1000  # both ranks stopped, at the same step
    assert all(torch.equal(r0["trainable"][k], r1["trainable"][k]) for k in r0["trainable"])
