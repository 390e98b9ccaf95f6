"""Encoder-decoder greedy decode speed, keras-models vs Transformers, at the T5-small shape.

    python tools/bench/bench_seq2seq.py [--backends jax torch tensorflow] [--new-tokens 32]

A random T5-small-shaped model (d_model 512, 6+6 layers, 8 heads, d_ff 2048, vocab 32128) is
built once with Transformers and saved; each measurement then runs in a fresh subprocess (one
backend per process): load, one warm-up generate (compiles under jax / tensorflow), then the best
of ``--iters`` timed greedy generates of ``--new-tokens`` tokens (no early stop: eos is never
produced because ``min_new_tokens`` is set on both sides) for a batch of 4 sources of 32 tokens.
Prints decode tokens/s and the ratio against Transformers (PyTorch eager, inference mode).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

BATCH, SRC = 4, 32

CHILD = r"""
import json, sys, time
import numpy as np
which, folder, new, iters = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(0)
ids = rng.integers(5, 32000, size=(%(B)d, %(S)d)).astype("int32")
mask = np.ones_like(ids)
kw = dict(max_new_tokens=new, min_new_tokens=new, do_sample=False)
if which == "transformers":
    import torch, transformers
    torch.set_num_threads(2)
    model = transformers.T5ForConditionalGeneration.from_pretrained(folder).eval()
    inputs = {"input_ids": torch.tensor(ids, dtype=torch.long), "attention_mask": torch.tensor(mask)}
    def run():
        with torch.inference_mode():
            return model.generate(**inputs, **kw).numpy()
else:
    import keras_models as km
    model = km.Seq2SeqLM.from_preset(folder)
    def run():
        return np.asarray(model.generate({"input_ids": ids, "attention_mask": mask}, **kw))
first = run()
best = 1e9
for _ in range(iters):
    t = time.perf_counter(); out = run(); best = min(best, time.perf_counter() - t)
print(json.dumps({"seconds": best, "tokens_per_s": %(B)d * new / best, "shape": list(out.shape),
                  "first_row": out[0].tolist()}))
""" % {"B": BATCH, "S": SRC}


def build_model(folder):
    import torch
    import transformers

    torch.manual_seed(0)
    cfg = transformers.T5Config(vocab_size=32128, d_model=512, d_kv=64, d_ff=2048, num_layers=6,
                                num_heads=8, feed_forward_proj="relu", decoder_start_token_id=0)
    transformers.T5ForConditionalGeneration(cfg).save_pretrained(folder)


def measure(which, folder, new, iters):
    env = dict(os.environ)
    if which != "transformers":
        env["KERAS_BACKEND"] = which
    out = subprocess.run([sys.executable, "-c", CHILD, which, folder, str(new), str(iters)],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{which} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backends", nargs="+", default=["jax", "torch", "tensorflow"])
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--iters", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        build_model(tmp)
        ref = measure("transformers", tmp, args.new_tokens, args.iters)
        rows = [("transformers (torch eager)", ref)]
        for backend in args.backends:
            rows.append((f"keras_models ({backend})", measure(backend, tmp, args.new_tokens, args.iters)))
    print(f"greedy decode, T5-small shape, batch {BATCH}, source {SRC}, {args.new_tokens} new tokens")
    print("| implementation | tokens/s | ratio vs transformers | same tokens |")
    print("|---|---:|---:|---|")
    for name, r in rows:
        same = r["first_row"] == ref["first_row"]
        print(f"| {name} | {r['tokens_per_s']:.1f} | {r['tokens_per_s'] / ref['tokens_per_s']:.2f} | {same} |")


if __name__ == "__main__":
    main()
