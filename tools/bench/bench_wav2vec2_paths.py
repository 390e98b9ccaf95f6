"""Wav2Vec2 on torch, the issue-14 fast paths on and off against Transformers, interleaved in one
process (best of N; ratio = Transformers' seconds / ours, > 1: we are faster).

    KERAS_BACKEND=torch OMP_NUM_THREADS=1 taskset -c 0 python tools/bench/bench_wav2vec2_paths.py \
        [--scale 1.0] [--iters 4] [--threads 1]

"before": ``torch_kernels.FAST_CONV1D`` and ``attention.FUSED_ATTENTION`` off (Keras' conv path,
explicit softmax attention); "after": both on (the defaults). Model: ``bench_tasks.build_wav2vec2``
(Wav2Vec2-base shape, random weights, depth times ``--scale``), CTC logits over 10 s, batch 1.
Prints the max abs difference of each against Transformers' logits. ``--peak`` only prints the
fp32 GEMM rate (2048^3, best of 15, oneDNN and MKL) at ``--threads``: the roof that
docs/performance.md's Wav2Vec2 FLOP argument (~148 GFLOP a call) needs.
"""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "torch")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--iters", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--peak", action="store_true")
    args = p.parse_args()
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    if args.peak:
        n = 2048
        a, b = torch.randn(n, n), torch.randn(n, n)
        bt = b.t().contiguous()
        for name, f in (("onednn", lambda: torch.ops.mkldnn._linear_pointwise(a, bt, None, "none", [], "")),
                        ("mkl", lambda: torch.mm(a, b))):
            f()
            best = float("inf")
            for _ in range(15):
                t = time.perf_counter()
                f()
                best = min(best, time.perf_counter() - t)
            print(f"sgemm {n}^3 {name}, {args.threads} thread(s): {2 * n ** 3 / best / 1e9:.0f} GFLOP/s "
                  f"(load {os.getloadavg()[0]:.1f})")
        return
    import bench_tasks
    import transformers

    import keras_models as km
    from keras_models import torch_kernels
    from keras_models.layers import attention as attention_lib

    with tempfile.TemporaryDirectory() as folder:
        bench_tasks.build_wav2vec2(folder, args.scale)
        ours = km.SpeechRecognizer.from_preset(folder)
        ref = transformers.Wav2Vec2ForCTC.from_pretrained(folder).eval()
    wave = bench_tasks._waves(10, 1)[0][None]

    def ours_with(fast):
        def run():
            torch_kernels.FAST_CONV1D = attention_lib.FUSED_ATTENTION = fast
            return np.asarray(ours.predict_on_batch({"input_values": wave}))
        return run

    def theirs():
        with torch.inference_mode():
            return ref(torch.tensor(wave)).logits.numpy()

    runs = {"before": ours_with(False), "after": ours_with(True), "transformers": theirs}
    outs = {k: f() for k, f in runs.items()}
    best = {k: float("inf") for k in runs}
    for _ in range(args.iters):
        for k, f in runs.items():
            t = time.perf_counter()
            f()
            best[k] = min(best[k], time.perf_counter() - t)
    torch_kernels.FAST_CONV1D = attention_lib.FUSED_ATTENTION = True
    tr = best["transformers"]
    print(f"wav2vec2 scale {args.scale}, {args.threads} thread(s), best of {args.iters}, load {os.getloadavg()[0]:.1f}")
    for k in runs:
        diff = np.abs(outs[k] - outs["transformers"]).max()
        print(f"  {k:12s} {best[k]:.3f} s  {tr / best[k]:.3f}x  max diff {diff:.1e}")


if __name__ == "__main__":
    main()
