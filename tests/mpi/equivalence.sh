#!/usr/bin/env bash
# 2 ranks at global batch 64 and 1 rank at batch 64 (no dropout, no augmentation, same seed)
# give the same loss curve and weights after 20 steps.
#
# Tolerance 1e-5 on the loss of each step, relative; 1e-3 on the weights (below). The
# ranks sum the same 64 per-sample gradients in another order (two sums of 32, then their mean,
# and kernels tiled for batch 32 instead of 64): float32 sums of n terms differ by up to about
# n * 6e-8 = 4e-6 relative per step, far less in practice (2e-7 measured after 20 steps).
# A wrong average (a sum, or a rank's gradients alone) or a wrong shard moves the weights by
# 1e-2 or more. The weights (and the momentum) are compared at 1e-3: a rounding difference
# that small can still flip a max-pool choice or a ReLU sitting within it of a tie, and that
# moves a few gradients by their own size once (seen with AVX2's tile shapes: the velocity
# within 5e-7 up to step 16, then 3e-4 from step 18; the loss curve stayed within 5e-7).
# usage: equivalence.sh KILN DATA CKPT_DIFF
KILN=$1 DATA=$2 DIFF=$3
source "$(dirname "$0")/common.sh"
# One implementation per op: under auto, batch 64 and batch 32 shapes may get different
# implementations (whatever the tuning cache measured faster), whose rounding differs by more
# than the order of the sums this test is about (2e-4 on the velocity was seen).
export KILN_BACKEND=${KILN_BACKEND:-opencl}
"$KILN" "${TRAIN[@]}" --batch 64 --max-steps 20 --log-steps 1 --out "$WORK/one" >"$WORK/one.log" 2>&1 ||
  { cat "$WORK/one.log"; fail "1 rank"; }
mpirun -np 2 "$KILN" "${TRAIN[@]}" --batch 64 --max-steps 20 --log-steps 1 --out "$WORK/two" \
  >"$WORK/two.log" 2>&1 || { cat "$WORK/two.log"; fail "2 ranks"; }
grep -q "data parallel: 2 ranks, 32 images per rank" "$WORK/two.log" || { cat "$WORK/two.log"; fail "not 2 ranks"; }
[ "$(wc -l <"$WORK/two/steps.csv")" = 21 ] || fail "steps.csv of 2 ranks has not 20 steps"
# The loss of every step.
paste -d, "$WORK/one/steps.csv" "$WORK/two/steps.csv" | awk -F, 'NR > 1 {
    d = $5 - $11; if (d < 0) d = -d; r = d / ($5 > 1e-6 ? $5 : 1e-6); if (r > m) m = r
    if ($1 != $7) bad = 1 }
  END { printf "loss curve: largest relative difference %.3g over %d steps\n", m, NR - 1
        exit (bad || m > 1e-5) }' || fail "loss curves differ"
"$DIFF" "$WORK/one/last.safetensors" "$WORK/two/last.safetensors" 1e-3 || fail "weights differ"
# The same with the gradients split into many small buckets (many all-reduces in flight).
mpirun -np 2 "$KILN" "${TRAIN[@]}" --batch 64 --max-steps 20 --allreduce-bucket-mb 0.01 --out "$WORK/small" \
  >"$WORK/small.log" 2>&1 || { cat "$WORK/small.log"; fail "2 ranks, small buckets"; }
"$DIFF" "$WORK/one/last.safetensors" "$WORK/small/last.safetensors" 1e-3 || fail "weights differ (small buckets)"
# A batch that does not split over the ranks is refused.
if mpirun -np 2 "$KILN" "${TRAIN[@]}" --batch 63 --max-steps 1 --out "$WORK/odd" >"$WORK/odd.log" 2>&1; then
  fail "batch 63 over 2 ranks was accepted"
fi
grep -q "does not split evenly over 2" "$WORK/odd.log" || { cat "$WORK/odd.log"; fail "batch 63: no clear error"; }
echo "ok"
