#!/usr/bin/env bash
# One go on a lent CUDA GPU (a few minutes): inference throughput of `paper` and `lite` in fp32 and bf16 at batch
# 1, 8 and 32 with peak GPU memory (the bench JSON's cuda_peak_mib), the GPU test suite (CUDA matches CPU, AMP
# training stays finite), a 2-minute `paper` training run with AMP and a `base` (real-part recipe) run on a small
# synthetic set.
#
#   bash benchmarks/gpu.sh                 # results under ${OUT:-runs/gpu}: one JSON per bench, train.log
#
# Nothing here runs in CI or on a CPU-only machine (it stops at once without a GPU). Numbers measured with it
# go into benchmarks/README.md with the GPU named; until then the README lists them as unmeasured.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-runs/gpu}"
mkdir -p "$out"
python - <<'PY' || { echo "no CUDA GPU: nothing to measure"; exit 0; }
import sys, torch
sys.exit(0 if torch.cuda.is_available() else 1)
PY
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.csv"

for preset in paper lite; do
  for precision in fp32 bf16; do
    for batch in 1 8 32; do
      python benchmarks/bench.py --preset "$preset" --device cuda --precision "$precision" --batch-size "$batch" \
        --gate control --min-seconds 5 --no-preprocess --json "$out/${preset}_${precision}_b${batch}.json" \
        | tail -1
    done
  done
done

python -m pytest -q -m gpu tests/test_gpu.py | tee "$out/gpu_tests.log"

python -m easynet synth "$out/data" --categories gasket --size 256 --n-train 40 --seed 0 > /dev/null
timeout 150 python -m easynet train --data "$out/data" --category gasket --preset paper --steps 400 \
  --device cuda --out "$out/paper_gasket.pt" 2>&1 | tail -5 | tee "$out/train.log" || true
# the real-part recipe (`base`, RGB only, the Fine-tune tab's default for photographs): its steps/s on this GPU
timeout 150 python -m easynet train --data "$out/data" --category gasket --modality rgb --preset base --steps 600 \
  --device cuda --out "$out/base_gasket.pt" 2>&1 | tail -5 | tee "$out/train_base.log" || true
echo "results in $out"
