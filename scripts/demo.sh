#!/usr/bin/env bash
# Set up, then run a small sweep of LeNet on real data (offline): its baseline trained first, every other
# trial fine-tuning from it; write its dashboard and export the smallest network within 1 point of the
# baseline's held-out error. Everything lands in demo/. Re-running continues the same study.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

if [[ -z "${SWEEP_DATA_DIR:-}" && -d ../shared/data/mnist ]]; then
  SWEEP_DATA_DIR=$(cd ../shared/data && pwd)
  export SWEEP_DATA_DIR
fi
dataset=fashion-mnist
if .venv/bin/python -c "import sys, sweep.data.datasets as d; sys.exit('mnist' not in d.available_offline())"; then
  dataset=mnist
fi
export SWEEP_OFFLINE=1
mkdir -p demo
storage="sqlite:///demo/sweep.db"
study="demo-lenet-$dataset-finetune"
resume=()
[[ -f demo/sweep.db ]] && resume=(--resume)

.venv/bin/python -m sweep run lenet --dataset "$dataset" --budget demo --study "$study" \
  --storage "$storage" --out demo/runs "${resume[@]}"
.venv/bin/python -m sweep pareto "$study" --storage "$storage"
.venv/bin/python -m sweep dashboard "$study" --storage "$storage" --out demo/dashboard.html
.venv/bin/python -m sweep export "$study" --storage "$storage" --out demo/export --force
echo "demo: open demo/dashboard.html; the compact model is in demo/export"
