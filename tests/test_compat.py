"""keras_models.compat: each Keras internal the library relies on still exists and behaves as
assumed (a Keras upgrade that changes one fails here, naming it), and the torch fast paths stay
confined to the model and thread that asked for them."""

import re
import threading

import keras
import numpy as np
import pytest

from keras_models import compat


def _internal(name, ok, detail=""):
    assert ok, f"Keras internal changed: {name} no longer behaves as keras_models.compat assumes. {detail}"


def _deferred_variable(shape=(2, 3), initializer="ones"):
    with keras.StatelessScope(initialize_variables=False):
        return keras.Variable(initializer=initializer, shape=shape, dtype="float32")


def _dense(units=3, fan_in=4):
    layer = keras.layers.Dense(units)
    layer.build((None, fan_in))
    return layer


# --- deferred variables --------------------------------------------------------------------------
def test_uninitialised_variables_is_the_list_keras_initialises():
    name = "global_state 'uninitialized_variables' / variables.initialize_all_variables"
    v = _deferred_variable()
    pending = compat.uninitialised_variables()
    _internal(name, isinstance(pending, list) and any(p is v for p in pending),
              "a variable created in StatelessScope(initialize_variables=False) is not in the list")
    _internal("Variable._value / Variable._initializer", compat.is_deferred(v))
    compat.initialise_all_pending()
    _internal(name, not compat.uninitialised_variables(), "initialize_all_variables left the list non-empty")
    _internal(name, not compat.is_deferred(v))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(v.value), np.ones((2, 3)))


def test_forget_uninitialised_skips_the_initialiser():
    kept, dropped = _deferred_variable(), _deferred_variable(initializer="zeros")
    compat.forget_uninitialised([dropped])
    pending = compat.uninitialised_variables()
    _internal("global_state 'uninitialized_variables'",
              any(p is kept for p in pending) and not any(p is dropped for p in pending))
    compat.initialise_all_pending()
    assert not compat.is_deferred(kept) and compat.is_deferred(dropped)


def test_initialise_deferred_sets_the_first_value_and_restores_on_failure():
    v = _deferred_variable()
    value = np.arange(6, dtype="float32").reshape(2, 3)
    compat.initialise_deferred(v, value)
    _internal("Variable._initializer / Variable._deferred_initialize", not compat.is_deferred(v))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(v.value), value)
    _internal("Variable._deferred_initialize", v._initializer is None, "it no longer clears _initializer")

    bad = _deferred_variable()
    with pytest.raises(Exception):
        compat.initialise_deferred(bad, object())  # not convertible to a tensor
    _internal("Variable._initializer", compat.is_deferred(bad), "a failed first value left it changed")
    compat.forget_uninitialised(compat.uninitialised_variables())


def test_is_deferred_is_false_for_ordinary_variables():
    assert not compat.is_deferred(keras.Variable(np.zeros(2, "float32")))


# --- layer structure -----------------------------------------------------------------------------
class _Pair(keras.layers.Layer):
    def __init__(self, first, second, **kwargs):
        super().__init__(**kwargs)
        self.first, self.second = first, second

    def call(self, x):
        return self.second(self.first(x))


def test_sublayers_and_has_sublayers():
    leaves = [keras.layers.Dense(2), keras.layers.Dense(3), keras.layers.Dense(4)]
    inner = _Pair(leaves[0], leaves[1])
    outer = _Pair(inner, leaves[2])
    found = compat.sublayers(outer)
    _internal("Layer._flatten_layers(include_self=False)",
              len(found) == 4 and {id(x) for x in found} == {id(x) for x in [inner, *leaves]},
              f"got {[layer.name for layer in found]}")
    _internal("Layer._layers", compat.has_sublayers(inner) and not compat.has_sublayers(leaves[0]))


def test_remat_mode():
    _internal("Layer._remat_mode", compat.remat_mode(keras.layers.Dense(2)) is None)
    with keras.RematScope(mode="full"):
        layer = keras.layers.Dense(2)
    mode = compat.remat_mode(layer)
    _internal("Layer._remat_mode", getattr(mode, "mode", None) == "full", f"got {mode!r}")


def test_torch_device():
    import torch

    device = torch.device(compat.torch_device())
    # under torch: where Keras puts new tensors; elsewhere the internal still resolves (CPU here)
    expected = (keras.ops.convert_to_tensor(np.zeros(1)).device.type
                if keras.backend.backend() == "torch" else "cpu")
    _internal("keras.src.backend.torch.core.get_device", device.type == expected, f"got {device}")


# --- redirected layer calls ----------------------------------------------------------------------
def test_redirected_calls_only_for_the_named_layers_and_restored():
    dense, other = _dense(), _dense()
    x = np.ones((2, 4), "float32")
    _internal("Layer.__call__ (the entry point of layer(x))", compat.calls_go_through_keras(dense))
    keras_call = keras.layers.Layer.__call__
    calls = []
    with compat.redirected_calls({dense: lambda *a, **k: calls.append(a) or "direct"}):
        assert dense(x) == "direct" and len(calls) == 1
        assert isinstance(dense, keras.layers.Dense) and compat.keras_class(dense) is keras.layers.Dense
        assert type(dense).__name__ == "Dense" and type(dense).__module__ == keras.layers.Dense.__module__
        np.testing.assert_allclose(keras.ops.convert_to_numpy(other(x)),
                                   keras.ops.convert_to_numpy(other.call(x)), atol=1e-6)
        with compat.redirected_calls({dense: lambda *a, **k: "inner"}):  # nested: outer wins
            assert dense(x) == "direct"
        assert compat.in_redirected_calls()
    assert type(dense) is keras.layers.Dense and type(other) is keras.layers.Dense
    assert keras.layers.Layer.__call__ is keras_call and not compat.in_redirected_calls()
    assert keras.ops.convert_to_numpy(dense(x)).shape == (2, 3) and len(calls) == 2


def test_redirected_calls_are_invisible_to_other_threads():
    """Thread A redirects ``shared``; while it is inside the context, thread B calls ``shared``,
    another layer and a fresh one: all through Keras. Then A calls ``shared``: redirected. The
    interleaving is fixed by a barrier and events (no sleeping)."""
    shared, other = _dense(), _dense()
    x = np.ones((2, 4), "float32")
    inside, b_done = threading.Barrier(2, timeout=60), threading.Event()
    seen = {"a": [], "b": []}
    errors = []

    def redirect(*args, **kwargs):
        seen["a" if threading.current_thread().name == "A" else "b"].append("direct")
        return "direct"

    def thread_a():
        try:
            with compat.redirected_calls({shared: redirect}):
                inside.wait()
                assert b_done.wait(60)
                seen["a"].append(shared(x))
        except Exception as e:  # reported by the main thread
            errors.append(e)

    def thread_b():
        try:
            inside.wait()
            for layer in (shared, other, _dense()):
                out = layer(x)
                seen["b"].append("keras" if keras.ops.convert_to_numpy(out).shape == (2, 3) else out)
        except Exception as e:
            errors.append(e)
        finally:
            b_done.set()

    threads = [threading.Thread(target=thread_a, name="A"), threading.Thread(target=thread_b, name="B")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert seen["b"] == ["keras", "keras", "keras"], seen
    assert seen["a"] == ["direct", "direct"], seen
    assert type(shared) is keras.layers.Dense


# --- keras.ops' symbolic-tensor check ------------------------------------------------------------
def test_shallow_symbolic_checks_answer_as_keras():
    from keras.src.backend.common import keras_tensor

    keras_check = compat._keras_symbolic_check()[0]
    _internal("keras.src.backend.common.keras_tensor.any_symbolic_tensors",
              keras_check is keras_tensor.any_symbolic_tensors and callable(keras_check))
    with compat.shallow_symbolic_checks():
        pass
    import importlib

    bound = [importlib.import_module(name) for name in compat._OPS_MODULES]
    for module in bound:
        _internal(f"{module.__name__}.any_symbolic_tensors",
                  getattr(module, "any_symbolic_tensors", None) is not keras_check,
                  "this keras.ops module no longer imports any_symbolic_tensors by name")
    gated = bound[0].any_symbolic_tensors
    sym = keras.KerasTensor((2, 3))
    t = keras.ops.ones((2, 3))
    v = keras.Variable(np.zeros(2, "float32"))
    cases = [
        ((t,), None), ((sym,), None), ((t, [t, sym]), None), ((t, [t, [t, sym]]), None),
        ((t, {"a": sym}), None), ((t, [{"a": [sym]}]), None), ((t, 3, None, "x", v), None),
        ((t,), {"b": sym}), ((t,), {"b": [t, (t, sym)]}), ((t,), {"b": t}), ((), None), (None, None),
        ((np.ones(2), (1, 2), slice(0, 1)), None),
    ]
    for args, kwargs in cases:
        want = keras_check(args, kwargs)
        assert gated(args, kwargs) == want, (args, kwargs)
        with compat.shallow_symbolic_checks():
            assert gated(args, kwargs) == want, (args, kwargs)
    with compat.shallow_symbolic_checks():
        assert isinstance(keras.ops.reshape(sym, (3, 2)), keras.KerasTensor)
        assert not isinstance(keras.ops.reshape(t, (3, 2)), keras.KerasTensor)
        assert keras.ops.reshape(t, (3, 2)).shape == (3, 2)


# --- the torch fast paths (generation.backend) ---------------------------------------------------
def _tiny_model(seed, gate=None):
    """Dense -> (a layer that, once ``gate["barrier"]`` is set, waits there on one call, then for
    ``gate["release"]``) -> Dense."""

    class Gate(keras.layers.Layer):
        def call(self, x):
            barrier = (gate or {}).pop("barrier", None)
            if barrier is not None:
                barrier.wait()  # both threads are here...
                gate["release"].wait(60)  # ...and this call stays inside until the other thread is done
            return x

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.layers.Dense(8), Gate(), keras.layers.Dense(3)])
    model.build((None, 4))
    return model


def test_fast_inference_is_per_model_and_per_thread(monkeypatch):
    """Thread A predicts with ``model_a`` (its Dense layers through ``decode_matmul`` under torch);
    while A is inside, thread B calls ``model_b`` normally, ``model_a`` itself, and a lone Dense:
    B never reaches ``decode_matmul`` and gets Keras' results; A does. No sleeping: A's model
    waits at a barrier, then until B has finished (a barrier alone releases both threads at once:
    A could leave the fast path before B looked)."""
    from keras_models.generation import backend

    keras_call = keras.layers.Layer.__call__
    used_by = []
    real = backend.decode_matmul

    def counting_decode_matmul():
        matmul = real()

        def counted(*args):
            used_by.append(threading.current_thread().name)
            return matmul(*args)

        return counted

    monkeypatch.setattr(backend, "decode_matmul", counting_decode_matmul)
    gate, armed = threading.Barrier(2, timeout=60), {}
    model_a, model_b = _tiny_model(1, armed), _tiny_model(2)
    lone = _dense()
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    ref_a, ref_b = (keras.ops.convert_to_numpy(m(x)) for m in (model_a, model_b))
    ref_lone = keras.ops.convert_to_numpy(lone(x))
    armed["barrier"] = gate  # model_a's next call waits there, inside the fast path
    armed["release"] = threading.Event()  # set by B when done: A leaves the fast path only then
    results, errors = {}, []

    def thread_a():
        try:
            with backend.no_grad(), backend.fast_inference(model_a):  # as Backbone.predict_step
                results["a"] = keras.ops.convert_to_numpy(model_a(x))
        except Exception as e:
            errors.append(e)

    def thread_b():
        try:
            gate.wait()  # A is inside predict_step, under fast_inference
            assert type(model_a.layers[0]) is not keras.layers.Dense or backend.BACKEND != "torch"
            results["b"] = keras.ops.convert_to_numpy(model_b(x))
            results["lone"] = keras.ops.convert_to_numpy(lone(x))
            results["a_in_b"] = keras.ops.convert_to_numpy(model_a.layers[2](model_a.layers[0](x)))
        except Exception as e:
            errors.append(e)
            gate.abort()
        finally:
            armed["release"].set()

    threads = [threading.Thread(target=thread_a, name="A"), threading.Thread(target=thread_b, name="B")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    # B's calls all took Keras' path; A's two Dense layers took the direct one (torch only)
    assert "B" not in used_by, used_by
    assert used_by == (["A", "A"] if backend.BACKEND == "torch" else []), used_by
    np.testing.assert_allclose(results["a"], ref_a, atol=1e-5)
    np.testing.assert_allclose(results["b"], ref_b, atol=1e-6)
    np.testing.assert_allclose(results["lone"], ref_lone, atol=1e-6)
    direct_a = keras.ops.convert_to_numpy(model_a.layers[2](model_a.layers[0](x)))
    np.testing.assert_allclose(results["a_in_b"], direct_a, atol=1e-6)
    assert keras.layers.Layer.__call__ is keras_call
    assert all(type(layer) is compat.keras_class(layer) for m in (model_a, model_b) for layer in m.layers)


def test_registry_fallback_relies_on_keras_lookup_through_the_module_attribute():
    """keras_models.compat.install_registry_fallback wraps object_registration.get_registered_object, which
    serialization_lib must call through the module (not a copied reference)."""
    import inspect

    from keras.src.saving import object_registration, serialization_lib

    import keras_models  # noqa: F401  (installs the fallback)

    assert getattr(object_registration.get_registered_object, "_keras_models_fallback", False)
    assert "object_registration.get_registered_object(" in inspect.getsource(serialization_lib._retrieve_class_or_fn)
    assert object_registration.get_registered_object("keras_models>NoSuchClass") is None
    assert object_registration.get_registered_object("keras_models>BertBackbone").__name__ == "BertBackbone"


def test_serializer_asks_about_tensorflow_types_only_once_tensorflow_is_imported():
    """keras_models.compat replaces serialization_lib's lazy ``tf`` with one whose ``available`` is
    False until TensorFlow is imported (tests/test_imports.py: a .keras save under jax / torch
    imports no TensorFlow); Keras must still read it through the module attribute."""
    import inspect
    import sys

    from keras.src.saving import serialization_lib

    import keras_models  # noqa: F401  (installs the hook)

    assert isinstance(serialization_lib.tf, compat._TensorFlowIfImported)
    assert "tf.available and isinstance(obj, tf.TensorShape)" in inspect.getsource(serialization_lib)
    if "tensorflow" not in sys.modules:
        assert serialization_lib.tf.available is False and "tensorflow" not in sys.modules
    else:
        assert serialization_lib.tf.available is True and serialization_lib.tf.TensorShape is sys.modules["tensorflow"].TensorShape
    assert serialization_lib.serialize_keras_object(keras.layers.Dense(2))["class_name"] == "Dense"


def test_quantization_helpers():
    dense = keras.layers.Dense(3)
    dense.build((None, 2))
    _internal("Layer._trainable_variables / _non_trainable_variables",
              [v.path for v in compat.own_variables(dense)] == [dense.kernel.path, dense.bias.path])
    _internal("keras.src.quantizers.utils.should_quantize_layer",
              compat.keras_would_quantize(dense, None) and not compat.keras_would_quantize(dense, lambda layer: False))
    import gc

    with compat.cheap_collections():
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0


def test_stored_variables_and_policy_accessors():
    dense = keras.layers.Dense(4)
    dense.build((None, 3))
    emb = keras.layers.Embedding(5, 4)
    emb.build((None,))
    _internal("Dense._kernel", compat.stored_kernel(dense) is dense.kernel)
    _internal("Embedding._embeddings", compat.stored_embeddings(emb) is emb.embeddings)
    dense.enable_lora(2)
    dense.lora_kernel_b.assign(np.ones((2, 4), "float32"))
    # with LoRA on, .kernel adds the adapter product; the stored variable stays the base kernel
    _internal("Dense._kernel under LoRA", compat.stored_kernel(dense).path.endswith("kernel")
              and not np.allclose(keras.ops.convert_to_numpy(dense.kernel),
                                  keras.ops.convert_to_numpy(compat.stored_kernel(dense))))
    packed = keras.layers.Dense(6, use_bias=False)
    packed.build((None, 3))
    packed.quantize("int4")
    _internal("Dense._orig_output_dim (int4)", compat.int4_output_dim(packed) == 6)
    policy = compat.dtype_policy_of(packed)
    _internal("Layer._dtype_policy", policy is not None and policy.quantization_mode == "int4")
    compat.set_dtype_policy(packed, keras.dtype_policies.DTypePolicy("float32"))
    _internal("Layer._dtype_policy setter bypass", packed.dtype_policy.quantization_mode is None)
    compat.set_dtype_policy(packed, policy)
    assert packed.dtype_policy.quantization_mode == "int4"


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="torch backend kernels")
def test_fast_torch_kernels_match_keras_conv_and_batch_norm():
    from keras.src.backend.torch import nn as torch_nn

    compat.fast_torch_kernels()
    _internal("keras.src.backend.torch.nn.conv rebinding", getattr(torch_nn.conv, "_keras_models_fast", False))
    conv, bn = torch_nn.conv, torch_nn.batch_normalization
    rng = np.random.default_rng(0)
    cases = [((2, 17, 8), (3, 8, 6), 1, "same", 1), ((2, 17, 8), (4, 2, 8), 2, "valid", 1),  # 1-D, grouped
             ((2, 17, 8), (3, 8, 6), 1, "same", 2), ((2, 9, 10, 8), (3, 3, 8, 6), 2, "same", 1),
             ((2, 9, 10, 8), (4, 4, 2, 8), 1, "valid", 2), ((1, 7, 7, 3), (1, 1, 3, 5), 1, "same", 1)]
    for xs, ks, strides, padding, dilation in cases:
        x, k = rng.standard_normal(xs).astype("float32"), rng.standard_normal(ks).astype("float32")
        want = keras.ops.convert_to_numpy(conv.keras_original(x, k, strides, padding, dilation_rate=dilation))
        got = keras.ops.convert_to_numpy(keras.ops.conv(x, k, strides, padding, dilation_rate=dilation))
        assert got.shape == want.shape and np.abs(got - want).max() < 1e-5, (xs, ks)
    for shape in ((5, 7), (2, 6, 7), (2, 4, 5, 7)):
        x = rng.standard_normal(shape).astype("float32")
        m, v, o, s = (rng.standard_normal(7).astype("float32") for _ in range(4))
        for offset, scale in ((o, s), (None, None)):
            want = keras.ops.convert_to_numpy(bn.keras_original(x, m, np.abs(v), -1, offset, scale, 1e-3))
            got = keras.ops.convert_to_numpy(keras.ops.batch_normalization(x, m, np.abs(v), -1, offset, scale, 1e-3))
            assert np.abs(got - want).max() < 1e-5
    import torch

    layer = keras.layers.BatchNormalization()  # training: batch statistics (Keras' path), gradients flow
    y = layer(rng.standard_normal((4, 3)).astype("float32"), training=True)
    assert abs(float(keras.ops.convert_to_numpy(keras.ops.mean(y)))) < 1e-5
    # batch moments of an input that needs a gradient (a training step after a trainable layer):
    # the same values and gradients as Keras' own function (torch's fused kernel takes none there)
    x = rng.standard_normal((2, 5, 3, 4)).astype("float32")
    grads = []
    for fn in (bn.keras_original, keras.ops.batch_normalization):
        xt = torch.tensor(x, requires_grad=True)
        mean, var = keras.ops.moments(xt, axes=(0, 1, 2))
        out = fn(xt, mean, var, -1, torch.ones(4, requires_grad=True), torch.zeros(4), 1e-3)
        (out * torch.arange(out.numel()).reshape(out.shape).sin()).sum().backward()
        grads.append((out.detach().numpy(), xt.grad.numpy()))
    np.testing.assert_allclose(grads[1][0], grads[0][0], atol=1e-5)
    np.testing.assert_allclose(grads[1][1], grads[0][1], atol=1e-5)


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="torch backend kernels")
def test_torch_conv1d_helpers_and_inference_cache():
    import torch

    rng = np.random.default_rng(0)
    x = keras.ops.convert_to_tensor(rng.standard_normal((2, 13, 6)).astype("float32"))
    kernel = keras.Variable(rng.standard_normal((3, 6, 5)).astype("float32"))
    bias = keras.Variable(rng.standard_normal((5,)).astype("float32"))
    for padding, dilation in (((1, 1), 1), ((2, 0), 2), ((0, 3), 1), ((0, 0), 1)):
        want = keras.ops.conv(keras.ops.pad(x, ((0, 0), padding, (0, 0))), kernel, padding="valid",
                              dilation_rate=dilation) + bias
        got = compat.torch_conv1d(x, compat.torch_conv1d_weight(kernel.value), bias.value, padding, dilation)
        assert got.shape == want.shape and got.is_contiguous()
        np.testing.assert_allclose(got.detach().numpy(), keras.ops.convert_to_numpy(want), rtol=1e-5, atol=1e-5)
    dw = keras.Variable(rng.standard_normal((3, 6, 1)).astype("float32"))
    want = keras.ops.depthwise_conv(keras.ops.pad(x, ((0, 0), (1, 1), (0, 0))), dw, padding="valid")
    got = compat.torch_conv1d(x, compat.torch_conv1d_weight(dw.value, depthwise=True), None, (1, 1))
    np.testing.assert_allclose(got.detach().numpy(), keras.ops.convert_to_numpy(want), rtol=1e-5, atol=1e-5)
    tk = keras.Variable(rng.standard_normal((4, 5, 6)).astype("float32"))  # (k, out, in), stride 2, padding 1
    want = keras.ops.conv_transpose(x, tk, strides=2, padding="valid")[:, 1:1 + 12 * 2 + 4 - 2] + bias
    got = compat.torch_conv_transpose1d(x, compat.torch_conv_transpose1d_weight(tk.value), bias.value, 2, 1)
    np.testing.assert_allclose(got.detach().numpy(), keras.ops.convert_to_numpy(want), rtol=1e-5, atol=1e-5)

    class Owner:
        pass

    owner, calls = Owner(), []

    def compute():
        calls.append(1)
        return kernel.value * 2

    with torch.no_grad():
        first = compat.inference_cache(owner, "k", [kernel], compute)
        assert compat.inference_cache(owner, "k", [kernel], compute) is first and len(calls) == 1
        kernel.assign(np.ones((3, 6, 5), "float32"))  # in-place: the version counter moves
        np.testing.assert_allclose(compat.inference_cache(owner, "k", [kernel], compute).numpy(), 2.0)
        assert len(calls) == 2
    assert compat.inference_cache(owner, "k", [kernel], compute).requires_grad  # autograd on: no cache
    assert len(calls) == 3


def test_group_norm_matches_keras_group_normalization():
    from keras_models.layers.norms import GroupNorm

    rng = np.random.default_rng(1)
    for shape, groups in (((2, 9, 8), 8), ((2, 9, 8), 2), ((1, 4, 5, 6), 3)):
        x = rng.standard_normal(shape).astype("float32") * 3 + 1
        ref = keras.layers.GroupNormalization(groups=groups, epsilon=1e-5)
        ours = GroupNorm(groups=groups, epsilon=1e-5)
        ref.build(shape), ours.build(shape)
        for a, b in zip(ref.weights, ours.weights):
            value = rng.standard_normal(a.shape).astype("float32")
            a.assign(value), b.assign(value)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(ours(x)), keras.ops.convert_to_numpy(ref(x)),
                                   rtol=1e-5, atol=1e-5)


def test_call_context_training_is_the_enclosing_calls_value():
    seen = []

    class Probe(keras.layers.Layer):
        def call(self, x, training=None):
            seen.append(compat.call_context_training())
            return x

    class Outer(keras.layers.Layer):
        def __init__(self):
            super().__init__()
            self.probe = Probe()

        def call(self, x, training=None):
            return self.probe(x)  # no training argument: Keras passes the enclosing value on

    outer, x = Outer(), np.ones((2, 3), "float32")
    assert compat.call_context_training() is None
    outer(x)  # builds (Keras may trace call symbolically first)
    seen.clear()
    outer(x, training=True)
    outer(x, training=False)
    assert seen == [True, False]
    assert compat.call_context_training() is None


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="a jax internal")
def test_jax_backends_initialised_after_a_jax_op():
    import jax.numpy as jnp

    jnp.zeros(1).block_until_ready()
    assert compat.jax_backends_initialised() is True


# --- symbolic builds at the Keras level ----------------------------------------------------------
class SpecBlock(keras.layers.Layer):
    """No build, no compute_output_shape: Keras would trace its call in the backend."""

    def __init__(self, width, backend_only=False, **kwargs):
        super().__init__(**kwargs)
        self.backend_only = backend_only
        self.up = keras.layers.Dense(2 * width)
        self.down = keras.layers.Dense(width)

    def call(self, x):
        h = self.up(x)
        if self.backend_only and isinstance(h, keras.KerasTensor):
            raise TypeError("a backend-only kernel")  # stands for an op of one backend's own API
        return x + self.down(keras.ops.relu(h)) * 0.5  # (* a float: Keras marks this one sparse)


class SpecStack(keras.layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.first = SpecBlock(4)
        self.second = SpecBlock(4, backend_only=True)
        self.head = keras.layers.Dense(3)

    def call(self, x):
        return self.head(self.second(self.first(x)))


def _counting_traces(monkeypatch):
    traced = []
    keras_internals = compat._keras_build_internals

    def counting():
        trace, shapes_of, is_default = keras_internals()

        def counted(fn, *args, **kwargs):
            traced.append(getattr(fn, "__self__", fn))
            assert not any(getattr(x, "sparse", False) for x in keras.tree.flatten((args, kwargs)))
            return trace(fn, *args, **kwargs)
        return counted, shapes_of, is_default

    monkeypatch.setattr(compat, "_keras_build_internals", counting)
    return traced


def test_keras_level_specs_build_the_same_variables_and_fall_back_per_layer(monkeypatch):
    def variables(model):  # (paths less Keras' auto-numbering)
        return [(re.sub(r"_[0-9]+", "", v.path), tuple(v.shape)) for v in model.weights]

    reference = SpecStack()
    expected_spec = reference(keras.KerasTensor((2, 5, 4)))  # Keras' own way
    traced = _counting_traces(monkeypatch)
    model = SpecStack()
    with compat.keras_level_specs(model):
        spec = model(keras.KerasTensor((2, 5, 4)))
    assert (spec.shape, spec.dtype, spec.sparse) == (expected_spec.shape, expected_spec.dtype, False)
    assert variables(model) == variables(reference) and model.built
    assert all(layer.built for layer in compat.sublayers(model))
    if keras.backend.backend() == "jax":
        assert traced == []  # the block changes nothing under jax (Keras traces with jax.eval_shape)
    else:
        # Only the layer whose call needs real tensors was traced in the backend.
        assert traced and all(fn is model.second for fn in traced), traced
    for layer in [model, *compat.sublayers(model)]:  # nothing left on the instances
        assert "compute_output_spec" not in layer.__dict__ and "_maybe_build" not in layer.__dict__
    # Nor the nested calls' graph (Operation._inbound_nodes): no intermediate KerasTensor kept alive.
    assert all(not layer._inbound_nodes and not layer._outbound_nodes for layer in compat.sublayers(model))
    x = np.random.default_rng(0).normal(size=(2, 5, 4)).astype("float32")
    reference.set_weights(model.get_weights())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)),
                               keras.ops.convert_to_numpy(reference(x)), rtol=1e-6)


def test_traced_when_symbolic_gives_backend_tensors_only_inside_the_block():
    seen = []

    @compat.traced_when_symbolic
    def kernel(x, scale):
        seen.append(isinstance(x, keras.KerasTensor))
        return keras.ops.concatenate([x, x * scale], axis=-1)

    class Uses(keras.layers.Layer):
        def call(self, x):
            return kernel(x, 2.0)

    layer = Uses()
    with compat.keras_level_specs(layer):
        spec = layer(keras.KerasTensor((3, 2)))
    assert spec.shape == (3, 4) and not spec.sparse
    assert seen and not any(seen)  # the kernel saw backend tensors (a trace), never KerasTensors
    seen.clear()
    out = kernel(np.ones((3, 2), "float32"), 2.0)
    assert seen == [False] and keras.ops.convert_to_numpy(out).tolist() == [[1, 1, 2, 2]] * 3
