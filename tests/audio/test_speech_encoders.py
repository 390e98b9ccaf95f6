"""WavLM, Data2VecAudio, Wav2Vec2-Conformer, SEW and SEW-D against tiny random Transformers models (the
tests/audio/test_wav2vec2.py harness): CTC / classifier logits on a padded batch of two
waveforms with an attention mask, odd options per case; save_to_preset reloaded by Transformers.
Buffers and parameters that Transformers initialises to constants (BatchNorm statistics,
pos_bias_u/v, gru_rel_pos_const) are randomised so their mapping is checked too."""

import numpy as np
import pytest

import keras_models as km
from tests.parity import assert_close, hf_reference

RNG = np.random.RandomState(1)
WAVES = RNG.randn(2, 400).astype("float32")
MASK = np.ones((2, 400), "int64")
MASK[1, 260:] = 0
WAVES[1, 260:] = 0.0
INPUTS = {"input_values": WAVES, "attention_mask": MASK}

COMMON = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
              conv_dim=(8, 12), conv_kernel=(7, 3), conv_stride=(4, 2), num_conv_pos_embeddings=6,
              num_conv_pos_embedding_groups=2, vocab_size=10, classifier_proj_size=10, num_labels=3,
              hidden_act="gelu_new", conv_bias=True)
CASES = {
    # 49 frames, distances up to 48 > max_bucket_distance: exact, log and clamped buckets
    "wavlm_ctc": ("WavLMConfig", "WavLMForCTC", dict(num_buckets=16, max_bucket_distance=20)),
    "wavlm_stable_cls": ("WavLMConfig", "WavLMForSequenceClassification",
                         dict(num_buckets=12, max_bucket_distance=30, do_stable_layer_norm=True,
                              feat_extract_norm="layer", conv_bias=False)),
    "d2v_ctc": ("Data2VecAudioConfig", "Data2VecAudioForCTC",
                dict(num_conv_pos_embeddings=2, conv_pos_kernel_size=4)),
    "d2v_cls": ("Data2VecAudioConfig", "Data2VecAudioForSequenceClassification",
                dict(num_conv_pos_embeddings=3, conv_pos_kernel_size=5, conv_bias=False, hidden_act="relu")),
    "conformer_rel_ctc": ("Wav2Vec2ConformerConfig", "Wav2Vec2ConformerForCTC",
                          dict(position_embeddings_type="relative", conv_depthwise_kernel_size=5,
                               feat_extract_norm="layer")),
    "conformer_rotary_cls": ("Wav2Vec2ConformerConfig", "Wav2Vec2ConformerForSequenceClassification",
                             dict(position_embeddings_type="rotary", conv_depthwise_kernel_size=3,
                                  rotary_embedding_base=500, hidden_act="swish")),
    # 49 frames, squeeze 3: 16 squeezed frames, one frame re-padded; conv_dim[-1] != hidden: a projection
    "sew_ctc": ("SEWConfig", "SEWForCTC", dict(squeeze_factor=3, num_conv_pos_embeddings=5)),
    # conv_dim[-1] == hidden: no projection; even position kernel
    "sew_cls": ("SEWConfig", "SEWForSequenceClassification",
                dict(squeeze_factor=2, conv_dim=(8, 16), feat_extract_norm="layer", num_conv_pos_embeddings=4)),
    # SEW-D: DeBERTa-v2 attention on 24 / 16 squeezed frames; log buckets (8 < distances), shared or own
    # position projections, c2p only, LayerNorm-ed or raw relative embeddings
    "sewd_ctc": ("SEWDConfig", "SEWDForCTC", dict(squeeze_factor=2, position_buckets=8, max_position_embeddings=12,
                                                  num_conv_pos_embeddings=5)),
    "sewd_cls": ("SEWDConfig", "SEWDForSequenceClassification",
                 dict(squeeze_factor=3, share_att_key=False, pos_att_type=["c2p"], norm_rel_ebd="none",
                      position_buckets=-1, max_position_embeddings=6, conv_dim=(8, 16))),
}
RANDOMISED = ("running_mean", "running_var", "pos_bias_u", "pos_bias_v", "gru_rel_pos_const")


def _builder(case):
    def build():
        import torch
        import transformers

        config_cls, model_cls, extra = CASES[case]
        model = getattr(transformers, model_cls)(getattr(transformers, config_cls)(**{**COMMON, **extra}))
        with torch.no_grad():
            for name, t in list(model.named_parameters()) + list(model.named_buffers()):
                if name.endswith(RANDOMISED):
                    t.copy_(torch.rand_like(t) + 0.5 if "var" in name or "const" in name else torch.randn_like(t))
        return model

    return build


@pytest.mark.parametrize("case", sorted(CASES))
def test_parity_and_transformers_reload(case, tmp_path):
    folder, expected = hf_reference(f"audio-{case}", _builder(case), INPUTS)
    arch = CASES[case][1]
    task = km.SpeechRecognizer if arch.endswith("ForCTC") else km.AudioClassifier
    model = task.from_preset(folder)
    assert type(model).__name__.startswith(arch.split("For")[0])
    out = model(INPUTS)
    assert_close(out, expected["logits"], atol=1e-4, what=f"{case} logits")

    import torch
    import transformers

    model.save_to_preset(tmp_path / "saved")
    hf_model = getattr(transformers, arch).from_pretrained(tmp_path / "saved").eval()
    with torch.no_grad():
        got = hf_model(**{k: torch.tensor(v) for k, v in INPUTS.items()})
    np.testing.assert_allclose(got.logits.numpy(), expected["logits"], atol=1e-5)


def test_bad_conformer_config_is_named(tmp_path):
    import json

    from keras_models.errors import ConfigError

    folder, _ = hf_reference("audio-conformer_rel_ctc", _builder("conformer_rel_ctc"), INPUTS)
    config = json.loads((folder / "config.json").read_text())
    for key, value in (("position_embeddings_type", "alibi"), ("conv_depthwise_kernel_size", 4)):
        bad = tmp_path / key
        bad.mkdir()
        for f in folder.iterdir():
            (bad / f.name).write_bytes(f.read_bytes())
        (bad / "config.json").write_text(json.dumps({**config, key: value}))
        with pytest.raises(ConfigError, match=key):
            km.Backbone.from_preset(bad)
