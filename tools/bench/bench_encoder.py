"""MiniLM encoder: inference throughput, load time and peak memory, keras-models vs Transformers.

    python tools/bench/bench_encoder.py [--backends jax torch tensorflow] [--iters 10]
    taskset -c 0 python tools/bench/bench_encoder.py --dtype bfloat16 --threads 1 [--reps 5]

Each measurement runs in a fresh subprocess (one backend per process, clean RSS accounting), all
in one invocation, and the script prints a table with ratios against Transformers (PyTorch eager,
torch.inference_mode). Workload: all-MiniLM-L6-v2, batch 32, sequence length 128, fp32.

``--dtype bfloat16`` (issue 21): one subprocess per backend loads four models -- Transformers fp32
and bf16 (``torch_dtype``), ours fp32 and bf16 (``from_preset(dtype=...)``) -- and times their
``predict_on_batch`` / forward calls interleaved (best of ``--reps`` rounds, each model once per
round), so that machine load hits all four alike. It prints the four ratios (ours-bf16 / ours-fp32,
ours-bf16 / HF-bf16, ours-bf16 / HF-fp32, HF-bf16 / HF-fp32; speed ratios, > 1 = faster) and the
max abs difference of our bf16 hidden states from Transformers' bf16 and fp32 ones (and of our fp32
from Transformers' fp32). ``--threads N`` sets every library's thread count (torch, XLA's Eigen
pool, TF intra-op) in the children; pin the process with ``taskset`` for one core.
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


CHILD_DTYPE = r"""
import json, os, sys, time
import numpy as np
dtype, reps, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
ids = rng.integers(1000, 30000, size=(%(B)d, %(S)d)).astype("int32")
ids[:, 0] = 101
mask = np.ones_like(ids)
import torch, transformers, keras, keras_models as km
import keras_models.models
if threads:
    torch.set_num_threads(threads)
from keras_models.presets.resolve import resolve_preset
folder = resolve_preset("all-minilm-l6-v2")
torch.set_grad_enabled(False)
tin = {"input_ids": torch.tensor(ids, dtype=torch.long), "attention_mask": torch.tensor(mask)}
inputs = {"input_ids": ids, "attention_mask": mask}
runs = {}
for d in ("float32", dtype):
    hf = transformers.AutoModel.from_pretrained(str(folder), dtype=getattr(torch, d)).eval()
    runs["hf_" + d] = (lambda m: lambda: m(**tin).last_hidden_state.float().numpy())(hf)
    ours = km.Backbone.from_preset(folder, dtype=d)
    runs["ours_" + d] = (lambda m: lambda: np.asarray(keras.ops.convert_to_numpy(
        keras.ops.cast(m.predict_on_batch(inputs), "float32"))))(ours)
outs = {k: (f(), f())[1] for k, f in runs.items()}  # warm-up / compile
best = {k: float("inf") for k in runs}
for _ in range(reps):
    for k, f in runs.items():
        t0 = time.perf_counter()
        f()
        best[k] = min(best[k], time.perf_counter() - t0)
diff = lambda a, b: float(np.max(np.abs(outs[a] - outs[b])))
print("RESULT " + json.dumps({"s": best, "diff_bf16_vs_hf_bf16": diff("ours_" + dtype, "hf_" + dtype),
                              "diff_bf16_vs_hf_fp32": diff("ours_" + dtype, "hf_float32"),
                              "diff_hf_bf16_vs_hf_fp32": diff("hf_" + dtype, "hf_float32"),
                              "diff_fp32_vs_hf_fp32": diff("ours_float32", "hf_float32")}))
""" % {"B": BATCH, "S": SEQ}


def measure_dtype(backend, dtype, reps, threads):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND=backend)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), TF_NUM_INTRAOP_THREADS=str(threads), TF_NUM_INTEROP_THREADS="1")
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen="
                            + ("true" if threads > 1 else "false")).strip()
    proc = subprocess.run([sys.executable, "-c", CHILD_DTYPE, dtype, str(reps), str(threads)], env=env,
                          capture_output=True, text=True, timeout=3600)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{backend} failed:\n{proc.stderr[-3000:]}")


def main_dtype(args):
    results = {}
    print(f"all-MiniLM-L6-v2, batch {BATCH} x seq {SEQ}, {args.dtype} vs float32, threads={args.threads or 'default'}, "
          f"{os.cpu_count()} CPU cores, pinned={sorted(os.sched_getaffinity(0))}, load {os.getloadavg()[0]:.2f}")
    print("| backend | ours bf16 s | ours fp32 s | HF bf16 s | HF fp32 s | ours bf16/fp32 | x HF bf16 | x HF fp32 "
          "| HF bf16/fp32 | max diff vs HF bf16 | vs HF fp32 | HF bf16 vs fp32 | ours fp32 vs HF fp32 |")
    print("|---|" + "---:|" * 12)
    d = args.dtype
    for b in args.backends:
        r = results[b] = measure_dtype(b, d, args.reps, args.threads)
        s = r["s"]
        print(f"| {b} | {s['ours_' + d]:.3f} | {s['ours_float32']:.3f} | {s['hf_' + d]:.3f} | {s['hf_float32']:.3f} | "
              f"{s['ours_float32'] / s['ours_' + d]:.2f} | {s['hf_' + d] / s['ours_' + d]:.2f} | "
              f"{s['hf_float32'] / s['ours_' + d]:.2f} | {s['hf_float32'] / s['hf_' + d]:.2f} | "
              f"{r['diff_bf16_vs_hf_bf16']:.3g} | {r['diff_bf16_vs_hf_fp32']:.3g} | {r['diff_hf_bf16_vs_hf_fp32']:.3g} | "
              f"{r['diff_fp32_vs_hf_fp32']:.2g} |", flush=True)
    print(f"(speed ratios: > 1 = the first named is faster; load after: {os.getloadavg()[0]:.2f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


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
    p.add_argument("--dtype", default="float32", help="bfloat16: both libraries in it, side by side with fp32")
    p.add_argument("--reps", type=int, default=5, help="--dtype: interleaved rounds (best of)")
    p.add_argument("--threads", type=int, default=0, help="--dtype: threads per library (0: libraries' default)")
    args = p.parse_args(argv)
    if args.dtype != "float32":
        return main_dtype(args)
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
