#!/bin/sh
# The model comparisons of docs/RESULTS.md at one budget (7 of the 13 scripts it cites; the
# other six, which need a CPU-time budget or a checkpoint, cascade or output of their own,
# run with the commands given beside their figures). All budgets are variables:
#   ITER=200 BATCH=4 N=32 N_STEPS=16 N_PAIRED=16 STEPS=25 SCALE=tiny sh experiments/run_all.sh
# On a GPU, e.g.: SCALE=paper ITER=10000 BATCH=16 N=2048 N_STEPS=512 N_PAIRED=256 DEVICE=cuda
# (the scripts resume training and reuse cached samples, so a killed run continues).
set -eu
ITER=${ITER:-200}; BATCH=${BATCH:-4}; SCALE=${SCALE:-tiny}; STEPS=${STEPS:-25}
N=${N:-32}; N_STEPS=${N_STEPS:-16}; N_PAIRED=${N_PAIRED:-16}; DEVICE=${DEVICE:-cpu}
THREADS=${THREADS:-1}
common="--scale $SCALE --threads $THREADS"
for task in pathology faces; do
  python experiments/train_models.py --task $task $common --iterations "$ITER" --batch "$BATCH"
done
for task in pathology faces; do
  python experiments/quality.py --task $task $common --n "$N" --steps "$STEPS" --device "$DEVICE"
  python experiments/inpaint.py --task $task $common --n "$N_PAIRED" --steps "$STEPS" \
    --device "$DEVICE"
  python experiments/superres.py --task $task $common --n "$N_PAIRED" --steps "$STEPS" \
    --device "$DEVICE"
done
python experiments/ood_sizes.py --task pathology $common --n "$N" --scales 1 2 4 \
  --steps "$STEPS" --device "$DEVICE"
python experiments/ddim_steps.py --task pathology $common --n "$N_STEPS" \
  --steps 10 25 50 100 300 --device "$DEVICE"
python experiments/tables.py > docs/results/tables.md
