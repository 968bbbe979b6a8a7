#!/usr/bin/env bash
# A rank that fails ends the whole job with a message naming the rank and host, and no rank is
# left waiting: an injected allocation failure and a bad device on rank 1, a NaN on rank 1
# alone, and rank 1 stopped (SIGSTOP) in the middle of training, which rank 0 notices through
# --mpi-timeout.
# usage: faults.sh KILN DATA
KILN=$1 DATA=$2
source "$(dirname "$0")/common.sh"
host=$(hostname)
run_fault() { # name, extra mpirun args for rank 1, expected message
  local name=$1 arg=$2 want=$3 rc=0
  timeout 120 mpirun -np 1 "$KILN" "${TRAIN[@]}" --batch 64 --epochs 1 --out "$WORK/$name" : \
    -np 1 -x "$arg" "$KILN" "${TRAIN[@]}" --batch 64 --epochs 1 --out "$WORK/$name" \
    >"$WORK/$name.log" 2>&1 || rc=$?
  [ $rc != 0 ] || { cat "$WORK/$name.log"; fail "$name: the job succeeded"; }
  [ $rc != 124 ] || { cat "$WORK/$name.log"; fail "$name: the job hung"; }
  grep -q "rank 1 of 2 on $host: .*$want" "$WORK/$name.log" || { cat "$WORK/$name.log"; fail "$name: no message naming rank 1 and '$want'"; }
  echo "ok: $name ends the job (exit $rc): $(grep -m1 "rank 1 of 2" "$WORK/$name.log")"
}
run_fault alloc KILN_FAULT_ALLOC=4 "KILN_FAULT_ALLOC"
run_fault device KILN_DEVICE=no-such-device "no-such-device"

# A NaN on rank 1 alone stops both ranks at the same step, naming rank 1, and leaves the
# epoch-1 checkpoint as it was.
"$KILN" "${TRAIN[@]}" --batch 64 --epochs 1 --out "$WORK/nan" >"$WORK/nan0.log" 2>&1 || fail "nan: first epoch"
sum0=$(cksum <"$WORK/nan/last.safetensors")
rc=0
timeout 120 mpirun -np 1 "$KILN" "${TRAIN[@]}" --batch 64 --epochs 2 --out "$WORK/nan" --resume "$WORK/nan/last.safetensors" : \
  -np 1 -x KILN_FAULT_NAN_STEP=200 "$KILN" "${TRAIN[@]}" --batch 64 --epochs 2 --out "$WORK/nan" --resume "$WORK/nan/last.safetensors" \
  >"$WORK/nan.log" 2>&1 || rc=$?
[ $rc != 0 ] && [ $rc != 124 ] || { cat "$WORK/nan.log"; fail "nan: exit $rc"; }
grep -q "non-finite loss at epoch 2 step 44 (global step 199) on rank 1" "$WORK/nan.log" || { cat "$WORK/nan.log"; fail "nan: no message naming rank 1"; }
[ "$(cksum <"$WORK/nan/last.safetensors")" = "$sum0" ] || fail "nan: the last good checkpoint changed"
echo "ok: a NaN on rank 1 stops the job (exit $rc): $(grep -m1 "on rank 1" "$WORK/nan.log")"

# A rank that stops answering: rank 0 gives up after --mpi-timeout and ends the job.
t0=$(date +%s)
timeout 120 mpirun -np 2 "$KILN" "${TRAIN[@]}" --batch 64 --epochs 3 --log-steps 1 --mpi-timeout 5 \
  --out "$WORK/hang" >"$WORK/hang.log" 2>&1 &
job=$!
for _ in $(seq 600); do [ -s "$WORK/hang/steps.csv" ] && break; sleep 0.1; done
r1=""
for p in $(pgrep -f "$WORK/hang"); do
  tr '\0' '\n' </proc/$p/environ 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=1 && r1=$p
done
[ -n "$r1" ] || fail "rank 1 not found"
kill -STOP "$r1"
rc=0
wait $job || rc=$?
kill -KILL "$r1" 2>/dev/null || true
[ $rc != 0 ] && [ $rc != 124 ] || { cat "$WORK/hang.log"; fail "stopped rank: exit $rc"; }
grep -q "rank 0 of 2 on $host: .*no answer from the other ranks for 5 s" "$WORK/hang.log" ||
  { cat "$WORK/hang.log"; fail "stopped rank: no timeout message"; }
echo "ok: a stopped rank ends the job after $(( $(date +%s) - t0 )) s: $(grep -m1 "no answer" "$WORK/hang.log")"
