#!/usr/bin/env bash
# kiln bench scale at 1 and 2 ranks runs to the end and reports both rows (no timing is
# asserted: the figures are the note's, measured on a quiet machine).
# usage: bench-scale.sh KILN
KILN=$1 DATA=unused
source "$(dirname "$0")/common.sh"
mpirun -np 2 "$KILN" bench scale --model "$MODEL" --steps 3 --allreduce-bucket-mb 0.05 \
  --json "$WORK/scale.json" >"$WORK/scale.log" 2>&1 || { cat "$WORK/scale.log"; fail "bench scale"; }
cat "$WORK/scale.log"
grep -q '"ranks":	2' "$WORK/scale.json" || fail "no 2-rank row"
# The 2-rank row all-reduced the whole gradient (small-cnn: 52,138 parameters, 0.2 MiB) in > 1 bucket.
awk '/"ranks":/ { r = $2 } /"allreduce_mib":/ { if (r + 0 == 2) mib = $2 } /"buckets":/ { if (r + 0 == 2) b = $2 }
  END { exit !(mib + 0 > 0.19 && mib + 0 < 0.21 && b + 0 > 1) }' "$WORK/scale.json" ||
  { cat "$WORK/scale.json"; fail "2-rank row: wrong all-reduce size or bucket count"; }
echo ok
