#!/usr/bin/env bash
# A 2-rank run killed (SIGKILL, every rank) at a random moment after its first checkpoint
# leaves a loadable last.safetensors, and a 1-rank --resume continues from it to the end.
# usage: kill-resume.sh KILN DATA [SEED]
KILN=$1 DATA=$2
source "$(dirname "$0")/common.sh"
RANDOM=${3:-$$}
EPOCHS=3
mpirun -np 2 "$KILN" "${TRAIN[@]}" --batch 64 --epochs $EPOCHS --out "$WORK/run" >"$WORK/two.log" 2>&1 &
job=$!
for _ in $(seq 600); do [ -f "$WORK/run/last.safetensors" ] && break; sleep 0.1; done
[ -f "$WORK/run/last.safetensors" ] || { cat "$WORK/two.log"; fail "no checkpoint after 60 s"; }
# Somewhere in the next 0-2 s: during a step, a validation or a checkpoint write.
delay=$(awk -v r=$RANDOM 'BEGIN { printf "%.2f", r / 32768 * 2 }')
sleep "$delay"
ranks=$(pgrep -P $job || true)
kill -KILL $ranks $job 2>/dev/null || true
wait $job 2>/dev/null || true
echo "killed after first checkpoint + ${delay} s"
ls "$WORK/run"
# No temporary file is left as the checkpoint, and it loads.
"$KILN" eval --model "$MODEL" --data "$DATA" --checkpoint "$WORK/run/last.safetensors" --workers 1 \
  >"$WORK/eval.log" 2>&1 || { cat "$WORK/eval.log"; fail "last.safetensors does not load"; }
grep "accuracy" "$WORK/eval.log"
"$KILN" "${TRAIN[@]}" --batch 64 --epochs $EPOCHS --out "$WORK/run" --resume "$WORK/run/last.safetensors" \
  >"$WORK/resume.log" 2>&1 || { cat "$WORK/resume.log"; fail "1-rank resume"; }
grep -q "resumed from" "$WORK/resume.log" || fail "did not resume"
steps=$(awk -F, 'END { print $2 }' "$WORK/run/log.csv")
want=$((EPOCHS * (10000 / 64)))
[ "$steps" = "$want" ] || { cat "$WORK/run/log.csv"; fail "log ends at global step $steps, not $want"; }
echo "ok: resumed with 1 rank to global step $steps"
