#!/usr/bin/env bash
# Run the whole test suite under torch, jax and tensorflow.
# The torch pass runs first, in TORCH_WORKERS (default 2) pytest-xdist workers that take whole test
# files as they free up (one process is Python-bound and uses about one core): it builds the
# Transformers reference checkpoints into .cache/test_refs (KM_TEST_CACHE) and runs the
# backend-independent tests (tokenizers). The jax and tensorflow passes then run side by side
# (2 cores), reusing the references; each pass's log is printed when it ends, and the script fails
# if any pass fails.
# Each pass ends with its 25 slowest tests (--durations): the data for keeping the suite cheap.
# Usage: tools/test.sh [extra pytest args]   (BACKENDS="jax torch" to choose backends)
set -u
cd "$(dirname "$0")/.."
export KM_TEST_CACHE="${KM_TEST_CACHE:-$PWD/.cache/test_refs}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false TF_CPP_MIN_LOG_LEVEL=3
export KM_BACKEND_INDEPENDENT_ONCE=1
# One intra-op thread per process: two processes share the 2 cores, and torch's OpenMP threads
# spin-wait on each other there (tests/models/test_decoders.py on torch beside another pass: 64 s
# with 2 threads, 29 s with 1). jax and TensorFlow measured the same either way.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
backends=${BACKENDS:-torch jax tensorflow}
logs=$(mktemp -d)
run() {  # run BACKEND: one pytest pass, output to $logs/BACKEND.log, exit code to $logs/BACKEND.rc
  local start=$(date +%s)
  KERAS_BACKEND=$1 python -m pytest -q -m "not slow" -p no:cacheprovider --durations=25 "${@:2}" >"$logs/$1.log" 2>&1
  local rc=$?
  echo "=== KERAS_BACKEND=$1: exit $rc in $(( $(date +%s) - start ))s ===" >>"$logs/$1.log"
  echo $rc >"$logs/$1.rc"
}
status=0
first=1
pids=()
for b in $backends; do
  if [ $first = 1 ] && [ "$b" = torch ]; then
    run torch -n "${TORCH_WORKERS:-2}" --dist loadfile "$@"; cat "$logs/torch.log"
  else
    run "$b" "$@" & pids+=($!)
  fi
  first=0
done
for pid in "${pids[@]}"; do wait "$pid"; done
for b in $backends; do
  [ "$b" = torch ] && [ "${backends%% *}" = torch ] || cat "$logs/$b.log"
  rc=$(cat "$logs/$b.rc" 2>/dev/null || echo 1)
  [ "$rc" != 0 ] && status=$rc
done
rm -rf "$logs"
exit $status
