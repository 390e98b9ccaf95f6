#!/usr/bin/env bash
# Run the whole test suite under torch, jax and tensorflow: one pytest pass per backend, one after
# the other, each in WORKERS (default 2) pytest-xdist workers that take whole test files as they free
# up, so both CI cores stay busy until each pass's last file (the jax and tensorflow passes used to
# run side by side, one process each, and whichever ended first left a core idle: 20 min at stop 31).
# The torch pass runs first: it builds the Transformers reference checkpoints into
# .cache/test_refs (KM_TEST_CACHE) and runs the backend-independent tests (tokenizers); the jax and
# tensorflow passes reuse the references. Each pass's log is printed when it ends, with its 25
# slowest tests (--durations: the data for keeping the suite cheap); the script fails if any pass
# fails.
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
workers="${WORKERS:-2}"
status=0
for b in ${BACKENDS:-torch jax tensorflow}; do
  start=$(date +%s)
  log=$(mktemp)
  KERAS_BACKEND=$b python -m pytest -q -m "not slow" -p no:cacheprovider --durations=25 \
    -n "$workers" --dist loadfile "$@" >"$log" 2>&1
  rc=$?
  cat "$log"
  rm -f "$log"
  echo "=== KERAS_BACKEND=$b: exit $rc in $(( $(date +%s) - start ))s ==="
  [ $rc != 0 ] && status=$rc
done
exit $status
