"""BART-like token tables with ``tie_word_embeddings`` false: Transformers 5 keeps ``shared``,
``encoder.embed_tokens`` and ``decoder.embed_tokens`` (and ``lm_head``) as independent tables, so a
checkpoint it trained holds diverging copies. Each must load into its own variable (the reference
weights perturb every parameter, so the three tables differ here), export back, and a tied config
whose copies differ must raise instead of silently picking one. Transformers 4 saved untied models
with ``shared.weight`` alone: encoder and decoder read it."""

import json
import shutil

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError, WeightMismatchError
from keras_models.models.bart import BartSeq2SeqLM
from tests.parity import assert_close, hf_reference, to_numpy

VOCAB = 64
TABLES = ("model.shared.weight", "model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight")


def _build(family):
    import torch
    import transformers as T

    config_cls, model_cls, extra = {
        # BART: post-norm, learned positions, layernorm_embedding, scaled embeddings
        "bart": (T.BartConfig, T.BartForConditionalGeneration, dict(scale_embedding=True)),
        # Pegasus: pre-norm, fixed sinusoidal positions, final norms
        "pegasus": (T.PegasusConfig, T.PegasusForConditionalGeneration, dict(activation_function="relu")),
    }[family]
    cfg = config_cls(vocab_size=VOCAB, d_model=16, encoder_layers=1, decoder_layers=1,
                     encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=24,
                     decoder_ffn_dim=24, max_position_embeddings=16, pad_token_id=1, bos_token_id=0,
                     eos_token_id=2, decoder_start_token_id=2, tie_word_embeddings=False, **extra)
    model = model_cls(cfg)
    g = torch.Generator().manual_seed(1)
    model.final_logits_bias.copy_(torch.randn(model.final_logits_bias.shape, generator=g) * 0.1)
    return model


def _inputs():
    rng = np.random.RandomState(0)
    ids = rng.randint(3, VOCAB, size=(2, 7)).astype("int64")
    mask = np.ones_like(ids)
    ids[1, 5:], mask[1, 5:] = 1, 0
    dec = rng.randint(3, VOCAB, size=(2, 5)).astype("int64")
    dec[:, 0] = 2
    dmask = np.ones_like(dec)
    dec[1, 4:], dmask[1, 4:] = 1, 0
    return {"input_ids": ids, "attention_mask": mask, "decoder_input_ids": dec, "decoder_attention_mask": dmask}


def _reference(family):
    return hf_reference(f"bart-untied-{family}", lambda: _build(family), _inputs())


def _tensors(folder):
    from safetensors.numpy import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.mark.parametrize("family", ["bart", "pegasus"])
def test_untied_tables_match_transformers(family):
    folder, expected = _reference(family)
    stored = _tensors(folder)
    assert not np.array_equal(stored[TABLES[0]], stored[TABLES[1]])  # the copies really diverge
    assert not np.array_equal(stored[TABLES[1]], stored[TABLES[2]])
    model = km.Seq2SeqLM.from_preset(folder)
    b = model.backbone
    assert b.separate_token_embeddings and not model.tie_word_embeddings
    for var, name in ((b.shared_token_embedding, TABLES[0]), (b.token_embedding, TABLES[1]),
                      (b.decoder_token_embedding, TABLES[2])):
        np.testing.assert_array_equal(to_numpy(var.embeddings), stored[name])
    assert not b.shared_token_embedding.trainable
    inputs = _inputs()
    assert_close(model(inputs), expected["logits"], mask=inputs["decoder_attention_mask"], what=f"{family} logits")
    out = b(inputs)
    assert_close(out["encoder_last_hidden_state"], expected["encoder_last_hidden_state"],
                 mask=inputs["attention_mask"], what=f"{family} encoder state")
    assert_close(out["last_hidden_state"], expected["last_hidden_state"], mask=inputs["decoder_attention_mask"],
                 what=f"{family} decoder state")


def test_untied_tables_reloads_in_transformers(tmp_path):
    import torch
    import transformers

    folder, expected = _reference("bart")
    inputs = _inputs()
    km.Seq2SeqLM.from_preset(folder).save_to_preset(tmp_path / "saved")
    assert json.loads((tmp_path / "saved" / "config.json").read_text())["tie_word_embeddings"] is False
    stored, saved = _tensors(folder), _tensors(tmp_path / "saved")
    for name in TABLES + ("lm_head.weight",):  # all four tables written back, shared unchanged
        np.testing.assert_array_equal(saved[name], stored[name])
    hf = transformers.BartForConditionalGeneration.from_pretrained(tmp_path / "saved").eval()
    with torch.no_grad():
        out = hf(**{k: torch.tensor(v) for k, v in inputs.items()})
    mask = inputs["decoder_attention_mask"]
    assert_close(out.logits.numpy(), expected["logits"], mask=mask, what="export logits")
    assert_close(out.encoder_last_hidden_state.numpy(), expected["encoder_last_hidden_state"],
                 mask=inputs["attention_mask"], what="export encoder state")

    # an own head over one (tied) table: written with encoder / decoder copies of the table
    from safetensors.numpy import save_file

    tied = tmp_path / "tied"
    shutil.copytree(folder, tied)
    save_file({k: v for k, v in stored.items() if k not in TABLES[1:]}, str(tied / "model.safetensors"),
              metadata={"format": "pt"})
    config = json.loads((tied / "config.json").read_text())
    (tied / "config.json").write_text(json.dumps(dict(config, tie_word_embeddings=True)))
    model = km.Seq2SeqLM.from_preset(tied, tie_word_embeddings=False)
    model.save_to_preset(tmp_path / "saved_tied")
    hf = transformers.BartForConditionalGeneration.from_pretrained(tmp_path / "saved_tied").eval()
    with torch.no_grad():
        out = hf(**{k: torch.tensor(v) for k, v in inputs.items()})
    assert_close(out.logits.numpy(), to_numpy(model(inputs)), mask=mask, what="own head over one table: export")


def test_token_table_layouts(tmp_path):
    """A tied config over diverging copies raises naming them; a Transformers 4 untied checkpoint
    (``shared.weight`` only) fills the encoder and decoder tables from it; a tied head over
    separate tables is refused. No forward pass."""
    from safetensors.numpy import save_file

    folder, _ = _reference("bart")
    stored = _tensors(folder)

    tied = tmp_path / "tied"
    shutil.copytree(folder, tied)
    config = json.loads((tied / "config.json").read_text())
    (tied / "config.json").write_text(json.dumps(dict(config, tie_word_embeddings=True)))
    with pytest.raises(WeightMismatchError, match=r"shared\.weight and encoder\.embed_tokens\.weight differ"):
        km.Seq2SeqLM.from_preset(tied)

    tf4 = tmp_path / "tf4"
    shutil.copytree(folder, tf4)
    save_file({k: v for k, v in stored.items() if k not in TABLES[1:]}, str(tf4 / "model.safetensors"),
              metadata={"format": "pt"})
    b = km.Backbone.from_preset(tf4)
    assert b.separate_token_embeddings
    for layer in (b.shared_token_embedding, b.token_embedding, b.decoder_token_embedding):
        np.testing.assert_array_equal(to_numpy(layer.embeddings), stored[TABLES[0]])
    with pytest.raises(ConfigError, match="tie_word_embeddings=True"):  # no tied head over separate tables
        BartSeq2SeqLM(b)

    # a tied checkpoint keeps one table (no extra parameters)
    (tf4 / "config.json").write_text(json.dumps(dict(config, tie_word_embeddings=True)))
    b = km.Backbone.from_preset(tf4)
    assert not b.separate_token_embeddings and b.shared_token_embedding is None
    assert b.decoder_embedding() is b.token_embedding
