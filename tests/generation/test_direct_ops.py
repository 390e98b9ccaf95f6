"""torch's eager decode loop with direct torch ops (``generation.backend.TORCH_DIRECT_OPS``, issue
21) gives exactly what the keras.ops path gives: the same ids for greedy, sampled and streamed
generation, and the same bits for a cached forward step."""

import keras
import numpy as np
import pytest

from tests.generation.test_generate import _ids, _load, _prompts

pytestmark = pytest.mark.skipif(keras.backend.backend() != "torch", reason="torch's eager decode loop")


@pytest.fixture
def switch():
    from keras_models.generation import backend

    saved = backend.TORCH_DIRECT_OPS

    def set_(on):
        backend.TORCH_DIRECT_OPS = on

    yield set_
    backend.TORCH_DIRECT_OPS = saved


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_direct_ops_generate_the_same_ids(family, switch):
    model, _ = _load(family)
    inputs = _ids(_prompts(6))
    runs = [dict(do_sample=False, max_new_tokens=6, eos_token_id=[3]),
            dict(do_sample=True, top_k=5, max_new_tokens=5, seed=3),
            dict(do_sample=False, max_new_tokens=4, repetition_penalty=1.3)]
    for kw in runs:
        switch(False)
        ref = model.generate(inputs, **kw)
        switch(True)
        np.testing.assert_array_equal(model.generate(inputs, **kw), ref)
    one = {k: v[:1] for k, v in inputs.items()}
    got = []
    model.generate(one, max_new_tokens=4, streamer=lambda ids: got.append(np.asarray(ids)))
    switch(False)  # the streamed new ids (prefill + a step per token) equal the keras.ops path's
    np.testing.assert_array_equal(np.concatenate([np.ravel(g) for g in got])[-4:],
                                  model.generate(one, max_new_tokens=4)[0, -4:])


def test_direct_ops_cached_step_is_bitwise_equal(switch):
    """Prefill two ragged rows, then one step, under compile_fn (the decode loop's context)."""
    import torch

    from keras_models.generation import backend

    model, _ = _load("llama")
    inputs = _ids(_prompts(7))
    ids, mask = inputs["input_ids"][:2], inputs["attention_mask"][:2]
    rows, length = ids.shape[0], ids.shape[1] + 2
    full = np.concatenate([mask, np.ones((rows, 2), "int32")], axis=1)

    def forward():
        cache = model.init_cache(rows, length)
        m = torch.as_tensor(full)
        first, cache = model.call_with_cache(torch.as_tensor(ids), cache, 0, m)
        nxt = first[:, -1:, :].argmax(-1).int()
        second, _ = model.call_with_cache(nxt, cache, ids.shape[1], m)
        return first.numpy(), second.numpy()

    outs = []
    for on in (False, True):
        switch(on)
        with torch.inference_mode():
            outs.append(backend.compile_fn(model, forward)())
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)
