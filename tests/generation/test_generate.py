"""generate() on tiny random checkpoints against Transformers' generate (exact token equality)."""

import keras
import numpy as np
import pytest

import keras_models as km
from keras_models.generation import GenerationError, TextIteratorStreamer, TokenCallbackStreamer
from tests.generation.helpers import left_padded, reference, vocab_size
from tests.parity import _key, cached_folder

SCALE = 12.0  # weight noise 0.24: decisive logits, so greedy ties cannot hide a bug


def _prompts(seed=0):
    return left_padded(3, [7, 4, 1], vocab_size(), seed=seed)


CASES = [
    # greedy, batched left-padded prompts of 7/4/1 tokens, two eos ids that the output contains
    (_prompts(0), dict(do_sample=False, max_new_tokens=9, eos_token_id="auto")),
    # beam search
    (_prompts(1), dict(do_sample=False, num_beams=3, max_new_tokens=7, eos_token_id="auto")),
    # beam search, length penalty, early stopping "never", two returned sequences
    (_prompts(2), dict(do_sample=False, num_beams=3, max_new_tokens=6, length_penalty=-0.7,
                       early_stopping="never", num_return_sequences=2)),
]
# repetition penalty + no-repeat n-grams + min_new_tokens come from the checkpoint's generation_config.json
FILE_CONFIG = dict(repetition_penalty=1.6, no_repeat_ngram_size=2, min_new_tokens=3, max_new_tokens=8,
                   eos_token_id=[5, 9])
FILE_CASE = (_prompts(3), dict(do_sample=False))
TEXT_CASE = ({"text": "the quick brown fox"}, dict(do_sample=False, max_new_tokens=12, stop_strings="auto"))


_LOADED = {}


def _load_folder(family):
    return reference(family, CASES, scale=SCALE)[0]


def _load(family):
    if family not in _LOADED:
        folder, expected = reference(family, CASES, scale=SCALE)
        _LOADED[family] = (km.CausalLM.from_preset(folder), expected)
    return _LOADED[family]


@pytest.fixture(scope="module")
def llama():
    return _load("llama")


def _ids(inputs):
    return {k: v.astype("int32") for k, v in inputs.items()}


@pytest.mark.parametrize("family,case", [("llama", 0), ("llama", 1), ("llama", 2), ("gpt2", 0), ("gpt2", 1)])
def test_matches_transformers(family, case):
    model, expected = _load(family)
    inputs, kw = CASES[case]
    kw = dict(kw)
    if kw.get("eos_token_id") == "auto":
        kw["eos_token_id"] = expected[f"case{case}_eos"].tolist()
    out = model.generate(_ids(inputs), **kw)
    ref = expected[f"case{case}"]
    assert out.shape == ref.shape, (out, ref)
    np.testing.assert_array_equal(out, ref)
    if "eos_token_id" in kw and "num_beams" not in kw:  # the eos ids occur: stopping was exercised
        assert np.isin(out[:, inputs["input_ids"].shape[1]:], kw["eos_token_id"]).any()


def test_generation_config_file_defaults():
    folder, expected = reference("llama", [FILE_CASE], scale=SCALE, generation_config=FILE_CONFIG)
    model = km.CausalLM.from_preset(folder)
    assert model.generation_config.repetition_penalty == 1.6
    out = model.generate(_ids(FILE_CASE[0]), **FILE_CASE[1])
    np.testing.assert_array_equal(out, expected["case0"])


def test_strings_stop_strings_and_streamers():
    folder, expected = reference("llama", [TEXT_CASE], scale=SCALE)
    model = km.CausalLM.from_preset(folder)
    tok = model.preprocessor.tokenizer
    stop = str(expected["case0_stop"])
    ref_ids = expected["case0"][0]
    prompt_len = len(tok(TEXT_CASE[0]["text"], return_tensors=None)["input_ids"])
    ref_new = tok.decode(ref_ids[prompt_len:], skip_special_tokens=True)
    assert stop in ref_new
    tokens, texts = [], TextIteratorStreamer(tok, skip_prompt=True)

    class Both:
        def put(self, v):
            texts.put(v)
            cb.put(v)

        def end(self):
            texts.end()
            cb.end()

    cb = TokenCallbackStreamer(tokens.extend)
    out = model.generate(TEXT_CASE[0]["text"], max_new_tokens=12, stop_strings=stop, streamer=Both(),
                         return_full_text=False)
    assert out == ref_new
    assert tokens == ref_ids[prompt_len:].tolist()
    assert "".join(texts) == ref_new
    full = model.generate([TEXT_CASE[0]["text"]], max_new_tokens=12, stop_strings=[stop])
    assert full == [TEXT_CASE[0]["text"] + ref_new]


def test_sampling_is_reproducible_with_a_seed(llama):
    model, _ = llama
    inputs = _ids(_prompts(4))
    kw = dict(do_sample=True, max_new_tokens=8, top_k=20, top_p=0.95, temperature=1.5, min_p=0.01)
    a = model.generate(inputs, seed=7, **kw)
    b = model.generate(inputs, seed=7, **kw)
    c = model.generate(inputs, seed=8, **kw)
    np.testing.assert_array_equal(a, b)
    assert a.shape[1] == inputs["input_ids"].shape[1] + 8
    assert (a != c).any()
    np.testing.assert_array_equal(a[:, :7], inputs["input_ids"])


def _hash_uniform(seed, step, rows, cols):
    """The documented sampler's uniforms, in numpy uint32 arithmetic (keras_models.generation.backend
    writes the same hash in int32 keras.ops): top 24 bits of
    lowbias32(column + row * cols + lowbias32(step + lowbias32(seed))), plus 1/2, over 2**24."""
    def mix(x):
        x = np.asarray(x, np.uint32)
        x = x ^ (x >> np.uint32(16))
        x = x * np.uint32(0x7FEB352D)
        x = x ^ (x >> np.uint32(15))
        x = x * np.uint32(0x846CA68B)
        return x ^ (x >> np.uint32(16))

    with np.errstate(over="ignore"):
        key = mix(np.uint32(step) + mix(np.uint32(seed)))
        counter = np.arange(cols, dtype=np.uint32)[None, :] + np.arange(rows, dtype=np.uint32)[:, None] * np.uint32(cols)
        bits = mix(counter + key) >> np.uint32(8)
    return ((bits.astype(np.float32) + np.float32(0.5)) * np.float32(2.0 ** -24)).astype(np.float32)


def _sampled_reference(folder, inputs, seed, max_new_tokens):
    """Transformers' generate with Gumbel noise from ``_hash_uniform`` added to its scores and
    greedy selection: Gumbel-max sampling with the documented uniforms (and Transformers' own eos
    and padding handling). Also the smallest top-2 gap of the noisy scores (decisiveness)."""
    def build(tmp):
        import torch
        import transformers

        model = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
        prompt_len = inputs["input_ids"].shape[1]
        gaps = []

        class Gumbel(transformers.LogitsProcessor):
            def __call__(self, input_ids, scores):
                u = _hash_uniform(seed, input_ids.shape[1] - prompt_len, *scores.shape)  # t-th new token
                noisy = scores + torch.from_numpy(-np.log(-np.log(u)))
                top2 = torch.topk(noisy, 2, dim=-1).values
                gaps.append(float((top2[:, 0] - top2[:, 1]).min()))
                return noisy

        with torch.no_grad():
            out = model.generate(**{k: torch.tensor(v) for k, v in inputs.items()}, do_sample=False,
                                 max_new_tokens=max_new_tokens, logits_processor=[Gumbel()])
        np.save(tmp / "ids.npy", out.numpy())
        np.save(tmp / "gap.npy", np.array(min(gaps)))

    import inspect

    code = inspect.getsource(_hash_uniform) + inspect.getsource(_sampled_reference)
    ref = cached_folder(_key("gen-sampled", str(folder), code,
                             {k: v.tolist() for k, v in inputs.items()}, seed, max_new_tokens), build)
    return np.load(ref / "ids.npy"), float(np.load(ref / "gap.npy"))


def test_seeded_sampling_gives_the_same_tokens_on_every_backend(llama):
    """generate(do_sample=True, seed=s) draws its uniforms from an integer hash computed with
    keras.ops, bit-identical on jax, torch and tensorflow: the sampled tokens equal Gumbel-max
    sampling over Transformers' logits with those uniforms, whichever the backend."""
    from keras_models.generation import backend

    model, _ = llama
    u = keras.ops.convert_to_numpy(backend.uniform(backend.make_rng(7, 3), keras.ops.convert_to_tensor(np.int32(9)),
                                                   (3, 11)))
    np.testing.assert_array_equal(u, _hash_uniform(7, 9, 3, 11))
    inputs = _ids(_prompts(5))
    expected, gap = _sampled_reference(_load_folder("llama"), inputs, seed=7, max_new_tokens=8)
    assert gap > 1e-3, f"reference not decisive (gap {gap})"
    out = model.generate(inputs, do_sample=True, seed=7, max_new_tokens=8, top_k=0)
    np.testing.assert_array_equal(out, expected)


def test_sampling_arguments_without_do_sample_warn():
    """As in Transformers: temperature / top_p ... set for a greedy or beam search are named in a
    warning (they change nothing); neutral values, sampling, and the config's own values do not warn."""
    import warnings

    from keras_models.generation import GenerationConfig

    with pytest.warns(UserWarning, match=r"temperature=0\.7, top_p=0\.9 only applies when sampling"):
        assert GenerationConfig().update(temperature=0.7, top_p=0.9).warn_unused_sampling(
            {"temperature": 0.7, "top_p": 0.9})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert GenerationConfig(do_sample=True).update(temperature=0.7).warn_unused_sampling({"temperature": 0.7}) == []
        assert GenerationConfig().warn_unused_sampling({"temperature": 1.0, "max_new_tokens": 3}) == []
        assert GenerationConfig(temperature=0.6).warn_unused_sampling({}) == []


def test_bad_arguments_raise(llama):
    model, _ = llama
    inputs = _ids(_prompts(0))
    for kw, name in [(dict(top_p=0.0), "top_p"), (dict(top_p=1.2), "top_p"), (dict(max_new_tokens=-1), "max_new_tokens"),
                     (dict(temperature=-1.0, do_sample=True), "temperature"), (dict(num_beams=0), "num_beams")]:
        with pytest.raises(GenerationError, match=name):
            model.generate(inputs, **kw)
    with pytest.raises(TypeError, match="max_new_tokenz"):
        model.generate(inputs, max_new_tokenz=3)
    with pytest.raises(GenerationError, match="context"):
        model.generate({"input_ids": np.ones((1, 70), "int32")}, max_new_tokens=2)
    with pytest.raises(GenerationError, match="context"):
        model.generate(inputs, max_new_tokens=60)
    with pytest.raises(GenerationError, match="streamer"):
        model.generate(inputs, max_new_tokens=2, streamer=lambda ids: None)
    with pytest.raises(GenerationError, match="attention_mask"):
        model.generate({"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"][:, :2]})


def test_direct_layer_calls_give_keras_results(llama):
    """torch's decode path calls built layers' call() (Dense / LayerNorm as single torch kernels)
    instead of Keras' __call__; results must not change, and Keras' path must come back after."""
    import keras

    from keras_models import compat
    from keras_models.generation import backend

    model, _ = llama
    inputs = _ids(_prompts(5))
    keras_call = keras.layers.Layer.__call__
    ref = keras.ops.convert_to_numpy(model(inputs))
    with backend.direct_layer_calls(model):
        got = keras.ops.convert_to_numpy(model(inputs))
        redirected = any(type(layer) is not compat.keras_class(layer) for layer in compat.sublayers(model))
        assert keras.layers.Layer.__call__ is keras_call  # never patched for the whole process
    assert redirected == (keras.backend.backend() == "torch")
    assert all(type(layer) is compat.keras_class(layer) for layer in compat.sublayers(model))
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
    mixed = keras.layers.Dense(3, dtype="mixed_bfloat16")
    mixed.build((2, 4))
    assert not backend._can_call_directly(mixed)  # autocast scopes need Keras' __call__


def test_predict_runs_dense_through_onednn_and_gives_keras_results(llama):
    """``predict`` (Task and Backbone) runs under ``backend.fast_inference``: torch's Dense layers
    multiply through oneDNN; results equal Keras' own call and Keras' path comes back after. A
    Dense fed another dtype falls back to Keras' call (which casts its input)."""
    import keras

    from keras_models import compat
    from keras_models.generation import backend

    model, _ = llama
    inputs = _ids(_prompts(6))
    keras_call = keras.layers.Layer.__call__
    ref = keras.ops.convert_to_numpy(model(inputs))
    ref_hidden = keras.ops.convert_to_numpy(model.backbone(inputs))
    if keras.backend.backend() == "torch":
        import torch
        from torch.profiler import profile

        with profile() as prof:
            got = model.predict_on_batch(inputs)
        used = any("_linear_pointwise" in e.name for e in prof.events())
        assert used == torch.backends.mkldnn.is_available()
    else:
        got = model.predict_on_batch(inputs)
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
    np.testing.assert_allclose(model.backbone.predict(inputs, verbose=0), ref_hidden, atol=1e-4, rtol=0)
    assert keras.layers.Layer.__call__ is keras_call
    assert all(type(layer) is compat.keras_class(layer) for layer in compat.sublayers(model))
    dense = keras.layers.Dense(3)
    dense.build((2, 4))
    x = np.random.default_rng(0).normal(size=(2, 4))  # float64
    with backend.fast_inference(dense):
        out = keras.ops.convert_to_numpy(dense(x))
    np.testing.assert_allclose(out, keras.ops.convert_to_numpy(dense(x)), atol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_fast_inference_layer_norm_equals_keras_call(dtype):
    """Under ``fast_inference`` a LayerNormalization (last axis) is one torch kernel in the input's
    dtype: the same values as Keras' call, which computes bf16 in float32 and rounds once; a
    LayerNormalization fed another dtype takes Keras' call."""
    import keras

    from keras_models.generation import backend

    rng = np.random.default_rng(5)
    norm = keras.layers.LayerNormalization(epsilon=1e-5, dtype=dtype)
    norm.build((None, 3, 24))
    norm.gamma.assign(rng.normal(size=24))
    norm.beta.assign(rng.normal(size=24))
    x = keras.ops.cast(rng.normal(size=(2, 3, 24)) * 3.0 + 1.0, dtype)
    wide = keras.ops.cast(x, "float32")  # not the layer's dtype: Keras' call casts it
    ref, ref_wide = (keras.ops.convert_to_numpy(keras.ops.cast(norm(v), "float32")) for v in (x, wide))
    with backend.fast_inference(norm):
        got = keras.ops.convert_to_numpy(keras.ops.cast(norm(x), "float32"))
        got_wide = keras.ops.convert_to_numpy(keras.ops.cast(norm(wide), "float32"))
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(got_wide, ref_wide)
    if keras.backend.backend() == "torch" and dtype == "bfloat16":  # the one-kernel route is taken
        from torch.profiler import profile

        with backend.fast_inference(norm), profile() as prof:
            norm(x)
        names = [e.name for e in prof.events()]
        assert "aten::layer_norm" in names and "aten::_to_copy" not in names  # no casts to float32
        with profile() as prof:
            norm(x)
        assert "aten::_to_copy" in [e.name for e in prof.events()]  # Keras' call casts


def test_cache_writes_keep_autograd_history():
    """KV writes are in place only where no gradient is recorded (torch); elsewhere functional."""
    import keras
    from keras import ops

    from keras_models.generation.backend import write_time_slice

    buf = ops.zeros((2, 5, 3))
    new = ops.ones((2, 2, 3))
    out = keras.ops.convert_to_numpy(write_time_slice(buf, new, 1))
    expected = np.zeros((2, 5, 3), "float32")
    expected[:, 1:3] = 1.0
    np.testing.assert_array_equal(out, expected)
    if keras.backend.backend() == "torch":
        import torch

        buf = torch.zeros(2, 5, 3)
        new = torch.ones(2, 1, 3, requires_grad=True)
        out = write_time_slice(buf, new * 2.0, torch.tensor(4))
        assert out.grad_fn is not None and float(buf.abs().sum()) == 0.0  # buffer untouched
        out.sum().backward()
        np.testing.assert_array_equal(new.grad.numpy(), np.full((2, 1, 3), 2.0, "float32"))
        with torch.inference_mode():
            buf2 = torch.zeros(2, 5, 3)
            assert write_time_slice(buf2, torch.ones(2, 1, 3), 0) is buf2  # written in place


def test_tied_head_after_generate_still_trains_and_predicts_the_same(tmp_path):
    """generate may re-lay out the tied embedding (torch: column-major storage, see
    ``backend.project_onto_table``); values, predictions, saving and training must not notice."""
    import keras

    folder, _ = reference("gpt2", CASES, scale=SCALE)
    model = km.CausalLM.from_preset(folder)
    model.preprocessor = None
    inputs = _ids(_prompts(0))
    table = model.backbone.token_embedding.embeddings
    before_table = keras.ops.convert_to_numpy(table).copy()
    before = model.predict_on_batch(inputs)
    model.generate(inputs, do_sample=False, max_new_tokens=3)
    if keras.backend.backend() == "torch":
        assert table.value.stride(0) == 1  # column-major now
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(table), before_table)
    np.testing.assert_allclose(model.predict_on_batch(inputs), before, atol=1e-5)
    model.save_to_preset(tmp_path / "saved")  # the re-laid-out table is written in its logical order
    np.testing.assert_allclose(km.CausalLM.from_preset(tmp_path / "saved").predict_on_batch(inputs), before,
                               atol=1e-5)
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = {"input_ids": inputs["input_ids"][:, :-1], "attention_mask": inputs["attention_mask"][:, :-1]}
    model.fit(x, inputs["input_ids"][:, 1:], epochs=1, batch_size=3, verbose=0)
    assert not np.allclose(keras.ops.convert_to_numpy(table), before_table)  # the tied table trained
    model.generate(inputs, do_sample=False, max_new_tokens=3)


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="jax_kernels.few_row_dots is a jax CPU path")
@pytest.mark.parametrize("case", [0, 1])
def test_few_row_dots_keep_transformers_tokens(case, monkeypatch):
    """Greedy and beam decodes (3 and 9 rows a step) with every float32 few-row product re-issued
    through ``jax_kernels.few_row_dots`` (the weight threshold lowered so that the tiny weights
    qualify) still give Transformers' tokens, and the rewrite really ran."""
    from keras_models import jax_kernels

    if __import__("jax").default_backend() != "cpu":
        pytest.skip("a CPU-platform rewrite")
    monkeypatch.setattr(jax_kernels, "FEW_ROW_DOTS", True)  # whatever KM_JAX_FEW_ROW_DOTS says
    monkeypatch.setattr(jax_kernels, "FEW_ROW_MIN_WEIGHT", 0)
    rewrites = []
    match, rewrite = jax_kernels._FEW_ROW_RULE
    monkeypatch.setattr(jax_kernels, "_FEW_ROW_RULE", (match, lambda *a: (rewrites.append(1), rewrite(*a))[1]))
    folder, expected = reference("llama", CASES, scale=SCALE)
    model = km.CausalLM.from_preset(folder)  # fresh: no compiled decode functions yet
    inputs, kw = CASES[case]
    kw = dict(kw, eos_token_id=expected[f"case{case}_eos"].tolist()) if "eos_token_id" in kw else dict(kw)
    np.testing.assert_array_equal(model.generate(_ids(inputs), **kw), expected[f"case{case}"])
    assert rewrites
