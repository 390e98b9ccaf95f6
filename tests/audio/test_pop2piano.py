"""Pop2Piano (T5 on input_features + a composer table) against tiny random Transformers models:
logits and encoder / decoder states on a padded feature batch (two configs: gated gelu_new with the
d_model**-0.5 output scaling; plain relu without it), greedy generate with a composer equal to
Transformers', save_to_preset reloaded by Transformers, a .keras round trip and bad config values.
Pop2PianoTokenizer (MIDI events) and the feature extractor (essentia / librosa): test_audio_frontends.py."""

import json

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError
from tests.parity import assert_close, assert_keras_round_trip, hf_reference, to_numpy

COMPOSERS = {"composer1": 10, "composer2": 11, "composer3": 12}
CONFIGS = {
    "gated": dict(feed_forward_proj="gated-gelu", dense_act_fn="gelu_new", tie_word_embeddings=True),
    "relu": dict(feed_forward_proj="relu", dense_act_fn="relu", tie_word_embeddings=False),
}
GENERATE = dict(composer="composer2", max_new_tokens=8, do_sample=False)


def _builder(case):
    def build():
        from transformers import Pop2PianoConfig, Pop2PianoForConditionalGeneration

        cfg = Pop2PianoConfig(vocab_size=60, composer_vocab_size=3, d_model=32, d_kv=8, d_ff=40, num_layers=2,
                              num_decoder_layers=1, num_heads=4, relative_attention_num_buckets=8,
                              relative_attention_max_distance=20, **CONFIGS[case])
        model = Pop2PianoForConditionalGeneration(cfg)
        model.generation_config.composer_to_feature_token = dict(COMPOSERS)
        model.generation_config.decoder_start_token_id = 0
        return model
    build.__name__ = f"pop2piano_{case}"
    return build


def _inputs():
    rng = np.random.RandomState(0)
    mask = np.ones((2, 7), "int64")
    mask[1, 5:] = 0
    dec = rng.randint(2, 60, size=(2, 6)).astype("int64")
    dec[:, 0] = 0
    dmask = np.ones_like(dec)
    dmask[1, 4:] = 0
    return {"input_features": rng.randn(2, 7, 32).astype("float32"), "attention_mask": mask,
            "decoder_input_ids": dec, "decoder_attention_mask": dmask}


def _save_generate(folder, model):
    import torch

    x = _inputs()
    with torch.no_grad():
        out = model.generate(input_features=torch.tensor(x["input_features"]),
                             attention_mask=torch.tensor(x["attention_mask"]), **GENERATE)
        hidden = model(**{k: torch.tensor(v) for k, v in x.items()}, output_hidden_states=True)
    np.save(folder / "generated.npy", out.numpy())
    np.save(folder / "decoder_hidden.npy", hidden.decoder_hidden_states[-1].numpy())


def _reference(case):
    return hf_reference(f"pop2piano_{case}", _builder(case), _inputs(), extra_save=_save_generate)


@pytest.mark.parametrize("case", list(CONFIGS))
def test_logits_and_states_match_transformers(case):
    folder, expected = _reference(case)
    x = _inputs()
    model = km.Seq2SeqLM.from_preset(folder)
    assert type(model).__name__ == "Pop2PianoSeq2SeqLM"
    logits = model.predict_on_batch(x)
    assert_close(logits, expected["logits"], mask=x["decoder_attention_mask"], what=f"{case} logits")
    out = model.backbone.predict_on_batch(x)
    assert_close(out["encoder_last_hidden_state"], expected["encoder_last_hidden_state"],
                 mask=x["attention_mask"], what="encoder")
    assert_close(out["last_hidden_state"], np.load(folder / "decoder_hidden.npy"), mask=x["decoder_attention_mask"],
                 what="decoder")
    if case == "gated":
        generated = model.generate(x["input_features"], attention_mask=x["attention_mask"], **GENERATE)
        np.testing.assert_array_equal(np.asarray(generated), np.load(folder / "generated.npy"))


def test_save_to_preset_reloads_in_transformers(tmp_path):
    import torch
    from transformers import Pop2PianoForConditionalGeneration

    folder, expected = _reference("gated")
    model = km.Seq2SeqLM.from_preset(folder)
    model.save_to_preset(tmp_path / "saved")
    hf = Pop2PianoForConditionalGeneration.from_pretrained(tmp_path / "saved").eval()
    assert hf.generation_config.composer_to_feature_token == COMPOSERS
    x = _inputs()
    with torch.no_grad():
        logits = hf(**{k: torch.tensor(v) for k, v in x.items()}).logits.numpy()
    assert_close(logits, expected["logits"], mask=x["decoder_attention_mask"], what="reloaded logits")
    assert_keras_round_trip(model, x, tmp_path)


def test_bad_config_values_raise(tmp_path):
    from keras_models.generation.config import GenerationError

    folder, _ = _reference("gated")
    config = json.loads((folder / "config.json").read_text())
    for key, value in (("feed_forward_proj", "gelu-gated-x"), ("composer_vocab_size", 0)):
        bad = tmp_path / key
        bad.mkdir()
        (bad / "config.json").write_text(json.dumps(dict(config, **{key: value})))
        with pytest.raises(ConfigError, match=key):
            km.Backbone.from_preset(bad)
    model = km.Seq2SeqLM.from_preset(folder)
    with pytest.raises(GenerationError, match="composer"):
        model.generate(_inputs()["input_features"], composer="nobody", max_new_tokens=2)
