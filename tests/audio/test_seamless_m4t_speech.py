"""SeamlessM4T / v2 speech output (text-to-unit model + unit HiFi-GAN vocoder) against tiny random
Transformers models: ``generate(..., generate_speech=True)`` from text and from speech, greedy
(v1: autoregressive units; v2: one non-autoregressive pass over character durations). Text ids,
unit ids and waveform lengths equal, waveforms within 1e-4."""

import json

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import InputError
from keras_models.generation.config import GenerationError
from tests.audio.test_seamless_m4t import COMMON, EOS, _speech_inputs, _text_inputs
from tests.parity import assert_close, hf_reference

GREEDY = dict(max_new_tokens=5, do_sample=False, num_beams=1)
TABLES = {"text_decoder_lang_to_code_id": {"fra": 7, "eng": 9}, "t2u_lang_code_to_id": {"fra": 5, "eng": 6},
          "vocoder_lang_code_to_id": {"fra": 1, "eng": 2}}
WORDS = ["\u2581a", "b", "\u2581cd", ",", "\u2581e", "fgh", ".", "\u2581"]
V2_TABLES = {"id_to_text": {str(i): WORDS[i % len(WORDS)] for i in range(64)},
             "char_to_id": {c: i + 2 for i, c in enumerate("\u2581abcdefgh,.")}}
# t2u: 1 encoder / 2 decoder layers, odd ffn sizes; vocoder: two upsamplings, two resblock kernels
SPEECH = dict(t2u_encoder_layers=1, t2u_decoder_layers=2, t2u_encoder_ffn_dim=12, t2u_decoder_ffn_dim=20,
              t2u_decoder_attention_heads=4, vocoder_offset=3, resblock_kernel_sizes=[3, 5],
              resblock_dilation_sizes=[[1, 3], [1]], leaky_relu_slope=0.2, upsample_rates=[3, 2],
              upsample_kernel_sizes=[5, 4])
CASES = {"v1": ("SeamlessM4TModel", {}),
         "v2": ("SeamlessM4Tv2Model", dict(char_vocab_size=30, t2u_variance_predictor_embed_dim=16,
                                            t2u_variance_predictor_hidden_dim=8, t2u_variance_predictor_kernel_size=5))}


def _builder(case):
    def build():
        import transformers

        arch, extra = CASES[case]
        cls = transformers.SeamlessM4Tv2Config if case == "v2" else transformers.SeamlessM4TConfig
        return getattr(transformers, arch)(cls(**{**COMMON, **SPEECH, **extra}))

    return build


def _extra(case):
    def save(folder, model):
        import torch

        with torch.no_grad():  # a likelier end token; weaker language rows (they would repeat: tied tables)
            model.shared.weight[EOS] *= 1.6
            model.shared.weight[7] *= 0.3
            model.t2u_model.model.decoder.embed_tokens.weight[5] *= 0.3
        gen = model.generation_config
        for key, value in {**TABLES, **(V2_TABLES if case == "v2" else {})}.items():
            setattr(gen, key, value)
        model.save_pretrained(folder)
        speaker = {"speaker_id": 1} if case == "v2" else {"spkr_id": 1}
        text, speech = _text_inputs(), _speech_inputs()
        out = {}
        with torch.no_grad():
            for name, kwargs in (("text", {k: torch.tensor(text[k]) for k in ("input_ids", "attention_mask")}),
                                 ("speech", {k: torch.tensor(speech[k]) for k in ("input_features",
                                                                                  "attention_mask")})):
                res = model.generate(**kwargs, tgt_lang="fra", generate_speech=True, return_intermediate_token_ids=True,
                                     **speaker, **GREEDY)
                for key in ("waveform", "waveform_lengths", "sequences", "unit_sequences"):
                    out[f"{name}_{key}"] = getattr(res, key).numpy()
        np.savez(folder / "speech.npz", **out)

    return save


def _reference(case):
    return hf_reference(f"seamless-m4t-speech-{case}", _builder(case), _speech_inputs(), extra_save=_extra(case),
                        seed=5)


@pytest.mark.parametrize("case", sorted(CASES))
def test_speech_output_matches_transformers(case):
    folder, _ = _reference(case)
    want = dict(np.load(folder / "speech.npz"))
    model = km.Seq2SeqLM.from_preset(folder)
    assert model.backbone.t2u_model is not None and model.backbone.hf_architecture.endswith("Model")
    # CI time: v1 from text (units end early in one row), v2 from speech; the reference holds both
    name = "text" if case == "v1" else "speech"
    inputs = _text_inputs() if case == "v1" else _speech_inputs()
    keys = ("input_ids", "attention_mask") if case == "v1" else ("input_features", "attention_mask")
    got = model.generate({k: inputs[k] for k in keys}, tgt_lang="__fra__", generate_speech=True, speaker_id=1,
                         return_intermediate_token_ids=True, **GREEDY)
    np.testing.assert_array_equal(got["sequences"], want[f"{name}_sequences"], err_msg=f"{name} text ids")
    np.testing.assert_array_equal(got["unit_sequences"], want[f"{name}_unit_sequences"], err_msg=f"{name} units")
    np.testing.assert_array_equal(got["waveform_lengths"], want[f"{name}_waveform_lengths"])
    assert_close(got["waveform"], want[f"{name}_waveform"], what=f"{name} waveform")
    assert np.abs(want[f"{name}_waveform"]).max() > 1e-3


def test_speech_output_errors(tmp_path):
    folder, _ = _reference("v1")
    model = km.Seq2SeqLM.from_preset(folder)
    ids = {k: _text_inputs()[k] for k in ("input_ids", "attention_mask")}
    with pytest.raises(InputError, match="tgt_lang"):
        model.generate(ids, generate_speech=True)
    with pytest.raises(GenerationError, match="tgt_lang=.deu. is not in"):
        model.generate(ids, generate_speech=True, tgt_lang="deu")
    with pytest.raises(InputError, match="vocoder_num_spkrs"):
        model.generate(ids, generate_speech=True, tgt_lang="fra", speaker_id=7)
    config = json.loads((folder / "config.json").read_text())
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({**config, "variance_predictor_kernel_size": 5}))
    from keras_models.errors import ConfigError

    with pytest.raises(ConfigError, match="variance_predictor_kernel_size"):
        km.Backbone.from_preset(bad, load_weights=False)
    # a text-only checkpoint has no speech output
    t2t = tmp_path / "t2t"
    t2t.mkdir()
    (t2t / "config.json").write_text(json.dumps({**config, "architectures": ["SeamlessM4TForTextToText"]}))
    backbone = km.Backbone.from_preset(t2t, load_weights=False)
    assert backbone.t2u_model is None and backbone.hf_architecture == "SeamlessM4TForTextToText"
