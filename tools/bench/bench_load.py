"""Preset load time: keras-models' ``from_preset`` against Transformers' ``from_pretrained``.

    python tools/bench/bench_load.py [--backends tensorflow torch jax] [--models bart,t5,convnext,bert] [--reps 5]

Each model is a random-weight Transformers checkpoint of a real model's shape (BART-base, T5-small,
ConvNeXt-tiny, BERT-base with a 2-label head), saved once with ``save_pretrained`` into
``--folder``. One fresh subprocess per runtime loads every model ``--reps`` + 1 times (the first
load of each, which pays the library's first-use costs, is dropped) and reports the median:
Transformers (``AutoModelFor...from_pretrained``, torch), then keras-models on each backend twice,
with the Keras-level symbolic build on and off (``KM_KERAS_LEVEL_BUILD``, docs/fast_paths.md), so
the switch's effect and the ratio to Transformers come from one run on one machine. The CPU model
(lscpu) heads the table.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

MODELS = {
    # name: (Transformers config class, kwargs, Transformers auto class, keras-models task)
    "bart": ("BartConfig", dict(d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
                                decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072,
                                vocab_size=50265, max_position_embeddings=1024),
             "AutoModelForSeq2SeqLM", "Seq2SeqLM"),
    "t5": ("T5Config", dict(d_model=512, d_ff=2048, num_layers=6, num_heads=8, vocab_size=32128, d_kv=64),
           "AutoModelForSeq2SeqLM", "Seq2SeqLM"),
    "convnext": ("ConvNextConfig", dict(num_labels=1000), "AutoModelForImageClassification", "ImageClassifier"),
    "bert": ("BertConfig", dict(num_labels=2), "AutoModelForSequenceClassification", "TextClassifier"),
}

CHILD = r"""
import json, statistics, sys, time
which, reps, folders = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
if which == "transformers":
    import torch, transformers
    torch.set_grad_enabled(False)
    load = lambda name, folder: getattr(transformers, folders[name][1]).from_pretrained(folder)
else:
    import keras_models as km
    load = lambda name, folder: getattr(km, folders[name][2]).from_preset(folder)
out = {}
for name, (folder, _, _) in folders.items():
    times = []
    for _ in range(reps + 1):
        t0 = time.perf_counter()
        model = load(name, folder)
        times.append(time.perf_counter() - t0)
        del model
    out[name] = statistics.median(times[1:])
print("RESULT " + json.dumps(out))
"""


def cpu_model():
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return "unknown"
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    flags = fields.get("Flags", "").split()
    extras = [f for f in ("avx512f", "avx512_bf16", "amx_tile") if f in flags] or ["no AVX-512"]
    return (f"{fields.get('Model name', '?').strip()} (family {fields.get('CPU family', '?').strip()}, "
            f"model {fields.get('Model', '?').strip()}, {', '.join(extras)})")


def save_models(names, folder):
    import torch
    import transformers

    torch.manual_seed(0)
    folders = {}
    for name in names:
        config_cls, kwargs, auto_cls, task = MODELS[name]
        path = os.path.join(folder, name)
        if not os.path.exists(os.path.join(path, "config.json")):
            config = getattr(transformers, config_cls)(**kwargs)
            getattr(transformers, auto_cls).from_config(config).save_pretrained(path)
        folders[name] = (path, auto_cls, task)
    return folders


def run_child(which, env_extra, reps, folders):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="3", **env_extra)
    proc = subprocess.run([sys.executable, "-c", CHILD, which, str(reps), json.dumps(folders)], env=env,
                          capture_output=True, text=True, timeout=3600)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{which} {env_extra} failed:\n{proc.stderr[-3000:]}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "torch", "jax"])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--folder", default=os.path.join(tempfile.gettempdir(), "km_bench_load"))
    args = parser.parse_args()
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    folders = save_models(names, args.folder)
    print(f"CPU: {cpu_model()}; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
          f"median of {args.reps} loads after one warm-up load, each runtime in its own process")
    hf = run_child("transformers", {}, args.reps, folders)
    rows = []
    for backend in args.backends:
        on = run_child("ours", {"KERAS_BACKEND": backend, "KM_KERAS_LEVEL_BUILD": "1"}, args.reps, folders)
        off = run_child("ours", {"KERAS_BACKEND": backend, "KM_KERAS_LEVEL_BUILD": "0"}, args.reps, folders)
        rows.append((backend, on, off))
    print("| model | backend | Transformers s | ours s | x Transformers | ours, switch off s | off / on |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name in names:
        for backend, on, off in rows:
            print(f"| {name} | {backend} | {hf[name]:.3f} | {on[name]:.3f} | {hf[name] / on[name]:.2f} | "
                  f"{off[name]:.3f} | {off[name] / on[name]:.2f} |")
    print(f"(x Transformers > 1: our load is faster; load average after: {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
