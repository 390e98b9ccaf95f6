"""ProphetNet: Seq2SeqLM logits (Transformers' ``logits`` = predict stream 0), backbone states
(main stream, every predict stream, encoder) with padded inputs, greedy / beam generate, export."""

import hashlib
import inspect

import numpy as np
import pytest

import keras_models as km
from tests.models.test_seq2seq_generate import SETTINGS
from tests.models.test_seq2seq_parity import seq2seq_inputs
from tests.parity import assert_backbone_close, assert_close, cached_folder, hf_reference, jit_under_jax

VOCAB = 99


def _prophetnet(cls="ProphetNetForConditionalGeneration", **kw):
    import transformers

    base = dict(vocab_size=VOCAB, hidden_size=32, num_encoder_layers=2, num_decoder_layers=2,
                num_encoder_attention_heads=4, num_decoder_attention_heads=2, encoder_ffn_dim=37,
                decoder_ffn_dim=41, max_position_embeddings=40, ngram=3, num_buckets=8,
                relative_max_distance=12, activation_function="relu", init_std=0.1,
                pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=0)
    base.update(kw)
    return getattr(transformers, cls)(transformers.ProphetNetConfig(**base))


def _save_ngram_states(folder, model):
    """Transformers' predict-stream states (not among hf_reference's recorded outputs)."""
    import torch

    inputs = seq2seq_inputs(0, 0)
    with torch.no_grad():
        out = model(**{k: torch.tensor(v) for k, v in inputs.items()})
    np.save(folder.parent / "ngram.npy", out.last_hidden_state_ngram.numpy())


def test_seq2seq_lm_logits():
    inputs = seq2seq_inputs(0, 0)
    folder, expected = hf_reference("s2s-prophetnet", _prophetnet, inputs)
    model = km.Seq2SeqLM.from_preset(folder)
    assert type(model).__name__ == "ProphetNetSeq2SeqLM" and model.head_from_checkpoint
    assert_close(model(inputs), expected["logits"], mask=inputs["decoder_attention_mask"],
                 what="prophetnet logits")
    assert_close(model.encode(inputs), expected["encoder_last_hidden_state"],
                 mask=inputs["attention_mask"], what="prophetnet encoder states")
    assert_backbone_close(model, inputs, expected, mask=inputs["decoder_attention_mask"], what="prophetnet")


def test_backbone_streams():
    inputs = seq2seq_inputs(0, 0)
    folder, expected = hf_reference(
        "s2s-ProphetNetModel", lambda: _prophetnet("ProphetNetModel", ngram=2, activation_function="gelu"),
        inputs, extra_save=_save_ngram_states)
    out = km.Backbone.from_preset(folder)(inputs)
    dmask = inputs["decoder_attention_mask"]
    assert_close(out["last_hidden_state"], expected["last_hidden_state"], mask=dmask,
                 what="prophetnet main stream")
    ngram = np.load(folder.parent / "ngram.npy")
    assert_close(out["last_hidden_state_ngram"], ngram, mask=np.tile(dmask, (1, 2)),
                 what="prophetnet predict streams")
    assert_close(out["encoder_last_hidden_state"], expected["encoder_last_hidden_state"],
                 mask=inputs["attention_mask"], what="prophetnet encoder")


def _generate_reference(setting):
    enc = {k: v for k, v in seq2seq_inputs(0, 0).items() if k in ("input_ids", "attention_mask")}
    src = inspect.getsource(inspect.getmodule(_generate_reference))
    key = f"s2sgen-prophetnet-{setting}-" + hashlib.sha1(src.encode()).hexdigest()[:10]

    def build(tmp):
        import torch

        torch.manual_seed(0)
        model = _prophetnet(num_encoder_layers=1, num_decoder_layers=1).eval()
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.02)
        model.save_pretrained(tmp / "model")
        with torch.no_grad():
            out = model.generate(**{k: torch.tensor(v) for k, v in enc.items()}, do_sample=False,
                                 **SETTINGS[setting])
        np.save(tmp / "expected.npy", out.numpy())
        # Transformers' teacher-forced logits and its cached one-token steps on DEC
        src_ids = {k: torch.tensor(v) for k, v in enc.items()}
        dec = torch.tensor(DEC, dtype=torch.long)
        with torch.no_grad():
            full = model(**src_ids, decoder_input_ids=dec, use_cache=False).logits
            steps, cache = [], None
            for i in range(DEC.shape[1]):
                step = model(**src_ids, decoder_input_ids=dec[:, i:i + 1], cache=cache, use_cache=True)
                steps.append(step.logits)
                cache = step.cache
        np.save(tmp / "full.npy", full.numpy())
        np.save(tmp / "steps.npy", torch.cat(steps, 1).numpy())

    folder = cached_folder(key, build)
    return folder / "model", enc, np.load(folder / "expected.npy")


DEC = np.array([[0, 5, 9, 4], [0, 7, 2, 11]], "int64")


@pytest.mark.parametrize("setting", ["greedy", "beam4"])
def test_generate_matches_transformers(setting):
    folder, enc, expected = _generate_reference(setting)
    model = km.Seq2SeqLM.from_preset(folder)
    out = np.asarray(model.generate(enc, do_sample=False, **SETTINGS[setting]))
    assert out.shape == expected.shape, (out, expected)
    np.testing.assert_array_equal(out, expected)


def test_cached_decoding_matches_transformers():
    """One-token cached steps equal Transformers' cached steps, and a whole-prompt prefill equals
    the teacher-forced pass. (In Transformers the two differ for ProphetNet: with t > 1 predict
    stream 0 reads other streams' relative-bias rows.)"""
    import keras

    folder, enc, _ = _generate_reference("greedy")
    model = km.Seq2SeqLM.from_preset(folder)
    states = jit_under_jax(model.encode)(enc)
    t = DEC.shape[1]
    mask = np.zeros((2, t + 1), "int32")
    cache = model.init_cache(2, t + 1, states)
    steps = []
    step = jit_under_jax(model.call_decoder_with_cache)
    for i in range(t):
        mask[:, i] = 1
        logits, cache = step(DEC[:, i:i + 1], states, enc["attention_mask"], cache, np.int32(i), mask)
        steps.append(keras.ops.convert_to_numpy(logits))
    assert_close(np.concatenate(steps, axis=1), np.load(folder.parent / "steps.npy"),
                 what="prophetnet cached steps")
    full = np.load(folder.parent / "full.npy")
    assert_close(jit_under_jax(model)({**enc, "decoder_input_ids": DEC}), full, what="prophetnet full pass")
    mask[:] = 0
    mask[:, :t] = 1
    prefill, _ = step(DEC, states, enc["attention_mask"], model.init_cache(2, t + 1, states), np.int32(0), mask)
    assert_close(prefill, full, what="prophetnet prefill")


def test_save_to_preset_reloads_in_transformers(tmp_path):
    import keras
    import torch
    import transformers

    inputs = seq2seq_inputs(0, 0)
    folder, expected = hf_reference("s2s-prophetnet", _prophetnet, inputs)
    model = km.Seq2SeqLM.from_preset(folder)
    model.save_to_preset(tmp_path / "saved")
    hf = transformers.ProphetNetForConditionalGeneration.from_pretrained(tmp_path / "saved").eval()
    with torch.no_grad():
        out = hf(**{k: torch.tensor(v) for k, v in inputs.items()}).logits.numpy()
    mask = inputs["decoder_attention_mask"]
    assert_close(out, expected["logits"], mask=mask, what="prophetnet export")
    model.save(tmp_path / "pn.keras")
    loaded = keras.saving.load_model(tmp_path / "pn.keras")
    assert type(loaded) is type(model)
    assert_close(loaded(inputs), expected["logits"], mask=mask, what="prophetnet .keras reload")


def test_decoder_only_config_raises():
    from keras_models.errors import ConfigError
    from keras_models.models.prophetnet import ProphetNetBackbone

    with pytest.raises(ConfigError, match="add_cross_attention"):
        ProphetNetBackbone.config_from_hf({"model_type": "prophetnet", "add_cross_attention": False})
