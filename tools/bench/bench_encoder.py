"""MiniLM encoder: inference throughput, load time and peak memory, keras-models vs Transformers.

    python tools/bench/bench_encoder.py [--backends jax torch tensorflow] [--iters 10]

Each measurement runs in a fresh subprocess (one backend per process, clean RSS accounting), all
in one invocation, and the script prints a table with ratios against Transformers (PyTorch eager,
torch.inference_mode). Workload: all-MiniLM-L6-v2, batch 32, sequence length 128, fp32.
"""

import argparse
import json
import os
import subprocess
import sys

BATCH, SEQ = 32, 128

CHILD = r"""
import json, os, resource, sys, time
import numpy as np
which, iters = sys.argv[1], int(sys.argv[2])
def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
def peak_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
rng = np.random.default_rng(0)
ids = rng.integers(1000, 30000, size=(%(B)d, %(S)d)).astype("int32")
ids[:, 0] = 101
mask = np.ones_like(ids)
from keras_models.presets.resolve import resolve_preset
folder = resolve_preset("all-minilm-l6-v2")
weights_mb = os.path.getsize(folder / "model.safetensors") / 2**20
if which == "transformers":
    import torch, transformers
    torch.set_grad_enabled(False)
    (torch.ones(8, 8) @ torch.ones(8, 8)).sum().item()
    base = rss_mb()
    t0 = time.perf_counter()
    model = transformers.AutoModel.from_pretrained(str(folder)).eval()
    load = time.perf_counter() - t0
    peak = peak_mb() - base
    inputs = {"input_ids": torch.tensor(ids, dtype=torch.long), "attention_mask": torch.tensor(mask)}
    run = lambda: model(**inputs).last_hidden_state
else:
    import keras, keras_models as km
    km.Backbone  # import model code before measuring
    import keras_models.models
    # Start the backend runtime first (as torch is by its import): count only the model's load.
    keras.ops.convert_to_numpy(keras.ops.matmul(keras.ops.ones((8, 8)), keras.ops.ones((8, 8))))
    base = rss_mb()
    t0 = time.perf_counter()
    model = km.Backbone.from_preset(folder)
    load = time.perf_counter() - t0
    peak = peak_mb() - base
    inputs = {"input_ids": ids, "attention_mask": mask}
    run = lambda: model.predict_on_batch(inputs)
out = run(); out = run()  # warm-up / compile
t0 = time.perf_counter()
for _ in range(iters):
    out = run()
    if hasattr(out, "block_until_ready"):
        out.block_until_ready()
dt = (time.perf_counter() - t0) / iters
print("RESULT " + json.dumps({"load_s": load, "load_peak_mb": peak, "weights_mb": weights_mb,
                              "seq_per_s": %(B)d / dt, "batch_ms": dt * 1000}))
""" % {"B": BATCH, "S": SEQ}


def measure(which, iters):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="3")
    if which != "transformers":
        env["KERAS_BACKEND"] = which
    proc = subprocess.run([sys.executable, "-c", CHILD, which, str(iters)], env=env,
                          capture_output=True, text=True, timeout=1800)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{which} failed:\n{proc.stderr[-3000:]}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backends", nargs="+", default=["jax", "torch", "tensorflow"])
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    results = {"transformers": measure("transformers", args.iters)}
    for b in args.backends:
        results[b] = measure(b, args.iters)
    ref = results["transformers"]
    print(f"all-MiniLM-L6-v2, batch {BATCH} x seq {SEQ}, fp32, {os.cpu_count()} CPU cores")
    print(f"{'runtime':<22}{'seq/s':>9}{'x HF':>7}{'load s':>9}{'x HF':>7}{'load peak MB':>14}{'x weights':>11}")
    for name, r in results.items():
        label = "transformers (torch)" if name == "transformers" else f"keras-models/{name}"
        print(f"{label:<22}{r['seq_per_s']:>9.1f}{r['seq_per_s'] / ref['seq_per_s']:>7.2f}"
              f"{r['load_s']:>9.2f}{r['load_s'] / ref['load_s']:>7.2f}"
              f"{r['load_peak_mb']:>14.0f}{r['load_peak_mb'] / r['weights_mb']:>11.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
