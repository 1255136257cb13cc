"""Load test: N concurrent users run Compare (one statement, both adapters) against one app on
this machine for D seconds, optionally while batch evaluations run; prints a Markdown table
(requests, errors, latency percentiles, how the scheduler served them, app memory).

    python scripts/load_test.py                          # 20 users x 60 s (make bench-load)
    python scripts/load_test.py --users 3 --duration 5   # a quick smoke run
    python scripts/load_test.py --adapters shipped       # the adapters in adapters/
    python scripts/load_test.py --adapters shipped --batches 2   # with 2 batch evaluations
    python scripts/load_test.py --statements examples    # the five example buttons' texts
    python scripts/load_test.py --url http://127.0.0.1:7860/ --auth user:password
    python scripts/load_test.py --users 1 --duration 60 --while-training   # issue 5's goal
    python scripts/load_test.py --adapters shipped --clicks both   # without pause, then with
                                                   # think time (a visitor's mix), both reported

Without --url it starts `python app.py` as a public demo (NOSHOW_DEMO=1, as on a Space) on a
free port, with a runs folder holding two adapters: `--adapters tiny` trains a generative and
a classifier adapter on a tiny random Llama here on the CPU (seconds; measures the app, the
queue and the scoring path, not a real model's arithmetic), `--adapters bundled` trains them
on the bundled SmolLM2-135M (about a minute; real arithmetic per request), `--adapters
shipped` uses the shipped ones in adapters/, `auto` (default) takes the shipped ones when
both approaches are there, else tiny. `--runs-dir` uses the finished runs of a folder.

Each user is its own gradio_client session calling /compare in a loop, one request at a
time. `--statements rows` (default) sends every request a statement no one sent before
(rendered from rows of the real data file when present, else from random form rows), so
the app's answer cache never helps and every Compare is scored; `--statements examples`
cycles the five example statements (what the example buttons send: after the first round
the cache answers). A request is an error unless both adapters return a finite
P(no-show) in [0, 1]. Latency is the client's wall time for the whole call (queueing
included); "scoring" is the app's own figure for the forwards that served it (both
adapters); "waited" is the time the app's scheduler held it before its forward, and
"shared" how many statements that forward scored (noshow.inference.scheduler).
`--batches N` starts N batch evaluations (/compare_batch, one per session, each restarted
when it finishes) before the clock and keeps them running through the window; the report
gives the rows they scored in it.
The app's resident memory (with its child processes) is sampled every 0.2 s. The first
request, which loads both adapters, is made before the clock starts and reported apart.
`--while-training` starts the app with training allowed (no demo mode) and, before the
clock starts, a training job through its /start_training endpoint (classifier head on the
bundled SmolLM2-135M, synthetic data, the "quick CPU demo" settings with steps enough to
outlast the window), so the Compare figures are those of an app whose background thread
trains on the same cores; the report gives the steps the job made during the window, and
the job is cancelled at the end. Run it once without the flag for the idle figures.
`--clicks think` gives each user a think time of 3-12 s between an answer and the next click
and a seeded mix of actions as on a Space (half typed statements, 30% example buttons, 20%
what-ifs: scripts/load_users.py's MIX); `--clicks nonstop` (default) clicks without pause;
`--clicks both` runs the two windows one after the other on the same app and prints a table
for each, with latency percentiles per kind of action.
Exit status 1 when any request failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))  # the app and the users are modules beside this one

from app_process import (  # noqa: E402
    MemorySampler,
    machine_line,
    shipped_adapters,
    start_app,
    stop_app,
    train_adapters,
)
from load_users import (  # noqa: E402
    BATCH_ROWS,
    ROUND_TRIP_CALLS,
    BatchRunners,
    Sample,
    Statements,
    check_answer,
    measure_http_compare,
    measure_round_trip,
    percentile,
    run_think_users,
    run_users,
    start_training_job,
    training_line,
    training_snapshot,
)


@dataclass
class Report:
    users: int
    duration_s: float
    samples: list[Sample] = field(default_factory=list)
    first_request_s: float | None = None
    rss_start_mb: float | None = None
    rss_peak_mb: float | None = None
    adapters: str = ""
    url: str = ""
    training: str = ""  # while-training: the job and the steps it made in the window
    round_trip_s: float | None = None  # p50 of the app's cheapest endpoint: Gradio's own cost
    http_compare_s: float | None = None  # p50 of one Compare over plain HTTP
    http_scoring_s: float | None = None  # ... and of its scoring (both adapters)
    statements: str = ""  # what the users sent
    batches: str = ""  # batch evaluations running through the window
    load: str = ""  # the machine's load average at the start and the end
    clicks: str = "nonstop"  # users clicking without pause, or with think time

    @property
    def errors(self) -> list[Sample]:
        return [s for s in self.samples if not s.ok]


def fmt(value: float | None, scale: float = 1000.0) -> str:
    return "-" if value is None else f"{value * scale:,.0f}"


def markdown(report: Report, command: str) -> str:
    import gradio

    ok = [s.seconds for s in report.samples if s.ok]
    every = [s.seconds for s in report.samples]
    scoring = [s.scoring_ms / 1000 for s in report.samples if s.scoring_ms is not None]
    waited = [s.queue_ms / 1000 for s in report.samples if s.queue_ms is not None]
    shared = [float(s.shared) for s in report.samples if s.shared]
    n = len(report.samples)
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"## Load test: Compare, {report.users} users x {report.duration_s:.0f} s"
        + (" with think time (a visitor's mix)" if report.clicks == "think" else "")
        + (" while a job trains" if report.training else ""),
        "",
        f"- date: {when}",
        f"- machine: {machine_line()}",
        f"- app: {report.url} (Gradio {gradio.__version__}); adapters: {report.adapters}",
        f"- command: `{command}`",
        *([f"- while training: {report.training}"] if report.training else []),
        f"- gradio_client round trip (p50 of {ROUND_TRIP_CALLS} calls to /compare_adapters, "
        f"which does no model work, before the clock): {fmt(report.round_trip_s)} ms",
        f"- one Compare over plain HTTP (Gradio's call API on one kept-alive connection, as "
        f"curl or a browser's fetch calls it; p50 of {ROUND_TRIP_CALLS}, before the clock): "
        f"{fmt(report.http_compare_s)} ms, of which scoring both adapters "
        f"{fmt(report.http_scoring_s)} ms",
        f"- first request (loads both adapters, before the clock): "
        f"{fmt(report.first_request_s)} ms",
        *([f"- statements: {report.statements}"] if report.statements else []),
        *([f"- batch evaluations: {report.batches}"] if report.batches else []),
        *([f"- load average (1 min) at start, end: {report.load}"] if report.load else []),
        "",
        "| users | duration (s) | requests | errors | requests/s | p50 (ms) | p95 (ms) | "
        "max (ms) | scoring p50 (ms) | app RSS start (MB) | app RSS peak (MB) | "
        "waited p50 (ms) | shared p50 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {report.users} | {report.duration_s:.0f} | {n:,} | {len(report.errors):,} | "
        f"{n / report.duration_s:,.1f} | {fmt(percentile(every, 0.5))} | "
        f"{fmt(percentile(every, 0.95))} | {fmt(max(every) if every else None)} | "
        f"{fmt(percentile(scoring, 0.5))} | {fmt(report.rss_start_mb, 1)} | "
        f"{fmt(report.rss_peak_mb, 1)} | {fmt(percentile(waited, 0.5))} | "
        f"{fmt(percentile(shared, 0.5), 1)} |",
    ]
    kinds = sorted({s.kind for s in report.samples})
    if len(kinds) > 1:
        lines.append(
            "\n| action | requests | errors | p50 (ms) | p95 (ms) |\n|---|---:|---:|---:|---:|"
        )
        for kind in kinds:
            times = [s.seconds for s in report.samples if s.kind == kind]
            bad = sum(not s.ok for s in report.samples if s.kind == kind)
            lines.append(
                f"| {kind} | {len(times):,} | {bad:,} | {fmt(percentile(times, 0.5))} | "
                f"{fmt(percentile(times, 0.95))} |"
            )
    if ok and len(ok) != n:
        lines.append(f"\nLatency of successful requests only: p50 {fmt(percentile(ok, 0.5))} ms.")
    if report.errors:
        shown = sorted({s.error or "?" for s in report.errors})[:5]
        lines.append("\nErrors (first kinds): " + "; ".join(f"`{e}`" for e in shown))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    p.add_argument("--users", type=int, default=20, help="concurrent sessions (default 20)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    p.add_argument(
        "--adapters",
        choices=["auto", "tiny", "bundled", "shipped"],
        default="auto",
        help="auto: shipped when adapters/ has both approaches, else tiny",
    )
    p.add_argument("--runs-dir", default=None, help="use the finished runs of this folder")
    p.add_argument("--url", default=None, help="an app already running (not started here)")
    p.add_argument("--auth", default=None, help="user:password for an app with NOSHOW_AUTH")
    p.add_argument("--generative", default=None, help="adapter path (default: the app's first)")
    p.add_argument("--classifier", default=None, help="adapter path (default: the app's first)")
    p.add_argument(
        "--statements",
        choices=["rows", "examples"],
        default="rows",
        help="rows: a new statement per request (default); examples: the five examples",
    )
    p.add_argument(
        "--batches",
        type=int,
        default=0,
        help="batch evaluations kept running through the window (one session each)",
    )
    p.add_argument(
        "--clicks",
        choices=["nonstop", "think", "both"],
        default="nonstop",
        help="users click without pause, with think time and a visitor's mix, or both in turn",
    )
    p.add_argument(
        "--while-training",
        action="store_true",
        help="start a training job in the app first and measure Compare while it trains",
    )
    args = p.parse_args(argv)
    if args.users < 1 or args.duration <= 0 or args.batches < 0:
        p.error("--users must be at least 1, --duration positive, --batches 0 or more")
    if args.while_training and args.url:
        p.error("--while-training starts its own app; leave out --url")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    report = Report(users=args.users, duration_s=args.duration)
    reports: list[Report] = []
    workdir = Path(tempfile.mkdtemp(prefix="noshow-load-"))
    proc = sampler = None
    gen, clf = args.generative, args.classifier
    try:
        if args.url:
            url = args.url
            report.adapters = "as listed by the app"
        else:
            runs_dir = workdir / "runs"
            runs_dir.mkdir()
            shipped = shipped_adapters()
            use_shipped = args.adapters == "shipped" or (
                args.adapters == "auto" and {"generative", "classifier"} <= set(shipped)
            )
            if args.runs_dir:
                runs_dir = Path(args.runs_dir)
                report.adapters = f"finished runs in {runs_dir}"
            elif use_shipped:
                if not {"generative", "classifier"} <= set(shipped):
                    sys.exit("--adapters shipped: adapters/ lacks a generative or classifier one.")
                gen, clf = gen or shipped["generative"], clf or shipped["classifier"]
                report.adapters = f"shipped: {Path(gen).name}, {Path(clf).name}"
            else:
                base = "bundled" if args.adapters == "bundled" else "tiny"
                print(f"Training two {base} adapters on the CPU...", file=sys.stderr)
                new_gen, new_clf = train_adapters(runs_dir, base)
                gen, clf = gen or new_gen, clf or new_clf
                report.adapters = (
                    "tiny random Llama (2 layers, hidden 16), one per approach"
                    if base == "tiny"
                    else "bundled SmolLM2-135M-Instruct + LoRA r4 (2 steps), one per approach"
                )
            demo = not args.while_training
            print(f"Starting python app.py (NOSHOW_DEMO={int(demo)})...", file=sys.stderr)
            proc, url, _ = start_app(runs_dir, workdir, demo=demo)
            sampler = MemorySampler(proc.pid)
        report.url = url
        if not (gen and clf):
            from gradio_client import Client

            client = Client(url, auth=auth, verbose=False)
            gen_dd, clf_dd, _ = client.predict(None, None, api_name="/compare_adapters")
            client.close()
            gen, clf = gen or gen_dd.get("value"), clf or clf_dd.get("value")
            if not (gen and clf):
                sys.exit("The app lists no generative or no classifier adapter to compare.")
        from gradio_client import Client

        client = Client(url, auth=auth, verbose=False)
        start = time.time()
        answer = client.predict("A first statement.", gen, clf, "", api_name="/compare")
        report.first_request_s = time.time() - start
        report.round_trip_s = measure_round_trip(client)
        client.close()
        report.http_compare_s, report.http_scoring_s = measure_http_compare(url, gen, clf, auth)
        ok, _, error = check_answer(answer)
        if not ok:
            sys.exit(f"The first Compare failed: {error}")
        if sampler is not None:
            sampler.start_mb = sampler.peak_mb = sampler._rss_mb()
            sampler.start()
        watcher = before = runners = None
        if args.while_training:
            print("Starting a training job in the app...", file=sys.stderr)
            watcher = Client(url, auth=auth, verbose=False)
            before = start_training_job(watcher)
        if args.batches:
            print(f"Starting {args.batches} batch evaluation(s)...", file=sys.stderr)
            runners = BatchRunners(url, gen, clf, args.batches, auth)
            runners.start()
        rows_before = runners.progress() if runners else 0
        reports = []
        for clicks in ["nonstop", "think"] if args.clicks == "both" else [args.clicks]:
            if clicks != "nonstop" or args.clicks == "both":
                report = dataclasses.replace(report, samples=[], clicks=clicks)
            statements = Statements(args.statements, seed=len(reports))
            report.statements = statements.source
            load_start = os.getloadavg()[0]
            print(
                f"{args.users} users ({clicks}) x {args.duration:.0f} s against {url}...",
                file=sys.stderr,
            )
            run = run_think_users if clicks == "think" else run_users
            report.samples = run(
                url, gen, clf, args.users, args.duration, auth, statements=statements
            )
            report.load = f"{load_start:.1f}, {os.getloadavg()[0]:.1f}"
            reports.append(report)
        if runners is not None:
            still = sum(job is not None and not job.done() for job in runners.jobs)
            report.batches = (
                f"{args.batches} kept running (/compare_batch, {BATCH_ROWS} rows, one session "
                f"each); during the window they advanced {runners.progress() - rows_before:,} "
                f"scores (rows x 2 adapters; a restarted batch counts from 0), "
                f"{runners.finished} finished, "
                f"{still} running at the end"
                + (f"; a runner stopped early: {runners.error}" if runners.error else "")
            )
            runners.stop()
        if watcher is not None:
            report.training = training_line(before, training_snapshot(watcher), args.duration)
            watcher.predict(api_name="/cancel_training")
            watcher.close()
        if sampler is not None:
            sampler.stop()
            report.rss_start_mb, report.rss_peak_mb = sampler.start_mb, sampler.peak_mb
    finally:
        if proc is not None:
            stop_app(proc)
        shutil.rmtree(workdir, ignore_errors=True)
    command = "python scripts/load_test.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    for each in reports or [report]:
        print(markdown(each, command.strip()) + "\n")
    return 1 if any(r.errors or not r.samples for r in reports or [report]) else 0


if __name__ == "__main__":
    sys.exit(main())
