#!/usr/bin/env bash
# Run the whole test suite under torch, jax and tensorflow.
# The torch pass runs first, as TORCH_SHARDS (default 2) processes side by side (it is Python-bound:
# one process uses about one core): it builds the Transformers reference checkpoints into
# .cache/test_refs (KM_TEST_CACHE) and runs the backend-independent tests (tokenizers). The jax and
# tensorflow passes then run side by side (2 cores), reusing the references; each pass's log is
# printed when it ends, and the script fails if any pass fails.
# Usage: tools/test.sh [extra pytest args]   (BACKENDS="jax torch" to choose backends)
set -u
cd "$(dirname "$0")/.."
export KM_TEST_CACHE="${KM_TEST_CACHE:-$PWD/.cache/test_refs}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false TF_CPP_MIN_LOG_LEVEL=3
export KM_BACKEND_INDEPENDENT_ONCE=1
backends=${BACKENDS:-torch jax tensorflow}
logs=$(mktemp -d)
run() {  # run BACKEND: one pytest pass, output to $logs/NAME.log, exit code to $logs/NAME.rc, where
  # NAME is BACKEND, or BACKEND.i for shard i (KM_SHARD=i/n)
  local start=$(date +%s) name=$1${KM_SHARD:+.${KM_SHARD%%/*}}
  KERAS_BACKEND=$1 python -m pytest -q -m "not slow" -p no:cacheprovider "${@:2}" >"$logs/$name.log" 2>&1
  local rc=$?
  echo "=== KERAS_BACKEND=$1${KM_SHARD:+ (shard $KM_SHARD)}: exit $rc in $(( $(date +%s) - start ))s ===" >>"$logs/$name.log"
  echo $rc >"$logs/$name.rc"
}
run_torch() {  # the torch pass as TORCH_SHARDS processes side by side (tests/conftest.py: KM_SHARD)
  local n=${TORCH_SHARDS:-2} i pids=() rc=0
  for ((i = 0; i < n; i++)); do
    KM_SHARD=$i/$n run torch "$@" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid"; done
  for ((i = 0; i < n; i++)); do
    cat "$logs/torch.$i.log" >>"$logs/torch.log"
    [ "$(cat "$logs/torch.$i.rc" 2>/dev/null || echo 1)" != 0 ] && rc=1
  done
  echo $rc >"$logs/torch.rc"
}
status=0
first=1
pids=()
for b in $backends; do
  if [ $first = 1 ] && [ "$b" = torch ]; then
    run_torch "$@"; cat "$logs/torch.log"
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
