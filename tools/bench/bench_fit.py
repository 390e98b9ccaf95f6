"""Training throughput: keras-models ``model.fit`` vs a plain Transformers/PyTorch training loop.

    taskset -c 0 python tools/bench/bench_fit.py --threads 1 [--workloads minilm,llama]
        [--backends jax torch tensorflow] [--steps 6] [--rounds 3] [--jit-compile auto]

Workloads (issue 21, item 5):
  minilm: all-MiniLM-L6-v2 encoder + a 2-class classification head, batch 16 x 128;
  llama:  the ~110M Llama shape of bench_generate.py (SHAPES["llama"]), causal-LM fine-tune,
          batch --llama-batch (default 4) x 128.
Both sides start from the same weights: Transformers builds the model (for minilm:
BertForSequenceClassification from the real checkpoint, a fresh head), ``save_pretrained`` writes
it to a folder, and ours loads that folder with ``from_preset``. Both train on the same batches,
fp32, AdamW (lr 5e-5, weight decay 0.01, eps 1e-8, betas 0.9/0.999), dropout as each config says.
Transformers side: ``model.train()``; ``model(**batch, labels=y).loss.backward()``;
``torch.optim.AdamW.step()``; ``zero_grad()``. Ours: ``model.compile(optimizer=keras.optimizers.
AdamW(...), loss=<the task's default loss>)`` + ``model.fit`` over the same batches (``shuffle=False``),
step times taken by a callback at the end of each batch (the loss read back, so the step is done).

One backend per subprocess (Transformers runs in each, interleaved with ours: rounds of --steps
steps, Transformers then ours); the first round of each side is warm-up (ours: the train function's
compile) and the first step of every round is dropped; a figure is the median step time of the
rest. Checked in the same run: the loss of the initial weights on the first batch in inference
mode (no dropout) from both libraries, and the first training step's loss (equal for llama, which
has no dropout; minilm's differs by dropout noise).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SEQ = 128
HERE = Path(__file__).resolve().parent

CHILD = r"""
import json, os, sys, time
args = json.loads(sys.argv[1])
threads = args["threads"]
import numpy as np
import torch
torch.set_num_threads(threads)
try:
    torch.set_num_interop_threads(1)
except RuntimeError:
    pass
import keras
if keras.backend.backend() == "tensorflow":
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
import transformers
import keras_models as km
sys.path.insert(0, args["here"])
LR, WD, EPS = 5e-5, 0.01, 1e-8
B, S, steps, rounds = args["batch"], args["seq"], args["steps"], args["rounds"]
rng = np.random.default_rng(0)
folder = args["folder"]
if args["workload"] == "minilm":
    from keras_models.presets.resolve import resolve_preset
    path = os.path.join(folder, "minilm_cls")
    torch.manual_seed(0)
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(str(resolve_preset("all-minilm-l6-v2")),
                                                                          num_labels=2)
    if not os.path.exists(os.path.join(path, "config.json")):
        hf.save_pretrained(path)
    else:  # same weights as the folder (the head is random: read it back)
        hf = transformers.AutoModelForSequenceClassification.from_pretrained(path)
    ids = rng.integers(1000, 30000, size=(steps * B, S)).astype("int32")
    ids[:, 0] = 101
    ids[:, -1] = 102
    x = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    y = rng.integers(0, 2, size=(steps * B,)).astype("int32")
    hf_labels = torch.tensor(y, dtype=torch.long)
    ours = km.TextClassifier.from_preset(path, preprocessor=False)
else:
    from bench_generate import SHAPES, build
    hf, path, _ = build("llama", folder)
    ids = rng.integers(3, SHAPES["llama"]["kwargs"]["vocab_size"], size=(steps * B, S)).astype("int32")
    x = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    # Transformers shifts labels inside the model; ours takes next-token labels, -100 at the end
    y = np.concatenate([ids[:, 1:], np.full((steps * B, 1), -100, "int32")], axis=1)
    hf_labels = torch.tensor(ids, dtype=torch.long)
    ours = km.CausalLM.from_preset(path, preprocessor=False)
n_params = sum(p.numel() for p in hf.parameters())
hf_x = {k: torch.tensor(v, dtype=torch.long) for k, v in x.items()}
hf_batches = [({k: v[i * B:(i + 1) * B] for k, v in hf_x.items()}, hf_labels[i * B:(i + 1) * B]) for i in range(steps)]

# --- check: the initial weights' loss on batch 0, inference mode, both libraries -------------
hf.eval()
with torch.no_grad():
    ref_loss = float(hf(**hf_batches[0][0], labels=hf_batches[0][1]).loss)
loss_fn = ours.default_loss()
x0 = {k: v[:B] for k, v in x.items()}
our_loss = float(keras.ops.convert_to_numpy(loss_fn(y[:B], ours(x0, training=False))))

hf.train()
opt = torch.optim.AdamW(hf.parameters(), lr=LR, weight_decay=WD, eps=EPS, betas=(0.9, 0.999))
jit = args["jit_compile"]
jit = {"auto": "auto", "true": True, "false": False}[jit]
ours.compile(optimizer=keras.optimizers.AdamW(LR, weight_decay=WD, epsilon=EPS, beta_1=0.9, beta_2=0.999),
             loss=loss_fn, jit_compile=jit)

def hf_round():
    times, cpu, losses = [], [], []
    t, c = time.perf_counter(), time.process_time()
    for bx, by in hf_batches:
        loss = hf(**bx, labels=by).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
        now, cnow = time.perf_counter(), time.process_time()
        times.append(now - t)
        cpu.append(cnow - c)
        t, c = now, cnow
    return times, cpu, losses

class Timer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.times, self.cpu, self.losses = [], [], []
        self.t, self.c = time.perf_counter(), time.process_time()
    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(logs["loss"]))  # reads the step's result back: the step is done
        now, cnow = time.perf_counter(), time.process_time()
        self.times.append(now - self.t)
        self.cpu.append(cnow - self.c)
        self.t, self.c = now, cnow

timer = Timer()
def ours_round():
    ours.fit(x, y, batch_size=B, epochs=1, shuffle=False, verbose=0, callbacks=[timer])
    return timer.times, timer.cpu, timer.losses

hf_t, our_t, hf_c, our_c, first = [], [], [], [], {}
for r in range(rounds + 1):
    t, c, l = hf_round()
    if r == 0:
        first["hf_first_loss"], first["hf_first_s"] = l[0], t[0]
    else:
        hf_t, hf_c = hf_t + t[1:], hf_c + c[1:]
    t, c, l = ours_round()
    if r == 0:
        first["our_first_loss"], first["our_first_s"] = l[0], t[0]
    else:
        our_t, our_c = our_t + t[1:], our_c + c[1:]
med = lambda v: float(np.median(v))
print("RESULT " + json.dumps(dict(
    n_params=n_params, hf_step_s=med(hf_t), our_step_s=med(our_t), hf_best_s=min(hf_t), our_best_s=min(our_t),
    hf_cpu_s=med(hf_c), our_cpu_s=med(our_c), load=os.getloadavg()[0],
    ref_loss=ref_loss, our_loss=our_loss, jit_compile=str(ours.jit_compile), **first)))
"""


def measure(backend, workload, args):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND=backend,
               OMP_NUM_THREADS=str(args.threads), TF_NUM_INTRAOP_THREADS=str(args.threads),
               TF_NUM_INTEROP_THREADS="1")
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen="
                        + ("true" if args.threads > 1 else "false")).strip()
    child = dict(workload=workload, threads=args.threads, here=str(HERE), folder=args.folder, seq=SEQ,
                 batch=16 if workload == "minilm" else args.llama_batch, steps=args.steps, rounds=args.rounds,
                 jit_compile=args.jit_compile)
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(child)], env=env, capture_output=True,
                          text=True, timeout=3600)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[7:]), batch=child["batch"])
    raise RuntimeError(f"{backend}/{workload} failed:\n{proc.stderr[-4000:]}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workloads", default="minilm,llama")
    p.add_argument("--backends", nargs="+", default=["jax", "torch", "tensorflow"])
    p.add_argument("--steps", type=int, default=6, help="steps per round (the first of each is dropped)")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per side, after one warm-up round")
    p.add_argument("--llama-batch", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--jit-compile", default="auto", choices=["auto", "true", "false"],
                   help="passed to our compile(); auto: the library's default")
    p.add_argument("--folder", default=os.path.join(tempfile.gettempdir(), "km_bench_fit"))
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):  # children inherit: every library gets the same cores
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.threads])
    rows, results = [], {}
    header = ("| workload | backend | ours step s | Transformers step s | ratio (x HF) | CPU-time ratio "
              "| our first step s | init loss ours / HF | first train loss ours / HF | jit_compile | load |")
    print(header + "\n|---|---|---:|---:|---:|---:|---:|---|---|---|---:|", flush=True)
    for w in args.workloads.split(","):
        for b in args.backends:
            r = measure(b, w, args)
            results[f"{w}/{b}"] = r
            name = (f"MiniLM-L6 + head, {r['batch']}x{SEQ}" if w == "minilm"
                    else f"Llama {r['n_params'] / 1e6:.0f}M, {r['batch']}x{SEQ}")
            rows.append(f"| {name} | {b} | {r['our_step_s']:.3f} | {r['hf_step_s']:.3f} | "
                        f"{r['hf_step_s'] / r['our_step_s']:.2f} | {r['hf_cpu_s'] / r['our_cpu_s']:.2f} | "
                        f"{r['our_first_s']:.1f} | "
                        f"{r['our_loss']:.5f} / {r['ref_loss']:.5f} | "
                        f"{r['our_first_loss']:.5f} / {r['hf_first_loss']:.5f} | {r['jit_compile']} | {r['load']:.1f} |")
            print(rows[-1], flush=True)
    print(f"\nthreads={args.threads} pinned={sorted(os.sched_getaffinity(0))} steps={args.steps} "
          f"rounds={args.rounds} median step time after warm-up; ratio = Transformers step s / ours; "
          "CPU-time ratio: the same from the process's CPU time per step (robust to other load on a pinned core)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
