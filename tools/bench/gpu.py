"""Issue 21's accelerator rows, keras-models vs Transformers, in one process tree on whatever device is present.

    python tools/bench/gpu.py [--rows decode,encoder] [--backends jax,torch] [--small] [--out table.md]

Rows (the issue's table; random weights, the same saved checkpoint for both libraries):

* ``decode``: TinyLlama-1.1B shape (hidden 2048, 22 layers, 32 / 4 heads, MLP 5632, vocab 32000),
  prompt 128, 128 new greedy tokens, batch 1 and 16, bf16. Transformers twice: its default
  (dynamic) cache, and its static cache with the forward compiled by ``torch.compile`` (the
  fastest Transformers route); ours through ``CausalLM.generate``. tok/s, and whether the ids
  agree with Transformers' default run.
* ``encoder``: BERT-base shape, batch 64 x 256, bf16 and fp32, inputs and outputs on the device.
  Transformers eager; ours two ways: the model's forward with device-resident inputs (JAX: a
  jitted ``stateless_call``; torch: the model called under ``no_grad``; TensorFlow: a
  ``tf.function``), and ``predict_on_batch`` from host numpy (what most users call). ms per batch
  and the max abs difference of the last hidden state against Transformers.

Every measurement runs in its own subprocess (one library/backend per process, so allocators and
compile caches do not mix). The device is whatever each runtime picks by default: CUDA when
present, else the CPU (``--small`` shrinks every shape so the script itself can be checked on a
laptop CPU in a minute). The table goes to stdout and, with ``--out``, to a markdown file with the
device name, library versions and the date.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

DECODE = dict(vocab_size=32000, hidden_size=2048, num_hidden_layers=22, num_attention_heads=32,
              num_key_value_heads=4, intermediate_size=5632, max_position_embeddings=2048,
              tie_word_embeddings=False, eos_token_id=None, bos_token_id=None, pad_token_id=0)
ENCODER = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
               intermediate_size=3072)
SMALL_DECODE = dict(DECODE, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, intermediate_size=256, vocab_size=1000)
SMALL_ENCODER = dict(ENCODER, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)


def shapes(small):
    if small:
        return dict(decode=SMALL_DECODE, encoder=SMALL_ENCODER, prompt=16, new=8, batches=(1, 4),
                    enc_batch=4, enc_len=32, reps=2)
    return dict(decode=DECODE, encoder=ENCODER, prompt=128, new=128, batches=(1, 16),
                enc_batch=64, enc_len=256, reps=5)


def build(folder, small):
    """Save both random checkpoints once (fp32 on disk; each side casts at load)."""
    import torch
    import transformers as T

    s = shapes(small)
    folder = Path(folder)
    torch.manual_seed(0)
    if not (folder / "decode" / "config.json").exists():
        T.LlamaForCausalLM(T.LlamaConfig(**s["decode"])).save_pretrained(folder / "decode")
    if not (folder / "encoder" / "config.json").exists():
        T.BertModel(T.BertConfig(**s["encoder"]), add_pooling_layer=False).save_pretrained(folder / "encoder")


# --------------------------------------------------------------------------- child processes
# Each child prints one JSON line: {"rows": [...]}; a row is {"row", "side", "case", "value", "unit", ...}.

CHILD = r"""
import json, os, sys, time
import numpy as np
spec = json.loads(sys.argv[1])
folder, side, row, s = spec["folder"], spec["side"], spec["row"], spec["shapes"]
out = []

def prompts(batch, length, vocab, seed=0):
    rng = np.random.RandomState(seed)
    ids = rng.randint(3, vocab, size=(batch, length)).astype("int32")
    mask = np.ones_like(ids)
    for i in range(1, batch):
        cut = rng.randint(0, length // 2)
        ids[i, :cut] = 0
        mask[i, :cut] = 0
    return {"input_ids": ids, "attention_mask": mask}

def enc_inputs():
    rng = np.random.RandomState(1)
    ids = rng.randint(1000, 30000, size=(s["enc_batch"], s["enc_len"])).astype("int32")
    return {"input_ids": ids, "attention_mask": np.ones_like(ids)}

def best(fn, sync, reps):
    fn(); sync()
    times = []
    for _ in range(reps):
        t = time.perf_counter(); r = fn(); sync(); times.append(time.perf_counter() - t)
    return min(times), r

if side.startswith("transformers"):
    import torch, transformers as T
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    sync = (lambda: torch.cuda.synchronize()) if dev == "cuda" else (lambda: None)
    torch.set_grad_enabled(False)
    device_name = torch.cuda.get_device_name() if dev == "cuda" else "cpu"
    if row == "decode":
        model = T.LlamaForCausalLM.from_pretrained(folder + "/decode", dtype=torch.bfloat16).to(dev).eval()
        static = side == "transformers-static"
        if static:
            model.forward = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)
        for batch in s["batches"]:
            p = prompts(batch, s["prompt"], model.config.vocab_size)
            t_in = {k: torch.tensor(v, dtype=torch.long, device=dev) for k, v in p.items()}
            kw = dict(max_new_tokens=s["new"], min_new_tokens=s["new"], do_sample=False)
            if static:
                kw["cache_implementation"] = "static"
            fn = lambda: model.generate(**t_in, **kw)
            fn()  # compile / warm-up beyond best()'s own
            sec, ids = best(fn, sync, s["reps"])
            np.save(spec["ids_prefix"] + f"_{batch}.npy", ids.cpu().numpy())
            out.append(dict(case=f"batch {batch}", value=batch * s["new"] / sec, unit="tok/s"))
    else:
        x = enc_inputs()
        for dtype in ("bfloat16", "float32"):
            model = T.BertModel.from_pretrained(folder + "/encoder", dtype=getattr(torch, dtype),
                                                add_pooling_layer=False).to(dev).eval()
            t_in = {k: torch.tensor(v, dtype=torch.long, device=dev) for k, v in x.items()}
            sec, h = best(lambda: model(**t_in).last_hidden_state, sync, s["reps"])
            np.save(spec["ids_prefix"] + f"_{dtype}.npy", h.float().cpu().numpy())
            out.append(dict(case=f"{dtype}", value=sec * 1e3, unit="ms"))
else:
    os.environ["KERAS_BACKEND"] = side.split("-")[1]
    import keras, keras_models as km
    backend = keras.backend.backend()
    if backend == "jax":
        import jax
        device_name = str(jax.devices()[0])
        sync_of = lambda r: jax.block_until_ready(r)
    elif backend == "torch":
        import torch
        device_name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
        sync_of = lambda r: torch.cuda.synchronize() if torch.cuda.is_available() else None
    else:
        import tensorflow as tf
        gpus = tf.config.list_logical_devices("GPU")
        device_name = gpus[0].name if gpus else "cpu"
        sync_of = lambda r: r.numpy() if hasattr(r, "numpy") else None
    if row == "decode":
        model = km.CausalLM.from_preset(folder + "/decode", dtype="bfloat16")
        for batch in s["batches"]:
            p = prompts(batch, s["prompt"], s["decode"]["vocab_size"])
            fn = lambda: model.generate(p, max_new_tokens=s["new"], min_new_tokens=s["new"], do_sample=False)
            sec, ids = best(fn, lambda: None, s["reps"])  # generate returns host numpy: synchronised
            ref = np.load(spec["ref_prefix"] + f"_{batch}.npy")
            ids = np.asarray(ids)
            same = ids.shape == ref.shape and bool((ids == ref).all())
            agree = float((ids[:, -s["new"]:] == ref[:, -s["new"]:]).mean()) if ids.shape == ref.shape else 0.0
            out.append(dict(case=f"batch {batch}", value=batch * s["new"] / sec, unit="tok/s",
                            check="same ids" if same else f"{agree:.0%} of ids"))
    else:
        x = enc_inputs()
        for dtype in ("bfloat16", "float32"):
            model = km.Backbone.from_preset(folder + "/encoder", dtype=dtype)
            ref = np.load(spec["ref_prefix"] + f"_{dtype}.npy")
            def hidden(r):
                r = r["last_hidden_state"] if isinstance(r, dict) else r
                return np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(r, "float32")))
            # 1) the forward on device-resident inputs
            if backend == "jax":
                import jax
                dev_x = {k: jax.device_put(v) for k, v in x.items()}
                tv = [v.value for v in model.trainable_variables]
                ntv = [v.value for v in model.non_trainable_variables]
                f = jax.jit(lambda tv, ntv, xx: model.stateless_call(tv, ntv, xx)[0])
                fn = lambda: f(tv, ntv, dev_x)
            elif backend == "torch":
                import torch
                dev_x = {k: keras.ops.convert_to_tensor(v) for k, v in x.items()}
                def fn():  # predict_step: the model's inference path (fast_inference), without the host copy
                    with torch.no_grad():
                        return model.predict_step(dev_x)
            else:
                import tensorflow as tf
                dev_x = {k: tf.constant(v) for k, v in x.items()}
                f = tf.function(lambda xx: model(xx), jit_compile=True)
                fn = lambda: f(dev_x)
            fn(); last = fn(); sync_of(last if not isinstance(last, dict) else next(iter(last.values())))
            times = []
            for _ in range(s["reps"]):
                t = time.perf_counter(); last = fn()
                sync_of(last if not isinstance(last, dict) else next(iter(last.values())))
                times.append(time.perf_counter() - t)
            diff = float(np.max(np.abs(hidden(last) - ref)))
            out.append(dict(case=f"{dtype}, on device", value=min(times) * 1e3, unit="ms", check=f"max diff {diff:.2e}"))
            # 2) predict_on_batch from host numpy
            sec, r = best(lambda: model.predict_on_batch(x), lambda: None, s["reps"])
            diff = float(np.max(np.abs(hidden(r) - ref)))
            out.append(dict(case=f"{dtype}, predict_on_batch", value=sec * 1e3, unit="ms",
                            check=f"max diff {diff:.2e}"))
print("RESULT " + json.dumps({"device": device_name, "rows": out}))
"""


def run_child(folder, side, row, small, prefix):
    spec = dict(folder=str(folder), side=side, row=row, shapes=shapes(small), ids_prefix=f"{prefix}_{row}_{side}",
                ref_prefix=f"{prefix}_{row}_transformers")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], env=env, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"device": "?", "rows": [], "error": " / ".join(tail)[:300]}


def versions():
    import importlib.metadata as md

    names = ("torch", "jax", "jaxlib", "tensorflow", "transformers", "keras")
    found = []
    for n in names:
        try:
            found.append(f"{n} {md.version(n)}")
        except md.PackageNotFoundError:
            pass
    return ", ".join(found)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", default="decode,encoder")
    p.add_argument("--backends", default="jax,torch")
    p.add_argument("--small", action="store_true", help="tiny shapes, to check the script on any CPU")
    p.add_argument("--folder", default=os.path.join(tempfile.gettempdir(), "km_bench_gpu"))
    p.add_argument("--out", default=None, help="also write the table (markdown) to this file")
    args = p.parse_args(argv)
    folder = Path(args.folder) / ("small" if args.small else "full")
    build(folder, args.small)
    prefix = str(folder / "out")
    lines = ["| row | library | case | value | vs Transformers default | vs Transformers static+compiled | check |",
             "|---|---|---|---:|---:|---:|---|"]
    device = "?"
    for row in args.rows.split(","):
        sides = ["transformers"] + (["transformers-static"] if row == "decode" else [])
        sides += [f"keras_models-{b}" for b in args.backends.split(",")]
        base = {}
        for side in sides:
            res = run_child(folder, side, row, args.small, prefix)
            device = res["device"] if res["device"] != "?" else device
            if res.get("error"):
                lines.append(f"| {row} | {side} | - | failed: {res['error']} | | | |")
                print(lines[-1], flush=True)
                continue
            for r in res["rows"]:
                key = r["case"].split(",")[0]
                if side.startswith("transformers"):
                    base.setdefault(side, {})[key] = r["value"]
                higher_better = r["unit"] == "tok/s"

                def ratio(ref_side):
                    ref = base.get(ref_side, {}).get(key)
                    if ref is None or side == ref_side:
                        return ""
                    return f"{(r['value'] / ref) if higher_better else (ref / r['value']):.2f}x"

                lines.append(f"| {row} | {side} | {r['case']} | {r['value']:.1f} {r['unit']} | "
                             f"{ratio('transformers')} | {ratio('transformers-static')} | {r.get('check', '')} |")
                print(lines[-1], flush=True)
    head = (f"device: {device}; {versions()}; {datetime.date.today()}; shapes: "
            f"{'small (script check)' if args.small else 'full'}")
    table = head + "\n\n" + "\n".join(lines) + "\n"
    print("\n" + table)
    if args.out:
        Path(args.out).write_text(table)


if __name__ == "__main__":
    sys.exit(main())
