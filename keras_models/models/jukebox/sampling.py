"""Jukebox sampling helpers: window starts, jit wrapping, decoding and token selection."""


import keras
import numpy as np


def _starts(total_length, n_ctx, hop_length):
    """Window starts over ``total_length`` codes: every ``hop_length``, the last one moved back to
    end at ``total_length``."""
    return [min(s, total_length - n_ctx) for s in range(0, total_length - n_ctx + hop_length, hop_length)]


def _jit_under_jax(layer, fn, graph_on_tensorflow=False):
    """``fn`` compiled on jax (its eager mode compiles every op per shape); on tensorflow a graph
    without XLA where asked (XLA compiles these tiny steps slower than they run); eager elsewhere."""
    from keras_models.generation.backend import compile_fn, tf_graph

    if keras.backend.backend() == "jax":
        return compile_fn(layer, fn)
    if graph_on_tensorflow and keras.backend.backend() == "tensorflow":
        return tf_graph(fn, reduce_retracing=False)
    return fn


def _decode_one(vqvae, start_level, codes):
    return vqvae.decode([codes], start_level)


def _select(logits, step, temp, top_k, top_p, rng):
    """Transformers' Jukebox token choice on numpy logits (b, vocab): / temp, top-k and top-p
    filtering, then a draw; ``top_k=1`` is the argmax."""
    del step
    logits = np.asarray(logits, "float64")
    if top_k == 1:
        return np.argmax(logits, axis=-1)
    logits = logits / temp
    if top_k > 0:
        kth = np.sort(logits, axis=-1)[:, -min(top_k, logits.shape[-1])][:, None]
        logits = np.where(logits < kth, -np.inf, logits)
    if top_p > 0.0:
        order = np.argsort(-logits, axis=-1, kind="stable")
        srt = np.take_along_axis(logits, order, -1)
        p = np.exp(srt - srt[:, :1])
        cum = np.cumsum(p / p.sum(-1, keepdims=True), -1)
        drop = np.concatenate([np.zeros_like(cum[:, :1], bool), cum[:, :-1] > top_p], -1)
        mask = np.zeros_like(drop)
        np.put_along_axis(mask, order, drop, -1)
        logits = np.where(mask, -np.inf, logits)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return np.array([rng.choice(p.shape[-1], p=row) for row in p])
