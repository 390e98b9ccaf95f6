"""One MoE layer (Qwen3-MoE-shaped: hidden 1024, 64 experts of width 384, top 8) against
Transformers' Qwen3MoeSparseMoeBlock, side by side in one run, for 1, 8 and 64 rows:

    KERAS_BACKEND=<backend> python tools/bench/bench_moe_layer.py

"ours sparse" is the layer's own dispatch (keras_models.layers.moe: eager gather + index_add_
under torch, called as the decode loop calls it -- inference mode, ``direct_layer_calls`` --, per-expert
cond inside tf.function, under jax jit a loop over the chosen experts with stacked experts, dense
with the list layout); "ours dense" computes every expert on every row; under jax with stacked experts
"ours gathered" is the earlier dispatch (the chosen experts' tensors gathered per row; dense
from rows * k >= experts). Best of 20 after one warm-up call; both libraries on BENCH_THREADS threads (default 2).
"""
import time
import numpy as np
import keras, torch
from keras import ops
from keras_models.layers.moe import MoE
import transformers
import os
torch.set_num_threads(int(os.environ.get("BENCH_THREADS", 2)))
E, K, H, I = 64, 8, 1024, 384
cfg = transformers.Qwen3MoeConfig(hidden_size=H, moe_intermediate_size=I, num_experts=E, num_experts_per_tok=K, norm_topk_prob=True)
from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeSparseMoeBlock
hf = Qwen3MoeSparseMoeBlock(cfg).eval()
# built standalone, Transformers 5's block keeps all-zero weights (its init runs in post_init): the router
# would pick the same 8 experts every call, whose weights then stay in cache. Random weights, as ours.
with torch.no_grad():
    for param in hf.parameters():
        param.normal_(0.0, 0.02)
# BENCH_STACKED=0: the list-of-MLPs expert layout (.keras files saved before); default: stacked, as
# every MoE family now loads its experts
layer = MoE(H, I, E, K, normalize_top_k=True, stacked=os.environ.get("BENCH_STACKED", "1") != "0")
layer.build((None, None, H))
backend = keras.backend.backend()
def timeit(fn, n=20):
    fn(); ts=[]
    for _ in range(n):
        t=time.perf_counter(); fn(); ts.append(time.perf_counter()-t)
    return min(ts)*1e3
for T in (1, 8, 64):
    x = np.random.default_rng(0).normal(size=(1, T, H)).astype("float32")
    xt = torch.tensor(x)
    with torch.inference_mode():
        t_hf = timeit(lambda: hf(xt))
    xk = ops.convert_to_tensor(x)
    if backend == "jax":
        import jax
        f = jax.jit(lambda x: layer(x)); g = jax.jit(lambda x: layer.routed(x, layer.routing_weights(x), mode="dense"))
        run = lambda fn: fn(xk).block_until_ready()
    elif backend == "tensorflow":
        import tensorflow as tf
        f = tf.function(lambda x: layer(x)); g = tf.function(lambda x: layer.routed(x, layer.routing_weights(x), mode="dense"))
        run = lambda fn: fn(xk).numpy()
    else:  # as the torch decode loop calls it: inference mode, Keras' per-call checks skipped
        from keras_models.generation.backend import direct_layer_calls
        f = lambda x: layer(x); g = lambda x: layer.routed(x, layer.routing_weights(x), mode="dense")
        def run(fn):
            with direct_layer_calls(layer):
                return fn(xk)
    with torch.inference_mode():
        t_sparse = timeit(lambda: run(f)); t_dense = timeit(lambda: run(g))
    extra = ""
    if backend == "jax" and layer.stacked:
        old = "gathered" if T * K < E else "dense"
        h = jax.jit(lambda x: layer.routed(x, layer.routing_weights(x), mode=old))
        extra = f" | ours gathered ({old}) {timeit(lambda: run(h)):.1f} ms"
    print(f"{backend} T={T}: transformers {t_hf:.1f} ms | ours sparse {t_sparse:.1f} ms | ours dense {t_dense:.1f} ms"
          + extra, flush=True)
