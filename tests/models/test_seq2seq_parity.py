"""Encoder-decoder families: Seq2SeqLM logits and backbone states against tiny random
Transformers models, with padded encoder and decoder inputs."""

import numpy as np
import pytest

import keras_models as km
from tests.parity import assert_backbone_close, assert_close, hf_reference

SRC, TGT, VOCAB = 9, 7, 99


def seq2seq_inputs(pad_id, start_id, seed=0):
    rng = np.random.RandomState(seed)
    ids = rng.randint(4, VOCAB, size=(2, SRC)).astype("int64")
    mask = np.ones_like(ids)
    ids[1, SRC - 3:] = pad_id
    mask[1, SRC - 3:] = 0
    dec = rng.randint(4, VOCAB, size=(2, TGT)).astype("int64")
    dec[:, 0] = start_id
    dmask = np.ones_like(dec)
    dec[1, TGT - 2:] = pad_id
    dmask[1, TGT - 2:] = 0
    return {"input_ids": ids, "attention_mask": mask, "decoder_input_ids": dec,
            "decoder_attention_mask": dmask}


# --- T5 family -----------------------------------------------------------------------------------
def _t5(cls="T5ForConditionalGeneration", untie=False, **kw):
    import transformers

    config_cls = {"T5": transformers.T5Config, "MT5": transformers.MT5Config,
                  "UMT5": transformers.UMT5Config}[cls.split("For")[0].replace("Model", "")]
    base = dict(vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                relative_attention_num_buckets=8, relative_attention_max_distance=20,
                decoder_start_token_id=0)
    base.update(kw)
    cfg = config_cls(**base)
    if untie:  # Transformers 5 re-ties T5 heads unless forced off here, which unties everything
        cfg.tie_word_embeddings = False
    model = getattr(transformers, cls)(cfg)
    if untie:  # a real v1.1 checkpoint: own lm_head, but one shared input embedding
        model.encoder.embed_tokens = model.decoder.embed_tokens = model.shared
    return model


def _bart_like(cls, config_name, **kw):
    import transformers

    base = dict(vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=2,
                encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=37,
                decoder_ffn_dim=41, max_position_embeddings=40, init_std=0.1, pad_token_id=1,
                bos_token_id=0, eos_token_id=2, decoder_start_token_id=2)
    base.update(kw)
    model = getattr(transformers, cls)(getattr(transformers, config_name)(**base))
    if hasattr(model, "final_logits_bias"):
        import torch

        g = torch.Generator().manual_seed(1)
        model.final_logits_bias.copy_(torch.randn(model.final_logits_bias.shape, generator=g) * 0.1)
    return model


def _fixed_positions(model):
    """Marian's sinusoidal table is a frozen parameter that save_pretrained leaves out (a reload
    rebuilds it): undo the reference's weight perturbation on it before every forward."""
    tables = [m for m in model.modules() if hasattr(m, "create_weight")]

    def restore(*_):
        for t in tables:
            t.weight.data.copy_(t.create_weight())

    model.register_forward_pre_hook(restore)
    return model


CASES = {
    # name: (builder, pad_id, decoder_start_id)
    "t5_v1_0": (lambda: _t5(), 0, 0),
    "t5_v1_1_gated_untied": (lambda: _t5(feed_forward_proj="gated-gelu", num_decoder_layers=3,
                                         untie=True), 0, 0),
    "t5_gated_silu_tied_unscaled": (lambda: _t5(feed_forward_proj="gated-silu",
                                                tie_word_embeddings=False), 0, 0),
    "mt5": (lambda: _t5("MT5ForConditionalGeneration", feed_forward_proj="gated-gelu", untie=True), 0, 0),
    "umt5": (lambda: _t5("UMT5ForConditionalGeneration", feed_forward_proj="gated-gelu"), 0, 0),
    "bart": (lambda: _bart_like("BartForConditionalGeneration", "BartConfig"), 1, 2),
    "bart_scaled_relu": (lambda: _bart_like("BartForConditionalGeneration", "BartConfig",
                                            scale_embedding=True, activation_function="relu",
                                            encoder_layers=1, decoder_layers=3), 1, 2),
    "mbart": (lambda: _bart_like("MBartForConditionalGeneration", "MBartConfig",
                                 activation_function="gelu_new"), 1, 2),
    "plbart": (lambda: _bart_like("PLBartForConditionalGeneration", "PLBartConfig",
                                  scale_embedding=True), 1, 2),
    "mvp": (lambda: _bart_like("MvpForConditionalGeneration", "MvpConfig"), 1, 2),
    "marian": (lambda: _fixed_positions(_bart_like("MarianMTModel", "MarianConfig",
                                                   decoder_vocab_size=VOCAB,
                                                   activation_function="swish")), 1, 2),
    "pegasus": (lambda: _bart_like("PegasusForConditionalGeneration", "PegasusConfig",
                                   activation_function="relu", scale_embedding=True), 1, 2),
    "blenderbot": (lambda: _bart_like("BlenderbotForConditionalGeneration", "BlenderbotConfig"), 1, 2),
    "blenderbot_small": (lambda: _bart_like("BlenderbotSmallForConditionalGeneration",
                                            "BlenderbotSmallConfig", scale_embedding=True), 1, 2),
    "m2m100": (lambda: _bart_like("M2M100ForConditionalGeneration", "M2M100Config",
                                  activation_function="relu", scale_embedding=True), 1, 2),
}


def _reference(name):
    builder, pad, start = CASES[name]
    inputs = seq2seq_inputs(pad, start)
    folder, expected = hf_reference(f"s2s-{name}", builder, inputs)
    return folder, inputs, expected


@pytest.mark.parametrize("name", sorted(CASES))
def test_seq2seq_lm_logits(name):
    folder, inputs, expected = _reference(name)
    model = km.Seq2SeqLM.from_preset(folder)
    assert model.head_from_checkpoint
    out = model(inputs)
    assert_close(out, expected["logits"], mask=inputs["decoder_attention_mask"], what=f"{name} logits")
    enc = model.encode(inputs)
    assert_close(enc, expected["encoder_last_hidden_state"], mask=inputs["attention_mask"],
                 what=f"{name} encoder states")
    assert_backbone_close(model, inputs, expected, mask=inputs["decoder_attention_mask"], what=f"{name} decoder")


# --- BART's classification and QA heads ----------------------------------------------------------
def _bart_head(cls):
    return _bart_like(cls, "BartConfig", num_labels=3 if "Sequence" in cls else 2)


def _eos_inputs():
    inputs = seq2seq_inputs(1, 2)
    ids = {"input_ids": inputs["input_ids"].copy(), "attention_mask": inputs["attention_mask"]}
    ids["input_ids"][0, SRC - 1] = 2
    ids["input_ids"][1, SRC - 4] = 2
    return ids


@pytest.mark.parametrize("task,hf_cls", [("TextClassifier", "BartForSequenceClassification"),
                                         ("QuestionAnswerer", "BartForQuestionAnswering")])
def test_bart_heads(task, hf_cls):
    inputs = _eos_inputs()
    folder, expected = hf_reference(f"s2s-{hf_cls}", lambda: _bart_head(hf_cls), inputs)
    model = getattr(km, task).from_preset(folder)
    assert model.head_from_checkpoint
    out = model(inputs)
    if task == "TextClassifier":
        assert_close(out, expected["logits"], what="bart classifier")
    else:
        for k in ("start_logits", "end_logits"):
            assert_close(out[k], expected[k], mask=inputs["attention_mask"], what=f"bart qa {k}")
    assert_backbone_close(model, inputs, expected, mask=inputs["attention_mask"], what=f"bart {task}")


# --- export: save_to_preset -> Transformers reloads it and computes the same logits -------------
@pytest.mark.parametrize("name,hf_cls", [("t5_v1_1_gated_untied", "T5ForConditionalGeneration"),
                                         ("pegasus", "PegasusForConditionalGeneration")])
def test_save_to_preset_reloads_in_transformers(name, hf_cls, tmp_path):
    import torch
    import transformers

    folder, inputs, expected = _reference(name)
    model = km.Seq2SeqLM.from_preset(folder)
    model.save_to_preset(tmp_path / "saved")
    hf = getattr(transformers, hf_cls).from_pretrained(tmp_path / "saved").eval()
    with torch.no_grad():
        out = hf(**{k: torch.tensor(v) for k, v in inputs.items()}).logits.numpy()
    assert_close(out, expected["logits"], mask=inputs["decoder_attention_mask"], what=f"{name} export")
    again = km.Seq2SeqLM.from_preset(tmp_path / "saved")
    assert_close(again(inputs), expected["logits"], mask=inputs["decoder_attention_mask"],
                 what=f"{name} reload")


@pytest.mark.parametrize("name", ["blenderbot_small", pytest.param("umt5", marks=pytest.mark.slow)])
def test_keras_save_and_load(name, tmp_path):
    import keras

    if True:
        folder, inputs, expected = _reference(name)
        model = km.Seq2SeqLM.from_preset(folder)
        model.save(tmp_path / f"{name}.keras")
        loaded = keras.saving.load_model(tmp_path / f"{name}.keras")
        assert type(loaded) is type(model)
        assert_close(loaded(inputs), expected["logits"], mask=inputs["decoder_attention_mask"],
                     what=f"{name} .keras reload")


@pytest.mark.parametrize("hf_cls", ["T5Model", "BartModel"])
def test_backbone_states(hf_cls):
    import transformers

    def build():
        if hf_cls == "T5Model":
            return transformers.T5Model(transformers.T5Config(
                vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=37, num_layers=1, num_heads=4,
                relative_attention_num_buckets=8, relative_attention_max_distance=20))
        return transformers.BartModel(transformers.BartConfig(
            vocab_size=VOCAB, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
            decoder_attention_heads=2, encoder_ffn_dim=37, decoder_ffn_dim=20,
            max_position_embeddings=40, init_std=0.1))

    pad = 0 if hf_cls == "T5Model" else 1
    inputs = seq2seq_inputs(pad, 0)
    folder, expected = hf_reference(f"s2s-{hf_cls}", build, inputs)
    out = km.Backbone.from_preset(folder)(inputs)
    assert_close(out["last_hidden_state"], expected["last_hidden_state"],
                 mask=inputs["decoder_attention_mask"], what=f"{hf_cls} decoder")
    assert_close(out["encoder_last_hidden_state"], expected["encoder_last_hidden_state"],
                 mask=inputs["attention_mask"], what=f"{hf_cls} encoder")


def test_unsupported_configs_raise_config_error():
    from keras_models.errors import ConfigError
    from keras_models.models.bart import BartBackbone
    from keras_models.models.t5 import T5Backbone

    t5 = dict(model_type="t5", vocab_size=10, d_model=8, d_kv=4, d_ff=8, num_layers=1, num_heads=2)
    with pytest.raises(ConfigError, match="feed_forward_proj"):
        T5Backbone.config_from_hf({**t5, "feed_forward_proj": "gelu-gated-x"})
    bart = dict(vocab_size=10, d_model=8, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                decoder_attention_heads=2, encoder_ffn_dim=8, decoder_ffn_dim=8, max_position_embeddings=8)
    with pytest.raises(ConfigError, match="use_prompt"):
        BartBackbone.config_from_hf({**bart, "model_type": "mvp", "use_prompt": True})
    with pytest.raises(ConfigError, match="decoder_vocab_size"):
        BartBackbone.config_from_hf({**bart, "model_type": "marian", "decoder_vocab_size": 12})
    with pytest.raises(ConfigError, match="d_model"):
        BartBackbone.config_from_hf({"model_type": "bart", "vocab_size": 10})
