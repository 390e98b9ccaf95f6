"""The MoE layer's sparse dispatches (eager gather + segment sum, traced per-expert cond, gathered
stacked tensors) give the dense reference's values, for every expert layout and routing switch,
eagerly and inside the backend's compiled call; and the eager dispatch runs only chosen experts."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_models.layers import moe_torch
from keras_models.layers.moe import MoE

CASES = {
    "list_softmax_topk": dict(num_experts=6, experts_per_token=2),
    "list_shared_gate_sigmoid_groups": dict(num_experts=8, experts_per_token=3, router_score="sigmoid",
                                            router_groups=4, router_topk_groups=2, router_correction_bias=True,
                                            shared_expert_size=12, shared_expert_gate=True, normalize_top_k=False),
    "list_plain_capacity": dict(num_experts=4, experts_per_token=1, gated=False, use_bias=True,
                                activation="relu", expert_capacity=2, router_bias=True),
    "stacked_glu_bias": dict(num_experts=8, experts_per_token=2, stacked=True, use_bias=True,
                             glu="clamped_swiglu"),
    "stacked_weight_inputs": dict(num_experts=8, experts_per_token=1, stacked=True, weight_inputs=True,
                                  router_score="sigmoid", normalize_top_k=False),
}


def _layer(kw, seed):
    layer = MoE(16, 24, kernel_initializer="zeros", **kw)
    layer.build((None, None, 16))
    rng = np.random.default_rng(seed)
    for v in layer.weights:  # biases and correction bias non-zero too
        v.assign(rng.normal(0, 0.3, v.shape).astype("float32"))
    return layer


def _compiled(fn):
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.jit(fn)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn)
    return fn


def _with_shared(layer, x, routed):
    if layer.shared_expert is None:
        return routed
    shared = layer.shared_expert(x)
    return routed + (shared * ops.sigmoid(layer.shared_gate(x)) if layer.shared_gate is not None else shared)


@pytest.mark.one_case_per_pass("case")  # the MoE decoder families' parity runs the traced dispatch on jax / tf
@pytest.mark.parametrize("case", sorted(CASES))
def test_dispatch_modes_agree(case):
    layer = _layer(CASES[case], seed=len(case))
    rng = np.random.default_rng(1)
    modes = ["dense", "traced"] + (["gathered"] if layer.stacked else [])
    if layer.stacked and keras.backend.backend() == "jax":
        modes.append("looped")  # jax jit's own dispatch for stacked experts

    def compiled_modes(x):  # every traceable dispatch, and the layer's own call, in one compiled call
        w = layer.routing_weights(x)
        out = {m: layer.routed(x, w, mode=m) for m in modes}
        out["call"] = layer(x) - _with_shared(layer, x, 0.0)
        return out

    compiled = _compiled(compiled_modes)
    for shape in ((2, 5, 16), (1, 1, 16)):  # a prefill-like batch and one decoding row
        x = ops.convert_to_tensor(rng.normal(size=shape).astype("float32"))
        got = {k: keras.ops.convert_to_numpy(v) for k, v in compiled(x).items()}
        want = got.pop("dense")
        assert np.abs(want).max() > 0.1
        if keras.backend.backend() != "jax":  # the host-side dispatch (eager jax computes densely)
            w = layer.routing_weights(x)
            got["eager"] = keras.ops.convert_to_numpy(layer.routed(x, w, mode="eager"))
            got["eager call"] = keras.ops.convert_to_numpy(layer(x) - _with_shared(layer, x, 0.0))
        for mode, value in got.items():
            np.testing.assert_allclose(value, want, atol=1e-5, rtol=1e-5, err_msg=f"{case} {mode} {shape}")


def test_eager_dispatch_runs_only_chosen_experts():
    layer = _layer(dict(num_experts=8, experts_per_token=2), seed=3)
    x = ops.convert_to_tensor(np.random.default_rng(0).normal(size=(1, 1, 16)).astype("float32"))
    chosen = np.nonzero(keras.ops.convert_to_numpy(layer.routing_weights(x)).reshape(-1))[0]
    called = []
    for e, expert in enumerate(layer.experts):
        original = expert.call
        expert.call = lambda h, e=e, original=original: (called.append(e), original(h))[1]
    layer.routed(x, layer.routing_weights(x), mode="eager")
    assert sorted(called) == sorted(chosen.tolist()) and len(called) == 2


def test_gradients_reach_the_router_and_the_chosen_experts():
    """Training goes through the layer's own dispatch (torch and TensorFlow eagerly: the gather +
    segment_sum path; jax: the per-expert cond under jax.grad): the router and every chosen expert get gradients, and
    they equal the dense computation's."""
    layer = _layer(dict(num_experts=4, experts_per_token=2), seed=5)
    x = np.random.default_rng(2).normal(size=(2, 3, 16)).astype("float32")
    names = [v.path for v in layer.trainable_weights]

    def grads(mode):
        backend = keras.backend.backend()
        if backend == "jax":
            import jax

            values = [v.value for v in layer.trainable_weights]
            out = jax.grad(lambda vals: _stateless_loss(layer, vals, x, mode))(values)
            return [np.asarray(g) for g in out]
        if backend == "tensorflow":
            import tensorflow as tf

            with tf.GradientTape() as tape:
                xt = tf.constant(x)
                loss = tf.reduce_sum(layer.routed(xt, layer.routing_weights(xt), mode=mode) ** 2)
            return [g.numpy() if g is not None else np.zeros(v.shape) for g, v in
                    zip(tape.gradient(loss, [v.value for v in layer.trainable_weights]), layer.trainable_weights)]
        import torch

        for v in layer.trainable_weights:
            v.value.grad = None
        xt = torch.tensor(x)
        (layer.routed(xt, layer.routing_weights(xt), mode=mode) ** 2).sum().backward()
        return [v.value.grad.numpy() if v.value.grad is not None else np.zeros(v.shape)
                for v in layer.trainable_weights]

    picked = "traced" if keras.backend.backend() == "jax" else "eager"  # jax: the per-expert cond under grad
    got, want = grads(picked), grads("dense")
    by_name = dict(zip(names, got))
    assert np.abs(by_name[layer.router.kernel.path]).sum() > 0
    assert sum(int(np.abs(g).sum() > 0) for g in got) > 4
    for name, g, w in zip(names, got, want):
        np.testing.assert_allclose(g, w, atol=1e-4, rtol=1e-4, err_msg=name)


def _stateless_loss(layer, values, x, mode):
    trainable = dict(zip([id(v) for v in layer.trainable_weights], values))
    with keras.StatelessScope(state_mapping=[(v, trainable[id(v)]) for v in layer.trainable_weights]):
        return ops.sum(layer.routed(x, layer.routing_weights(x), mode=mode) ** 2)


@pytest.mark.parametrize("normalize", [True, False])
def test_torch_routing_equals_the_keras_ops_routing(normalize, monkeypatch):
    """The eager torch call's routing in plain torch functions (``moe_torch.top_k_routing``) gives the
    Keras-ops routing's tensors exactly; ``KM_TORCH_DIRECT_OPS`` off takes the Keras path."""
    if keras.backend.backend() != "torch":
        pytest.skip("torch-only routing path")
    import torch

    from keras_models.generation import backend

    layer = _layer(dict(num_experts=8, experts_per_token=3, stacked=True, normalize_top_k=normalize), 3)
    x = torch.tensor(np.random.default_rng(4).normal(size=(2, 5, 16)).astype("float32"))
    want = layer._top_k_routing(x)
    got = moe_torch.top_k_routing(layer, x)
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    calls = []
    monkeypatch.setattr(backend, "TORCH_DIRECT_OPS", False)
    monkeypatch.setattr(layer, "_top_k_routing", lambda x: calls.append(1) or want)
    moe_torch.top_k_routing(layer, x)
    assert calls == [1]
