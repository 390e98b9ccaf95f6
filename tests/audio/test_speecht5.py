"""SpeechT5 against tiny random Transformers models on padded audio / text batches.

ASR (SpeechT5ForSpeechToText): a layer-norm conv feature encoder with biases and unequal
strides, an even conv position kernel, a relative-position window (5) shorter than the frames
(so the clipping shows), scaled token embeddings, relu feed-forwards, unequal head counts, an untied LM head:
encoder / decoder states, LM logits, greedy generate equal to Transformers'; the export
reloaded by Transformers; a .keras round trip; bad configs refused naming the key."""

import json

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError
from tests.parity import assert_close, hf_reference

EOS, PAD = 2, 1
GREEDY = dict(max_new_tokens=8, do_sample=False, num_beams=1)


def _asr():
    from transformers import SpeechT5Config, SpeechT5ForSpeechToText

    cfg = SpeechT5Config(vocab_size=48, hidden_size=16, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                         decoder_attention_heads=4, encoder_ffn_dim=24, decoder_ffn_dim=20, hidden_act="relu",
                         conv_dim=(8, 12), conv_kernel=(5, 3), conv_stride=(3, 2), conv_bias=True,
                         feat_extract_norm="layer", num_conv_pos_embeddings=6, num_conv_pos_embedding_groups=2,
                         max_speech_positions=80, max_text_positions=24, encoder_max_relative_position=5,
                         scale_embedding=True, pad_token_id=PAD, eos_token_id=EOS, bos_token_id=0,
                         decoder_start_token_id=EOS, tie_word_embeddings=False)
    return SpeechT5ForSpeechToText(cfg)


def _asr_inputs():
    rng = np.random.RandomState(0)
    values = rng.randn(2, 400).astype("float32")
    values[1, 250:] = 0.0
    mask = np.array([[1] * 400, [1] * 250 + [0] * 150], "int64")
    dec = np.array([[EOS, 5, 17, 33, 9, 40], [EOS, 8, 11, PAD, PAD, PAD]], "int64")
    dec_mask = np.array([[1] * 6, [1] * 3 + [0] * 3], "int64")
    return {"input_values": values, "attention_mask": mask, "decoder_input_ids": dec,
            "decoder_attention_mask": dec_mask}


def _asr_generate(folder, model):
    """Transformers' greedy ids (both rows reach the end token, by different paths)."""
    import torch

    inputs = _asr_inputs()
    with torch.no_grad():
        out = model.generate(input_values=torch.tensor(inputs["input_values"]),
                             attention_mask=torch.tensor(inputs["attention_mask"]), **GREEDY)
    np.save(folder / "greedy.npy", out.numpy())


def _asr_reference():
    return hf_reference("speecht5_asr", _asr, _asr_inputs(), extra_save=_asr_generate, seed=6)


def _frames(model, inputs, states):
    from tests.parity import to_numpy

    return to_numpy(model.backbone.encoder_mask(inputs["attention_mask"], states.shape[1]))


def test_speecht5_asr_matches_transformers():
    folder, expected = _asr_reference()
    inputs = _asr_inputs()
    model = km.Seq2SeqLM.from_preset(folder)
    assert type(model).__name__ == "SpeechT5SpeechToText"
    dec_mask = inputs["decoder_attention_mask"]
    assert_close(model.predict_on_batch(inputs), expected["logits"], mask=dec_mask, what="logits")
    out = model.backbone(inputs)
    enc = expected["encoder_last_hidden_state"]
    assert_close(out["encoder_last_hidden_state"], enc, mask=_frames(model, inputs, enc), what="encoder")
    assert_close(out["last_hidden_state"], expected["last_hidden_state"], mask=dec_mask, what="decoder")
    greedy = np.load(folder / "greedy.npy")
    got = model.generate(inputs["input_values"], attention_mask=inputs["attention_mask"], **GREEDY)
    np.testing.assert_array_equal(np.asarray(got), greedy)
    assert (greedy[:, -1] == EOS).all() and (greedy[0] != greedy[1]).any()  # the rows follow their own audio


def test_speecht5_bad_configs(tmp_path):
    folder, _ = _asr_reference()
    cfg = json.loads((folder / "config.json").read_text())
    for key, value, match in (("feat_extract_norm", "batch", "feat_extract_norm"),
                              ("conv_kernel", [5], "conv_kernel"),
                              ("encoder_attention_heads", 3, "encoder_attention_heads"),
                              ("encoder_max_relative_position", 0, "encoder_max_relative_position")):
        bad = tmp_path / key
        bad.mkdir()
        (bad / "config.json").write_text(json.dumps(dict(cfg, **{key: value})))
        with pytest.raises(ConfigError, match=match):
            km.Backbone.from_preset(bad, load_weights=False)


def test_speecht5_keras_round_trip(tmp_path):
    from tests.parity import assert_keras_round_trip

    folder, _ = _asr_reference()
    model = km.Seq2SeqLM.from_preset(folder)
    assert_keras_round_trip(model, _asr_inputs(), tmp_path)


def test_speecht5_save_to_preset_reloads_in_transformers(tmp_path):
    import torch
    from transformers import SpeechT5ForSpeechToText

    folder, expected = _asr_reference()
    inputs = _asr_inputs()
    km.Seq2SeqLM.from_preset(folder).save_to_preset(tmp_path / "asr")
    hf = SpeechT5ForSpeechToText.from_pretrained(tmp_path / "asr").eval()
    with torch.no_grad():
        logits = hf(**{k: torch.tensor(v) for k, v in inputs.items()}).logits.numpy()
    assert_close(logits, expected["logits"], mask=inputs["decoder_attention_mask"], what="reloaded logits")
