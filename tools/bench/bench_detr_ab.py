"""DETR on torch, interleaved A/B in one process (issue 17): ours with the fused conv path
(torch_kernels.FAST_CONV2D) on, ours with it off, and Transformers, best of N, max diffs printed.

    OMP_NUM_THREADS=1 taskset -c 0 python tools/bench/bench_detr_ab.py [--batch 4] [--scale 1.0] [--profile]

Builds bench_tasks' random-weight DETR-R50 (``--scale`` shrinks the transformer depth) in a temp folder;
``--profile`` prints torch.profiler tables of one call each. Threads: BENCH_THREADS (default 1)."""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "torch")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--iters", type=int, default=2)
    p.add_argument("--profile", action="store_true")
    args = p.parse_args()
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS") or 1))
    import bench_tasks as bt
    import transformers as T

    import keras_models as km
    from keras_models import torch_kernels as tk

    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(0)
        bt.build_detr(folder, args.scale)
        ours = km.ObjectDetector.from_preset(folder)
        ref = T.DetrForObjectDetection.from_pretrained(folder).eval()
    pixels, mask = bt._detr_inputs()
    pixels, mask = pixels[:args.batch], mask[:args.batch]
    tp, tm = torch.tensor(pixels).permute(0, 3, 1, 2), torch.tensor(mask)

    def run_on():
        return np.asarray(ours.predict_on_batch({"pixel_values": pixels, "pixel_mask": mask})["logits"])

    def run_off():
        tk.FAST_CONV2D = False
        try:
            return run_on()
        finally:
            tk.FAST_CONV2D = True

    def run_ref():
        with torch.inference_mode():
            return ref(pixel_values=tp, pixel_mask=tm).logits.numpy()

    runs = {"fast conv on": run_on, "fast conv off": run_off, "transformers": run_ref}
    outs = {k: f() for k, f in runs.items()}
    for k in ("fast conv on", "fast conv off"):
        print(f"{k}: max diff vs transformers {np.abs(outs[k] - outs['transformers']).max():.1e}")
    if args.profile:
        from torch.profiler import profile

        for k, f in runs.items():
            with profile() as prof:
                f()
            print(k)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(args.iters):
        for k, f in runs.items():
            t = time.perf_counter()
            f()
            best[k] = min(best[k], time.perf_counter() - t)
    print(f"batch {args.batch}, scale {args.scale}, {torch.get_num_threads()} thread(s); best of {args.iters}:")
    for k, s in best.items():
        print(f"  {k}: {s:.3f} s, ratio vs transformers {best['transformers'] / s:.2f}")


if __name__ == "__main__":
    main()
