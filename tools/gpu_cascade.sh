#!/usr/bin/env bash
# A cascade on a GPU, in one call: train a cascade's two stages larger than the
# CPU recipe (a mask stage at 3.99 µm/px drawing from a 16 µm/px tissue mask, then a 4x
# super-resolution stage at 0.998 µm/px; train region of the sample slide only), write
# them with a cascade.json, synthesise a held-out evaluation field from a generated
# layout and measure it against the slide's test region (`gigasynth eval`, 1x/4x/16x);
# the same for the bundled cascade, then print both and a one-line verdict
# (tools/gpu_cascade.py: replace only if better on KID at 4x and 16x and on the
# band ratios).
# Usage (repository root, a Python with CUDA torch and gigasynth's dependencies):
#     bash tools/gpu_cascade.sh [BUNDLED]   # BUNDLED: cascade to compare with
#                                                # (default builtin:skin; "none": skip)
#     SMOKE=1 bash tools/gpu_cascade.sh     # the same logic on CPU, toy sizes
# Env: OUT (default ./gpu_out), SLIDE (default data/cmu_small_region.svs), PYTHON, PRESET (small), BATCH (32), LAYOUT_SECONDS (90) and
# SR_SECONDS (120) of training each (`gigasynth train --max-seconds`), FIELD (2048x2048).
# Stages capped at 120 + 150 + 90 + 50 + 60 + 50 s = 520 s (a 9-minute call); each cap
# leaves 30 s for a training stage's start-up (CUDA, data) beyond its --max-seconds.
# Writes under $OUT: env.txt, cascade/{cascade.json,layout/,sr4/} (run folders: checkpoint,
# training state, metrics.jsonl), gpu-field.{ome.zarr,png}, eval-gpu.{json,png},
# bundled-field.*, eval-bundled.*, verdict.txt, timings.txt and a log per stage.
set -uo pipefail
OUT="${OUT:-gpu_out}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python}"
BUNDLED="${1:-${BUNDLED:-builtin:skin}}"
[ "$BUNDLED" = none ] && BUNDLED=""
SLIDE="${SLIDE:-data/cmu_small_region.svs}"
if [ ! -f "$SLIDE" ]; then
    echo "gpu_cascade: sample slide not found ($SLIDE); set SLIDE=PATH" >&2
    exit 2
fi
if [ -e "$OUT/cascade" ]; then
    echo "gpu_cascade: $OUT/cascade exists; choose another OUT" >&2
    exit 2
fi
mkdir -p "$OUT"

if [ "${SMOKE:-0}" = 1 ]; then  # the script's logic in a few minutes on two CPU cores
    DEVICE=cpu PRESET=tiny BATCH=2 LAYOUT_SIZE=16 SR_SIZE=16 WORKERS=0
    ITERATIONS=100000 LAYOUT_SECONDS=3 SR_SECONDS=3 FIELD=512x512 STEPS=(2 2)
    EVAL=(--n 8 --crop 16 --bootstrap 20)
    CAPS=(120 120 120 120 120 120)
else
    DEVICE=cuda PRESET="${PRESET:-small}" BATCH="${BATCH:-32}" LAYOUT_SIZE=96 SR_SIZE=128
    WORKERS=4 ITERATIONS=100000 LAYOUT_SECONDS="${LAYOUT_SECONDS:-90}"
    SR_SECONDS="${SR_SECONDS:-120}" FIELD="${FIELD:-2048x2048}" STEPS=(25 20)
    EVAL=(--crop 32)  # n 256, 500 bootstrap resamples: docs/RESULTS.md's protocol
    CAPS=(120 150 90 50 60 50)
fi
status=0
: > "$OUT/timings.txt"

stage() {  # stage NAME CAP CMD...: CMD under `timeout CAP`, logged (stdout: $STDOUT_TO) and timed
    local name=$1 cap=$2 t0 rc
    shift 2
    t0=$(date +%s)
    if [ -n "${STDOUT_TO:-}" ]; then
        timeout "$cap" "$@" > "$STDOUT_TO" 2> "$OUT/$name.log"
    else
        timeout "$cap" "$@" > "$OUT/$name.log" 2>&1
    fi
    rc=$?
    echo "$name: rc $rc, $(($(date +%s) - t0)) s (cap $cap s)" | tee -a "$OUT/timings.txt"
    [ $rc = 0 ] || { tail -5 "$OUT/$name.log"; status=1; }
    return $rc
}

"$PY" - <<'PY' 2>&1 | tee "$OUT/env.txt"
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda)
print("device", torch.cuda.get_device_name() if torch.cuda.is_available() else "NO CUDA")
PY
if [ "$DEVICE" = cuda ] && grep -q "NO CUDA" "$OUT/env.txt"; then
    echo "gpu_cascade: no CUDA device (SMOKE=1 runs the toy sizes on CPU)" >&2
    exit 2
fi

TRAIN=(--data "$SLIDE" --region train --preset "$PRESET" --batch "$BATCH" --iterations
    "$ITERATIONS" --augment dihedral --loss-weighting min-snr --condition-downsample 4
    --save-every 100 --loader-workers "$WORKERS" --seed 0 --device "$DEVICE" --quiet)
echo "== 1. mask stage: $PRESET, ${LAYOUT_SIZE} px crops at 3.99 µm/px, ${LAYOUT_SECONDS} s"
# A timeout still leaves the last --save-every checkpoint (written atomically).
stage train-layout "${CAPS[0]}" "$PY" -m gigasynth train "${TRAIN[@]}" --downsample 8 \
    --size "$LAYOUT_SIZE" --condition-kind mask --condition-noise 0.1 --min-tissue 0 \
    --max-seconds "$LAYOUT_SECONDS" --out "$OUT/cascade/layout"
echo "== 2. 4x super-resolution stage: ${SR_SIZE} px crops at 0.998 µm/px, ${SR_SECONDS} s"
stage train-sr4 "${CAPS[1]}" "$PY" -m gigasynth train "${TRAIN[@]}" --downsample 2 \
    --size "$SR_SIZE" --condition-noise 0.05 --max-seconds "$SR_SECONDS" \
    --out "$OUT/cascade/sr4"
"$PY" tools/gpu_cascade.py define "$OUT/cascade" --steps "${STEPS[@]}" \
    2>&1 | tee "$OUT/define.log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1

evaluate() {  # evaluate NAME CASCADE SYNTH_CAP EVAL_CAP: a field, then its held-out figures
    local name=$1 cascade=$2
    stage "synth-$name" "$3" "$PY" -m gigasynth synth --checkpoint "$cascade" --size "$FIELD" \
        --seed 0 --tile 0 --out "$OUT/$name-field.ome.zarr" --preview "$OUT/$name-field.png" \
        || return 1
    STDOUT_TO="$OUT/eval-$name.json" stage "eval-$name" "$4" "$PY" -m gigasynth eval \
        --real "$SLIDE" --fake "$OUT/$name-field.ome.zarr" --scales 1,4,16 "${EVAL[@]}" \
        --device "$DEVICE" --report "$OUT/eval-$name.png" --json
}
echo "== 3. held-out field of the GPU cascade ($FIELD, generated layout) and its figures"
[ -f "$OUT/cascade/cascade.json" ] && evaluate gpu "$OUT/cascade" "${CAPS[2]}" "${CAPS[3]}"
VERDICT=("$OUT/eval-gpu.json")
if [ -n "$BUNDLED" ]; then
    echo "== 4. the same for the bundled cascade ($BUNDLED)"
    evaluate bundled "$BUNDLED" "${CAPS[4]}" "${CAPS[5]}" && VERDICT+=("$OUT/eval-bundled.json")
fi
echo "== 5. figures and verdict"
"$PY" tools/gpu_cascade.py verdict "${VERDICT[@]}" 2>&1 | tee "$OUT/verdict.txt"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
exit $status
