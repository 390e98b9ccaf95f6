"""The standing fuzz suite (issue 22): bad files and bad inputs never escape as untyped errors.

The cases live in tests/fuzz_cases.py and run in a subprocess whose address space is limited, so a
case that would allocate far more than the tiny checkpoint fails there as a MemoryError (counted as
untyped) instead of taking the test run down. Invariant checked: every failure is one of
``keras_models.errors`` and names the file, key or input at fault; an accepted input gives finite
outputs. CI runs a bounded number of examples (derandomized, so the same ones every run); the
``slow`` test runs many more.

Under tools/test.sh the torch pass runs every kind; the jax and tensorflow passes run the kind that
builds models from mutated config.json values (the rest is numpy, Rust or file handling, the same
under every backend).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_fuzz(n, kinds=(), timeout=900):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "tests.fuzz_cases", str(n), *kinds], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("FUZZ-RESULT ")]
    assert proc.returncode == 0 and lines, f"fuzz runner failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1][len("FUZZ-RESULT "):])


def _check(result, n, kinds):
    counts, untyped = result["counts"], result["untyped"]
    for kind in kinds:
        c = counts[kind]
        assert sum(c.values()) >= min(n, 5), f"{kind}: only {c} cases ran"
    report = "\n".join(f"- {u['kind']} {u['case']}:\n{u['error']}" for u in untyped)
    assert not untyped, f"{len(untyped)} untyped failures (counts {counts}):\n{report}"
    # the invariant is not vacuous: the mutations do reach the error paths
    assert sum(c["typed"] for c in counts.values()) > 0


def test_fuzzed_inputs_fail_with_typed_errors():
    from tests.fuzz_cases import KINDS

    backend = os.environ.get("KERAS_BACKEND", "torch")
    kinds = KINDS if backend == "torch" or not os.environ.get("KM_BACKEND_INDEPENDENT_ONCE") else ("config",)
    n = 20 if backend == "torch" else 10
    _check(run_fuzz(n, kinds), n, kinds)


@pytest.mark.slow
def test_fuzzed_inputs_fail_with_typed_errors_long():
    from tests.fuzz_cases import KINDS

    _check(run_fuzz(300, KINDS, timeout=3600), 300, KINDS)
