"""One-row decode products: oneDNN (torch.ops.mkldnn._linear_pointwise) vs F.linear (MKL GEMV).

    python tools/bench/bench_decode_matmul.py [threads]

Checks the rule in keras_models.generation.backend.decode_matmul (one row -> F.linear). Each shape
cycles through > 96 MB of fp32 weights so they come from memory, as in a decode step; best of 5.
"""
import time, torch, torch.nn.functional as F, sys
torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
onednn = torch.ops.mkldnn._linear_pointwise
for (i, o) in [(512, 512), (512, 2048), (1024, 1024), (2048, 2048), (2048, 5632), (5632, 2048), (768, 3072), (512, 51865)]:
    n = max(2, int(96e6 // (i * o * 4)) + 1)  # > 96 MB of weights in rotation
    ws = [torch.randn(i, o) for _ in range(n)]
    x = torch.randn(1, i)
    res = {}
    with torch.no_grad():
        for name, fn in [("onednn", lambda w: onednn(x, w.T, None, "none", [], "")), ("F.linear", lambda w: F.linear(x, w.T))]:
            for w in ws: fn(w)
            best = 1e9
            for r in range(5):
                t = time.perf_counter()
                for w in ws: fn(w)
                best = min(best, (time.perf_counter() - t) / n)
            res[name] = best * 1e6
    print(f"{i}x{o}: onednn {res['onednn']:.0f} us  F.linear {res['F.linear']:.0f} us  ratio {res['onednn']/res['F.linear']:.2f}", flush=True)
