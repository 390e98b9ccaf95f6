"""MMS: Wav2Vec2 with per-language adapters (adapter_attn_dim, pre-norm blocks) against a tiny random
Transformers Wav2Vec2ForCTC: the checkpoint's own adapters (in model.safetensors), then another language's
``adapter.<lang>.safetensors`` with a CTC head of another vocabulary size, as Transformers'
``from_pretrained(..., target_lang=...)`` loads it; the tokenizer reads that language's vocab.json table."""

import json

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError, PresetError
from tests.parity import assert_close, hf_reference

RNG = np.random.RandomState(0)
WAVES = RNG.randn(2, 400).astype("float32")
MASK = np.ones((2, 400), "int64")
MASK[1, 300:] = 0
WAVES[1, 300:] = 0.0
INPUTS = {"input_values": WAVES, "attention_mask": MASK}
VOCABS = {"eng": {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "a": 5, "b": 6, "c": 7},
          "fra": {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "a": 5, "é": 6, "è": 7, "ç": 8, "'": 9, "b": 10}}


def _build():
    import transformers

    config = transformers.Wav2Vec2Config(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24, conv_dim=(8, 12),
        conv_kernel=(7, 3), conv_stride=(4, 2), num_conv_pos_embeddings=6, num_conv_pos_embedding_groups=2,
        vocab_size=len(VOCABS["eng"]), feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True,
        adapter_attn_dim=6, hidden_act="gelu")
    return transformers.Wav2Vec2ForCTC(config)


def _extra_save(folder, model):
    """adapter.fra.safetensors (random adapters, an 11-way head) and the logits Transformers gives with it."""
    import torch
    import transformers
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(1)
    weights = {}
    for name, p in model._get_adapters().items():
        shape = (len(VOCABS["fra"]),) + tuple(p.shape[1:]) if name.startswith("lm_head") else tuple(p.shape)
        weights[name] = torch.randn(shape, generator=gen) * 0.3
    save_file(weights, str(folder / "adapter.fra.safetensors"))
    (folder / "vocab.json").write_text(json.dumps(VOCABS, ensure_ascii=False))
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "Wav2Vec2CTCTokenizer"}))
    fra = transformers.Wav2Vec2ForCTC.from_pretrained(str(folder), target_lang="fra").eval()
    with torch.no_grad():
        logits = fra(**{k: torch.tensor(v) for k, v in INPUTS.items()}).logits.numpy()
    np.save(folder.parent / "expected_fra.npy", logits)


def _reference():
    return hf_reference("audio-mms-adapters", _build, INPUTS, extra_save=_extra_save)


def test_mms_adapters_match_transformers():
    folder, expected = _reference()
    frame_mask = None
    base = km.SpeechRecognizer.from_preset(folder, tokenizer=False)
    assert base.backbone.spec.adapter_attn_dim == 6
    assert_close(base(INPUTS), expected["logits"], mask=frame_mask, what="MMS checkpoint's own adapters")
    fra = km.SpeechRecognizer.from_preset(folder, target_lang="fra")
    assert fra.target_lang == "fra" and fra.vocab_size == len(VOCABS["fra"])
    assert len(fra.weights) == len(base.weights) and fra.head_from_checkpoint
    assert_close(fra(INPUTS), np.load(folder.parent / "expected_fra.npy"), what="adapter.fra.safetensors")
    from transformers import Wav2Vec2CTCTokenizer

    theirs = Wav2Vec2CTCTokenizer.from_pretrained(str(folder), target_lang="fra")
    ids = [[0, 5, 5, 6, 0, 4, 7, 8, 9, 10, 2]]
    assert fra.tokenizer.batch_decode(ids) == theirs.batch_decode(ids)
    assert list(fra.tokenizer("aé ç'b")["input_ids"][0]) == theirs("aé ç'b").input_ids
    # in place: the same head size only (else from_preset builds the model for it); missing files named
    with pytest.raises(ConfigError, match=r"11-token CTC head.*from_preset\(preset, target_lang='fra'\)"):
        base.load_adapter("fra", folder=folder)
    with pytest.raises(PresetError, match=r"adapter\.deu\.safetensors.*adapters there: fra"):
        base.load_adapter("deu", folder=folder)
    with pytest.raises(PresetError, match=r"adapter\.deu\.safetensors"):
        km.SpeechRecognizer.from_preset(folder, target_lang="deu")


def test_adapter_on_a_model_without_adapters_is_refused(tmp_path):
    from keras_models.models.wav2vec2.adapters import load_adapter

    folder, _ = _reference()
    model = km.SpeechRecognizer.from_preset(folder, tokenizer=False)
    object.__setattr__(model.backbone, "spec", type(model.backbone.spec)(
        **{**model.backbone.spec.__dict__, "adapter_attn_dim": None}))
    with pytest.raises(ConfigError, match="adapter_attn_dim"):
        load_adapter(model, folder, "fra")
