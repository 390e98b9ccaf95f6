"""Decoder-only families: CausalLM logits parity with tiny random Transformers models (right and
left padding), KV-cache decoding equal to the full forward pass (compiled under JAX), and export
back to a folder that Transformers reloads with the same logits."""

from pathlib import Path

import numpy as np
import pytest

import keras_models as km
from tests.models.decoder_cases import CASES, SEQ, VOCAB
from tests.parity import assert_backbone_close, assert_close, hf_reference, jit_under_jax, to_numpy

PAD = 3  # the second row is right-padded by PAD tokens
N = SEQ - PAD


def _inputs():
    rng = np.random.RandomState(1)
    ids = rng.randint(3, VOCAB, size=(2, SEQ)).astype("int64")
    mask = np.ones_like(ids)
    ids[1, N:] = 0
    mask[1, N:] = 0
    return {"input_ids": ids, "attention_mask": mask}


_MODELS = {}


def _load(case):
    if case not in _MODELS:
        inputs = _inputs()
        folder, expected = hf_reference(f"dec-{case}", CASES[case], inputs)
        _MODELS[case] = (km.CausalLM.from_preset(folder), inputs, expected["logits"])
        _FOLDERS[case] = folder
        _HIDDEN[case] = expected
    return _MODELS[case]


_FOLDERS = {}
_HIDDEN = {}  # case -> the reference outputs (logits and the base model's last hidden state)


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_right_and_left_padding(case):
    model, inputs, expected = _load(case)
    assert model.head_from_checkpoint
    # rows: full, right-padded, and the right-padded row moved to the end (left padding)
    ids = np.concatenate([inputs["input_ids"], np.zeros((1, SEQ), "int64")])
    mask = np.concatenate([inputs["attention_mask"], np.zeros((1, SEQ), "int64")])
    ids[2, PAD:], mask[2, PAD:] = inputs["input_ids"][1, :N], 1
    out = to_numpy(jit_under_jax(lambda x: model(x))({"input_ids": ids, "attention_mask": mask}))
    assert_close(out[:2], expected, mask=inputs["attention_mask"], what=f"{case} right-padded")
    assert_close(out[2, PAD:], expected[1, :N], what=f"{case} left-padded")
    assert_backbone_close(model, inputs, _HIDDEN[case], mask=inputs["attention_mask"], what=case)


# longrope switches factors on the longest position of each call (as Transformers does), so a
# prefill shorter than original_max_position_embeddings legitimately differs from one full pass.
# longrope and dynamic NTK choose their frequencies from the length of the current forward pass, so a
# chunked (cached) prefill legitimately differs from one full pass, as it does in Transformers
CACHE_CASES = sorted(c for c in CASES if "longrope" not in c and "dynamic" not in c)


def _cache_rows(inputs, max_len):
    """Row 0 as is, row 1 left-padded, in a (2, max_len) buffer."""
    ids = np.zeros((2, max_len), "int32")
    mask = np.zeros((2, max_len), "int32")
    ids[0, :SEQ], mask[0, :SEQ] = inputs["input_ids"][0], 1
    ids[1, PAD:SEQ], mask[1, PAD:SEQ] = inputs["input_ids"][1, :N], 1
    return ids, mask


def _decode(step, model, ids, mask, chunks):
    """Feed ``chunks`` [(start, stop)] through the cache; the mask grows with what is written."""
    cache = model.init_cache(*ids.shape)
    seen = np.zeros_like(mask)
    out = []
    for start, stop in chunks:
        seen[:, start:stop] = mask[:, start:stop]
        logits, cache = step(ids[:, start:stop], cache, np.int32(start), seen)
        out.append(to_numpy(logits))
    return np.concatenate(out, axis=1)


def _check_cached(case, got, expected):
    assert_close(got[0], expected[0], what=f"{case} cached row 0")
    assert_close(got[1, PAD:SEQ], expected[1, :N], what=f"{case} cached left-padded row")


@pytest.mark.parametrize("case", CACHE_CASES)
def test_kv_cache_matches_full_forward(case):
    """A left-padded batch fed through the fixed-size cache in two chunks (prefill + continuation,
    one compiled shape) equals the full forward pass."""
    model, inputs, expected = _load(case)
    ids, mask = _cache_rows(inputs, SEQ + 2)
    half = SEQ // 2
    got = _decode(jit_under_jax(model.call_with_cache), model, ids, mask, [(0, half), (half, SEQ)])
    _check_cached(case, got, expected)


@pytest.mark.one_case_per_pass("case")  # the eager loop is torch's decode path; jax and tensorflow compile it
@pytest.mark.parametrize("case", ["llama_gqa", "gemma2_softcap_window", "bloom_alibi", "gpt_oss_sinks_window",
                                  "deepseek_v3_mla_sigmoid"])
def test_eager_python_int_positions_read_only_the_filled_buffer(case):
    """With Python-int cache positions (the eager decode loop) attention reads only the filled
    part of a long buffer (backend.visible_length); the logits must not change: prefill, then one
    token at a time, in a buffer 3x longer than needed."""
    from keras_models.generation.backend import visible_length

    model, inputs, expected = _load(case)
    assert visible_length(4, 1) == 5 and visible_length(np.int32(4), 1) is None
    ids, mask = _cache_rows(inputs, 3 * SEQ)
    cache = model.init_cache(*ids.shape)
    seen = np.zeros_like(mask)
    out = []
    for start, stop in [(0, SEQ // 2)] + [(i, i + 1) for i in range(SEQ // 2, SEQ)]:
        seen[:, start:stop] = mask[:, start:stop]
        logits, cache = model.call_with_cache(ids[:, start:stop], cache, int(start), seen)
        out.append(to_numpy(logits))
    _check_cached(case, np.concatenate(out, axis=1), expected)


def test_longrope_cached_decoding_matches_transformers_incremental():
    """longrope picks short/long factors per call; our cached decoding must equal Transformers'
    own incremental decoding (prompt within original_max_position_embeddings, then steps past it)."""
    from tests.parity import cached_folder

    model, inputs, _ = _load("llama_longrope")
    folder, prompt = _FOLDERS["llama_longrope"], 4

    def build(tmp):
        import torch
        import transformers

        hf = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
        ids = torch.tensor(inputs["input_ids"][:1])
        with torch.no_grad():
            out = hf(input_ids=ids[:, :prompt], use_cache=True)
            steps = [out.logits]
            for i in range(prompt, SEQ):
                out = hf(input_ids=ids[:, i : i + 1], past_key_values=out.past_key_values, use_cache=True)
                steps.append(out.logits)
        np.save(tmp / "steps.npy", torch.cat(steps, dim=1).numpy())

    expected = np.load(cached_folder(f"dec-longrope-steps-{folder.parent.name}", build) / "steps.npy")
    ids, mask = _cache_rows(inputs, SEQ)
    chunks = [(0, prompt)] + [(i, i + 1) for i in range(prompt, SEQ)]
    got = _decode(jit_under_jax(model.call_with_cache), model, ids[:1], mask[:1], chunks)
    assert_close(got[0], expected[0], what="longrope incremental decoding")


@pytest.mark.parametrize("case", ["llama_gqa", "gpt2", "gemma2_softcap_window"])
def test_decode_step_compiles(case):
    """Prefill then one token at a time, compiled: tf.function(jit_compile=True) / jax.jit
    (eager on torch)."""
    import keras

    model, inputs, expected = _load(case)
    step = model.call_with_cache
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        step = tf.function(step, jit_compile=True, autograph=False)
    elif keras.backend.backend() == "jax":
        import jax

        step = jax.jit(step)
    ids, mask = _cache_rows(inputs, SEQ + 2)
    chunks = [(0, SEQ - 3)] + [(i, i + 1) for i in range(SEQ - 3, SEQ)]
    _check_cached(case, _decode(step, model, ids, mask, chunks), expected)


@pytest.mark.parametrize("case", sorted(CASES))
def test_export_reloads_in_transformers(case, tmp_path):
    import torch
    import transformers

    model, inputs, expected = _load(case)
    model.save_to_preset(tmp_path / "p")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "p").eval()
    with torch.no_grad():
        out = hf(**{k: torch.tensor(v) for k, v in inputs.items()}).logits.numpy()
    assert_close(out, expected, mask=inputs["attention_mask"], what=f"{case} re-exported")


def test_keras_save_and_load(tmp_path):
    """A loaded CausalLM (dynamically defined family class) round-trips through .keras."""
    import keras

    model, inputs, expected = _load("qwen2_window")
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    assert type(again).__name__ == "Qwen2CausalLM"
    assert_close(to_numpy(again(inputs)), expected, mask=inputs["attention_mask"], what=".keras reload")


def test_backbone_from_preset_is_the_causal_lm_backbone():
    model, inputs, _ = _load("gpt_neox_parallel")
    backbone = km.Backbone.from_preset(_FOLDERS["gpt_neox_parallel"])
    assert type(backbone).__name__ == "GPTNeoXBackbone"
    hidden = to_numpy(backbone(inputs))
    assert hidden.shape == (2, SEQ, backbone.hidden_size)
    assert_close(hidden, to_numpy(model.backbone(inputs)), atol=1e-6, what="Backbone.from_preset")


def test_every_registered_decoder_family_has_a_parity_case():
    """verified_backends is declared for all decoder families: each must have a case here."""
    import json

    from keras_models.models.decoder.backbone import DecoderBackbone
    from keras_models.models.registry import registered_model_types

    registered = {t for t, cls in registered_model_types().items() if issubclass(cls, DecoderBackbone)}
    tested = set()
    for case, build in CASES.items():
        folder, _ = hf_reference(f"dec-{case}", build, _inputs())
        tested.add(json.loads((folder / "config.json").read_text())["model_type"])
    # families removed from Transformers 5: recorded references, checked in test_removed_text.py
    for config in (Path(__file__).parent / "removed_golden").glob("*/*/config.json"):
        tested.add(json.loads(config.read_text())["model_type"])
    # families on the decoder whose parity lives with their modality (no AutoModelForCausalLM)
    tested |= {"imagegpt"}  # tests/vision/test_vision_extra_g.py
    tested |= {"semantic", "coarse_acoustics"}  # Bark's sub-models: tests/audio/test_bark.py
    assert registered <= tested, f"no parity case for {sorted(registered - tested)}"


# One case per family whose attention, cache layout or routing is its own: greedy generate must
# equal Transformers' (left-padded batch, decoding past the prompt through the KV cache).
# noise: extra weight noise (std) for decisive logits; small where logits are soft-capped at 0.3.
GREEDY_CASES = {"gemma3_local_rope": 0.05, "gpt_oss_sinks_window": 0.24, "deepseek_v2_mla_groups": 0.24,
                "deepseek_v3_mla_sigmoid": 0.24}


@pytest.mark.parametrize("case", sorted(GREEDY_CASES))
def test_greedy_generate_matches_transformers(case):
    from tests.parity import cached_folder

    _, inputs, _ = _load(case)
    source = _FOLDERS[case]
    ids = np.zeros((2, 6), "int64")
    mask = np.zeros((2, 6), "int64")
    ids[0], mask[0] = inputs["input_ids"][0, :6], 1
    ids[1, 2:], mask[1, 2:] = inputs["input_ids"][1, :4], 1
    kw = dict(do_sample=False, max_new_tokens=8, pad_token_id=0)

    def build(tmp):
        import torch
        import transformers

        torch.manual_seed(0)
        hf = transformers.AutoModelForCausalLM.from_pretrained(source).eval()
        with torch.no_grad():
            for p in hf.parameters():
                p.add_(torch.randn_like(p) * GREEDY_CASES[case])
            if getattr(hf.config, "final_logit_softcapping", None):
                # Unit-variance weights put every top logit at the cap (tanh saturates: exact
                # ties, and greedy picks by tie-breaking); a smaller final norm scale (Gemma's
                # RMSNorm multiplies by 1 + weight) keeps the logits in the cap's linear range.
                w = hf.model.norm.weight
                w.copy_((1 + w) * 0.01 - 1)
        hf.save_pretrained(tmp / "model")
        hf = transformers.AutoModelForCausalLM.from_pretrained(tmp / "model").eval()
        with torch.no_grad():
            out = hf.generate(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), output_logits=True,
                              return_dict_in_generate=True, **kw)
        np.save(tmp / "greedy.npy", out.sequences.numpy())
        # each step's top-2 logit margin, on the rows still generating (before their end token)
        eos = hf.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, list) else [eos])
        seq, margins = out.sequences.numpy(), []
        for t, logits in enumerate(out.logits):
            top = np.sort(logits.float().numpy(), axis=1)[:, ::-1]
            live = [r for r in range(len(seq)) if not eos & set(seq[r, ids.shape[1]:ids.shape[1] + t].tolist())]
            margins += [float(top[r, 0] - top[r, 1]) for r in live]
        np.save(tmp / "margins.npy", np.asarray(margins))

    folder = cached_folder(f"dec-greedy2-{case}-{GREEDY_CASES[case]}-{source.parent.name}", build)
    expected = np.load(folder / "greedy.npy")
    model = km.CausalLM.from_preset(folder / "model")
    got = np.asarray(model.generate({"input_ids": ids.astype("int32"), "attention_mask": mask.astype("int32")},
                                    **kw))
    assert got.shape == expected.shape, (got, expected)
    np.testing.assert_array_equal(got, expected)
    assert len(set(expected[:, 6:].ravel().tolist())) > 1  # not one repeated token
    # every greedy choice of the reference was decisive (no near-tie that another backend's
    # round-off could break differently)
    assert np.load(folder / "margins.npy").min() > 1e-4
