"""First-call (compile) seconds of ``generate`` under JAX in a fresh process, without and with the
persistent compilation cache that keras_models switches on by default.

    python tools/bench/bench_first_call.py [--shape llama] [--new-tokens 32] [--prompt 16] [--reps 2]

A ~110M Llama shape (tools/bench/bench_generate.py's "llama") is saved once with random weights.
Each measurement is a new Python process (KERAS_BACKEND=jax) that loads the preset and times its
first and second greedy ``generate`` call. Three settings, ``--reps`` processes each:

* ``off``: KERAS_MODELS_JAX_CACHE=off (every process compiles, as before the cache existed);
* ``cold``: the cache on, in an empty folder (the first process after an upgrade: compiles and writes);
* ``warm``: the cache on, in the folder the cold run filled (every later process).

Prints one row per setting: min / median first-call seconds, the second call's seconds, load seconds,
and the CPU model (lscpu).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_generate import SHAPES, build  # noqa: E402

CHILD = r"""
import json, sys, time
import numpy as np
t0 = time.perf_counter()
import keras_models as km
m = km.CausalLM.from_preset(sys.argv[1])
t1 = time.perf_counter()
ids = np.random.default_rng(0).integers(5, 1000, size=(1, int(sys.argv[2])))
m.generate(ids, max_new_tokens=int(sys.argv[3]))
t2 = time.perf_counter()
m.generate(ids, max_new_tokens=int(sys.argv[3]))
t3 = time.perf_counter()
print(json.dumps({"load": t1 - t0, "first": t2 - t1, "second": t3 - t2}))
"""


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except Exception:  # noqa: BLE001
        return "unknown"


def child(folder, cache, args):
    env = dict(os.environ, KERAS_BACKEND="jax", KERAS_MODELS_JAX_CACHE=cache)
    done = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(args.prompt), str(args.new_tokens)],
                          env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="llama", choices=sorted(SHAPES))
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--prompt", type=int, default=16)
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        _, folder, _ = build(args.shape, Path(tmp))
        cache = Path(tmp) / "jax_cache"
        runs = {"off": [child(folder, "off", args) for _ in range(args.reps)]}
        runs["cold"] = []
        for _ in range(args.reps):  # each cold run starts from an empty folder
            if cache.exists():
                import shutil

                shutil.rmtree(cache)
            runs["cold"].append(child(folder, str(cache), args))
        runs["warm"] = [child(folder, str(cache), args) for _ in range(args.reps)]
    print(f"CPU: {cpu_model()}; shape {args.shape}, prompt {args.prompt}, {args.new_tokens} new tokens, "
          f"{args.reps} processes per setting")
    print("| setting | first generate s (min / median) | second generate s | load s |")
    print("|---|---|---|---|")
    for name, rows in runs.items():
        first = [r["first"] for r in rows]
        print(f"| {name} | {min(first):.2f} / {statistics.median(first):.2f} | "
              f"{statistics.median(r['second'] for r in rows):.2f} | {statistics.median(r['load'] for r in rows):.2f} |")


if __name__ == "__main__":
    main()
