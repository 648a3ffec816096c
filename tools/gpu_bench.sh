#!/usr/bin/env bash
# The fused NCA kernels on a GPU, in one call: check the fused Triton update against the plain
# PyTorch ops on the device, time every kernel variant, then run `gigasynth bench`.
# Usage (repository root, a Python with CUDA torch and triton on PATH):
#     bash tools/gpu_bench.sh            # outputs under $OUT (default ./gpu_out)
# Stages are capped at 240 + 300 + 240 s (Triton compiles each variant once).
set -uo pipefail
OUT="${OUT:-gpu_out}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python}"
status=0

"$PY" - <<'PY' 2>&1 | tee "$OUT/env.txt"
import torch, triton
print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)
print("device", torch.cuda.get_device_name() if torch.cuda.is_available() else "NO CUDA")
PY

echo "== 1. tests/test_kernels.py on the GPU (kernel vs plain ops, model dispatch)"
timeout 240 "$PY" -m pytest tests/test_kernels.py -q -p no:cacheprovider 2>&1 \
    | tee "$OUT/test_kernels.txt" | tail -5 || status=1

echo "== 2. correctness at paper sizes and timing of every variant"
timeout 300 "$PY" tools/gpu_kernels.py --out "$OUT" > "$OUT/gpu_kernels.log" 2>&1 || status=1
tail -c 4000 "$OUT/gpu_kernels.log"

echo "== 3. gigasynth bench --device cuda (paper-pathology)"
timeout 240 "$PY" -m gigasynth bench --device cuda --preset paper-pathology --json \
    > "$OUT/bench.json" 2> "$OUT/bench.log" || status=1
"$PY" - "$OUT/bench.json" <<'PY' || status=1
import json, sys
from gigasynth.bench import format_report
print(format_report(json.load(open(sys.argv[1]))))
PY
exit $status
