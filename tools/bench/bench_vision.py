"""Benchmark: keras-models ViT image classifier vs Transformers (PyTorch), same random weights.

    KERAS_BACKEND=jax python tools/bench/bench_vision.py --batch 16 --iters 5

Builds a ViT-base-shaped ViTForImageClassification (random init, 1000 classes, 224x224, patch 16;
``--layers`` shrinks the depth for quick runs), saves it, loads it with
``km.ImageClassifier.from_preset``, checks the logits agree, then times a forward pass of a
(batch, 224, 224, 3) batch: ours through ``predict_on_batch`` (compiled by the backend: XLA under
JAX, tf.function under TensorFlow, eager under PyTorch), Transformers' eager forward under
``torch.no_grad()``. Reports median milliseconds per batch and images per second.
"""

import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np


def _time(fn, iters, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--skip-hf", action="store_true", help="time ours only")
    args = p.parse_args()

    import keras
    import torch
    import transformers

    import keras_models as km

    torch.manual_seed(0)
    cfg = transformers.ViTConfig(num_hidden_layers=args.layers, image_size=args.image_size, num_labels=1000)
    hf = transformers.ViTForImageClassification(cfg).eval()
    folder = tempfile.mkdtemp(prefix="bench_vit_")
    hf.save_pretrained(folder)
    model = km.ImageClassifier.from_preset(folder)

    x = np.random.RandomState(0).randn(args.batch, args.image_size, args.image_size, 3).astype("float32")
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    ours = lambda: np.asarray(model.predict_on_batch({"pixel_values": x}))  # noqa: E731
    result = {"backend": keras.backend.backend(), "batch": args.batch, "image_size": args.image_size,
              "layers": args.layers, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}
    with torch.no_grad():
        ref = hf(pixel_values=xt).logits.numpy()
    result["max_abs_diff"] = float(np.abs(ours() - ref).max())
    t_ours = _time(ours, args.iters, args.warmup)
    result["keras_models_ms"] = round(1000 * t_ours, 1)
    result["keras_models_img_s"] = round(args.batch / t_ours, 2)
    if not args.skip_hf:
        with torch.no_grad():
            t_hf = _time(lambda: hf(pixel_values=xt).logits, args.iters, args.warmup)
        result["transformers_ms"] = round(1000 * t_hf, 1)
        result["transformers_img_s"] = round(args.batch / t_hf, 2)
        result["speedup_vs_transformers"] = round(t_hf / t_ours, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
