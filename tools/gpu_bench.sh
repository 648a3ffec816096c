#!/usr/bin/env bash
# The fused NCA kernels on a GPU, in one call: check the fused Triton update against the plain
# PyTorch ops on the device, time every kernel variant, then run `gigasynth bench`.
# Usage (repository root, a Python with CUDA torch and triton on PATH):
#     bash tools/gpu_bench.sh            # outputs under $OUT (default ./gpu_out)
#     STAGES="4 5" bash tools/gpu_bench.sh   # only the engine's stages
# Stages are capped at 240 + 300 + 240 s (Triton compiles each variant once), then
# 240 + 300 s for the engine's efficiency and 300 s for the plumbing per step.
set -uo pipefail
OUT="${OUT:-gpu_out}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python}"
status=0
want() { [[ " ${STAGES:-1 2 3 4 5} " == *" $1 "* ]]; }

"$PY" - <<'PY' 2>&1 | tee "$OUT/env.txt"
import torch, triton
print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)
print("device", torch.cuda.get_device_name() if torch.cuda.is_available() else "NO CUDA")
PY

if want 1; then
echo "== 1. tests/test_kernels.py on the GPU (kernel vs plain ops, model dispatch)"
timeout 240 "$PY" -m pytest tests/test_kernels.py -q -p no:cacheprovider 2>&1 \
    | tee "$OUT/test_kernels.txt" | tail -5 || status=1
fi

if want 2; then
echo "== 2. correctness at paper sizes and timing of every variant"
timeout 300 "$PY" tools/gpu_kernels.py --out "$OUT" > "$OUT/gpu_kernels.log" 2>&1 || status=1
tail -c 4000 "$OUT/gpu_kernels.log"
fi

if want 3; then
echo "== 3. gigasynth bench --device cuda (paper-pathology)"
timeout 240 "$PY" -m gigasynth bench --device cuda --preset paper-pathology --json \
    > "$OUT/bench.json" 2> "$OUT/bench.log" || status=1
"$PY" - "$OUT/bench.json" <<'PY' || status=1
import json, sys
from gigasynth.bench import format_report
print(format_report(json.load(open(sys.argv[1]))))
PY
fi

if want 4; then
echo "== 4. engine efficiency on the GPU: synthesize against the kernel"
# The bundled cascade's finest stage, and paper-pathology (random weights: the cost does
# not depend on them), each tiled in 2048 px regions with the default block of steps.
timeout 240 "$PY" -m gigasynth bench --device cuda --engine builtin:skin-sr4 --workers 1 \
    --json > "$OUT/engine-skin-sr4.json" 2> "$OUT/engine-skin-sr4.log" || status=1
"$PY" - "$OUT/paper-pathology" <<'PY' || status=1
import sys
from gigasynth.checkpoint import save_checkpoint
from gigasynth.config import preset
from gigasynth.models import build_model
config = preset("paper-pathology")
save_checkpoint(sys.argv[1], build_model(config, zero_output=False), config, {"mpp": 0.5})
PY
timeout 300 "$PY" -m gigasynth bench --device cuda --engine "$OUT/paper-pathology" --workers 1 \
    --json > "$OUT/engine-paper-pathology.json" 2> "$OUT/engine-paper-pathology.log" || status=1
for name in skin-sr4 paper-pathology; do
    "$PY" -c "import json,sys; e=json.load(open(sys.argv[1]))['engine']; print(sys.argv[2], \
        {k: e[k] for k in ('engine_mpx_steps_per_s', 'kernel_mpx_steps_per_s', 'efficiency', \
        'plumbing_share', 'block_steps')})" "$OUT/engine-$name.json" "$name" || status=1
done
fi

if want 5; then
echo "== 5. plumbing per step at K = 1, 4, 16 (0-step model, 2048 px tiles on the GPU)"
timeout 300 "$PY" experiments/pipeline_bench.py --size 8192 --tile 2048 --steps 16 \
    --block-steps 1 4 16 --workers 1 --out-dir "$OUT/pipeline" \
    --json "$OUT/pipeline.json" > "$OUT/pipeline.log" 2>&1 || status=1
tail -c 1500 "$OUT/pipeline.json"
fi
exit $status
