"""The one backend switch of the generation engine: compilation, loops, random numbers, no-grad.

* jax: ``jax.jit`` of a pure function; the model's variables are passed in as arguments and
  substituted through ``keras.StatelessScope`` (so weights are not baked in as constants); the
  whole decode loop is one ``lax.while_loop``.
* tensorflow: ``tf.function(jit_compile=True)`` (XLA) around a ``tf.while_loop``.
* torch: eager under ``torch.inference_mode`` (no autograd bookkeeping); the loop is a Python loop
  that checks its condition on the host every step.

Random numbers: jax folds the step into a key, tensorflow uses stateless ops with (seed, step),
torch draws from a ``torch.Generator`` seeded once per call. Same seed, same backend -> same tokens.
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np

BACKEND = keras.backend.backend()


def no_grad():
    if BACKEND == "torch":
        import torch

        return torch.inference_mode()
    return contextlib.nullcontext()


def compile_fn(model, fn):
    """Return ``run(*args)`` computing ``fn(*args)`` compiled for this backend.

    ``fn`` may call the model (its weights are read through the compiled function's inputs under
    jax). Compiled functions are cached by the caller; jax/tf retrace per input shape.
    """
    if BACKEND == "jax":
        import jax

        variables = list(model.variables)

        def pure(values, args):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return fn(*args)

        jitted = jax.jit(pure)
        return lambda *args: jitted([v.value for v in variables], args)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True, reduce_retracing=False)
    return fn


def while_loop(cond, body, state, max_steps):
    """Run ``state = body(state)`` while ``cond(state)``, at most ``max_steps`` times."""
    if BACKEND == "jax":
        import jax

        def c(carry):
            i, s = carry
            return (i < max_steps) & cond(s)

        def b(carry):
            i, s = carry
            return i + 1, body(s)

        return jax.lax.while_loop(c, b, (0, state))[1]
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.while_loop(lambda s: cond(s), lambda s: (body(s),), (state,),
                             maximum_iterations=max_steps)[0]
    for _ in range(max_steps):
        if not bool(cond(state)):
            break
        state = body(state)
    return state


def make_rng(seed, batch_size):
    """An rng state for ``uniform``: from ``seed`` (int) or fresh entropy when None."""
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0] & 0x7FFFFFFF)
    seed = int(seed) & 0x7FFFFFFF
    if BACKEND == "jax":
        import jax

        return jax.random.PRNGKey(seed)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.constant([seed, 0], dtype=tf.int32)
    if BACKEND == "torch":
        import torch

        from keras.src.backend.torch.core import get_device

        gen = torch.Generator(device=get_device())
        gen.manual_seed(seed)
        return _TorchRng(gen)
    raise NotImplementedError(BACKEND)


class _TorchRng:
    """Wraps a torch.Generator so it passes through our (eager) loop state untouched."""

    def __init__(self, generator):
        self.generator = generator


def uniform(rng, step, shape):
    """Uniform floats in (0, 1) of ``shape`` for decode step ``step`` (a scalar tensor)."""
    if BACKEND == "jax":
        import jax

        key = jax.random.fold_in(rng, step)
        return jax.random.uniform(key, shape, minval=np.finfo(np.float32).tiny, maxval=1.0)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        seed = tf.stack([rng[0], tf.cast(step, tf.int32)])
        return tf.random.stateless_uniform(shape, seed=seed, minval=np.finfo(np.float32).tiny, maxval=1.0)
    import torch

    from keras.src.backend.torch.core import get_device

    u = torch.rand(shape, generator=rng.generator, device=get_device())
    return u.clamp_min(np.finfo(np.float32).tiny)


def tree_map(fn, tree):
    return keras.tree.map_structure(fn, tree)
