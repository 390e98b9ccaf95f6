#!/usr/bin/env bash
# Run the whole test suite under torch, jax and tensorflow (in that order: the torch run builds the
# Transformers reference checkpoints into .cache/test_refs, the other two reuse them).
# Usage: tools/test.sh [extra pytest args]   (BACKENDS="jax torch" to choose backends)
set -u
cd "$(dirname "$0")/.."
export KM_TEST_CACHE="${KM_TEST_CACHE:-$PWD/.cache/test_refs}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false TF_CPP_MIN_LOG_LEVEL=3
status=0
for backend in ${BACKENDS:-torch jax tensorflow}; do
  echo "=== KERAS_BACKEND=$backend ==="
  start=$(date +%s)
  KERAS_BACKEND=$backend python -m pytest -q -m "not slow" -p no:cacheprovider "$@"
  rc=$?
  echo "=== $backend: exit $rc in $(( $(date +%s) - start ))s ==="
  [ $rc -ne 0 ] && status=$rc
done
exit $status
