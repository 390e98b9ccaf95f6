"""Text families of issue 18 against tiny random Transformers models: EncoderDecoder (BERT and
RoBERTa encoders with BERT / RoBERTa cross-attention decoders), BigBird-Pegasus (block-sparse
encoder on a long padded batch; its heads on a short one, full attention), Longformer (per-layer
windows, global tokens given and the heads' defaults, a padded batch), XLNet (clamped relative
positions, segment terms with and without token_type_ids, every head; its tokenizer:
tests/tokenizers/test_xlnet_tokenizer.py)."""

import json

import numpy as np
import pytest

import keras_models as km
from keras_models.errors import ConfigError
from tests.parity import assert_close, hf_reference

GREEDY = dict(max_new_tokens=6, do_sample=False, num_beams=1)

# --- EncoderDecoder ------------------------------------------------------------------------------
ED_START, ED_EOS = 2, 3


def _ed_model(kind):
    import transformers as T

    if kind == "bert":
        # encoder narrower than the decoder (enc_to_dec_proj), gelu_new decoder, own eps, tied head
        enc = T.BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=24, max_position_embeddings=32)
        dec = T.BertConfig(vocab_size=48, hidden_size=24, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=32, max_position_embeddings=32, hidden_act="gelu_new",
                           layer_norm_eps=1e-6, type_vocab_size=3)
        pad = 0
    else:
        # equal widths (no projection), positions counted over non-pad tokens, untied head
        enc = T.RobertaConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                              intermediate_size=24, max_position_embeddings=34, pad_token_id=1)
        dec = T.RobertaConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=4,
                              intermediate_size=20, max_position_embeddings=34, pad_token_id=1,
                              tie_word_embeddings=False, hidden_act="relu")
        pad = 1
    cfg = T.EncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    cfg.decoder_start_token_id, cfg.pad_token_id, cfg.eos_token_id = ED_START, pad, ED_EOS
    return T.EncoderDecoderModel(cfg)


def _ed_inputs(kind):
    pad = 0 if kind == "bert" else 1
    ids = np.array([[5, 9, 14, 22, 30, 7, 11], [6, 13, 40, 8, pad, pad, pad]], "int64")
    mask = (ids != pad).astype("int64")
    dec = np.array([[ED_START, 5, 17, 33, 9], [ED_START, 8, 11, pad, pad]], "int64")
    return {"input_ids": ids, "attention_mask": mask, "decoder_input_ids": dec,
            "decoder_attention_mask": (dec != pad).astype("int64")}


def _ed_generate(kind):
    def save(folder, model):
        import torch

        inputs = _ed_inputs(kind)
        with torch.no_grad():
            out = model.generate(input_ids=torch.tensor(inputs["input_ids"]),
                                 attention_mask=torch.tensor(inputs["attention_mask"]), **GREEDY)
        np.save(folder / "greedy.npy", out.numpy())
    return save


def _ed_reference(kind):
    return hf_reference(f"encoder-decoder-{kind}", lambda: _ed_model(kind), _ed_inputs(kind),
                        extra_save=_ed_generate(kind) if kind == "roberta" else None)


def test_encoder_decoder_matches_transformers(tmp_path):
    for kind in ("bert", "roberta"):
        folder, expected = _ed_reference(kind)
        inputs = _ed_inputs(kind)
        model = km.Seq2SeqLM.from_preset(folder)
        assert type(model).__name__ == "EncoderDecoderSeq2SeqLM"
        dec_mask = inputs["decoder_attention_mask"]
        assert_close(model(inputs), expected["logits"], mask=dec_mask, what=f"{kind} logits")
        out = model.backbone(inputs)
        assert_close(out["encoder_last_hidden_state"], expected["encoder_last_hidden_state"],
                     mask=inputs["attention_mask"], what=f"{kind} encoder")
        if kind == "roberta":  # the cached decoder (positions over non-pad tokens, cross K/V): one kind is enough
            greedy = np.load(folder / "greedy.npy")
            got = model.generate({"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]},
                                 **GREEDY)
            np.testing.assert_array_equal(np.asarray(got), greedy)
            assert (greedy[0] != greedy[1]).any()
    # a GPT-2 decoder is refused, naming the model_type
    cfg = json.loads((folder / "config.json").read_text())
    cfg["decoder"]["model_type"] = "gpt2"
    (tmp_path / "gpt2").mkdir()
    (tmp_path / "gpt2" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="gpt2"):
        km.Backbone.from_preset(tmp_path / "gpt2")


# --- BigBird-Pegasus -----------------------------------------------------------------------------
BP_START, BP_EOS, BP_PAD = 2, 1, 0


def _bigbird_pegasus():
    from transformers import BigBirdPegasusConfig, BigBirdPegasusForConditionalGeneration

    # block_size 2 with 1 random block: inputs over 14 tokens are block-sparse; biased attention
    # projections (use_bias), relu, start token != eos, unscaled embeddings (the default scales them)
    cfg = BigBirdPegasusConfig(vocab_size=64, d_model=16, encoder_layers=2, decoder_layers=1,
                               encoder_attention_heads=2, decoder_attention_heads=4, encoder_ffn_dim=24,
                               decoder_ffn_dim=20, max_position_embeddings=40, block_size=2, num_random_blocks=1,
                               use_bias=True, activation_function="relu", pad_token_id=BP_PAD, eos_token_id=BP_EOS,
                               bos_token_id=3, decoder_start_token_id=BP_START,
                               attention_type="block_sparse", scale_embedding=False)
    return BigBirdPegasusForConditionalGeneration(cfg)


def _bp_inputs(seq=17):
    rng = np.random.RandomState(2)
    ids = rng.randint(4, 64, size=(2, seq)).astype("int64")
    ids[1, seq - 4:] = BP_PAD
    dec = np.array([[BP_START, 5, 17, 33, 9], [BP_START, 8, 11, BP_PAD, BP_PAD]], "int64")
    return {"input_ids": ids, "attention_mask": (ids != BP_PAD).astype("int64"), "decoder_input_ids": dec,
            "decoder_attention_mask": (dec != BP_PAD).astype("int64")}


def _bp_extra(folder, model):
    """Greedy ids on the block-sparse input."""
    import torch

    inputs = {k: torch.tensor(v) for k, v in _bp_inputs().items()}
    with torch.no_grad():
        out = model.generate(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], **GREEDY)
    np.save(folder / "greedy.npy", out.numpy())


def _bp_reference():
    return hf_reference("bigbird_pegasus", _bigbird_pegasus, _bp_inputs(), extra_save=_bp_extra, seed=1)


def test_bigbird_pegasus_matches_transformers():
    folder, expected = _bp_reference()
    inputs = _bp_inputs()
    model = km.Seq2SeqLM.from_preset(folder)
    assert type(model).__name__ == "BigBirdPegasusSeq2SeqLM"
    assert model.backbone.uses_block_sparse(inputs["input_ids"].shape[1])
    dec_mask = inputs["decoder_attention_mask"]
    assert_close(model(inputs), expected["logits"], mask=dec_mask, what="logits")
    out = model.backbone(inputs)
    assert_close(out["encoder_last_hidden_state"], expected["encoder_last_hidden_state"],
                 mask=inputs["attention_mask"], what="encoder")
    greedy = np.load(folder / "greedy.npy")
    got = model.generate({"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}, **GREEDY)
    np.testing.assert_array_equal(np.asarray(got), greedy)
    assert (greedy[0] != greedy[1]).any()


def test_exports_reloads_in_transformers(tmp_path):
    """EncoderDecoder (BERT and RoBERTa), BigBird-Pegasus, Longformer and XLNet exports load in
    Transformers with equal logits."""
    import torch
    import transformers as T

    cases = [(kind, lambda kind=kind: _ed_reference(kind), _ed_inputs(kind), T.EncoderDecoderModel)
             for kind in ("bert", "roberta")]
    cases.append(("bigbird_pegasus", _bp_reference, _bp_inputs(), T.BigBirdPegasusForConditionalGeneration))
    for name, reference, inputs, cls in cases:
        folder, expected = reference()
        km.Seq2SeqLM.from_preset(folder).save_to_preset(tmp_path / name)
        hf = cls.from_pretrained(tmp_path / name).eval()
        with torch.no_grad():
            logits = hf(**{k: torch.tensor(v) for k, v in inputs.items()}).logits.numpy()
        assert_close(logits, expected["logits"], mask=inputs["decoder_attention_mask"], what=f"{name} reloaded")
    inputs = _lf_inputs("MaskedLM")
    folder, expected = hf_reference("longformer-MaskedLM", lambda: _longformer("MaskedLM"), inputs)
    km.MaskedLM.from_preset(folder).save_to_preset(tmp_path / "longformer")
    hf = T.LongformerForMaskedLM.from_pretrained(tmp_path / "longformer").eval()
    with torch.no_grad():
        logits = hf(**{k: torch.tensor(v) for k, v in inputs.items()}).logits.numpy()
    assert_close(logits, expected["logits"], mask=inputs["attention_mask"], what="longformer reloaded")
    inputs = _xl_inputs("MaskedLM")
    folder, expected = hf_reference("xlnet-MaskedLM", lambda: _xlnet("MaskedLM"), inputs)
    km.MaskedLM.from_preset(folder).save_to_preset(tmp_path / "xlnet")
    hf = T.XLNetLMHeadModel.from_pretrained(tmp_path / "xlnet").eval()
    with torch.no_grad():
        logits = hf(**{k: torch.tensor(v) for k, v in inputs.items()}).logits.numpy()
    assert_close(logits, expected["logits"], mask=inputs["attention_mask"], what="xlnet reloaded")


def _bp_head(task):
    import transformers as T

    cfg = _bigbird_pegasus().config
    cfg.num_labels = 3
    cls = {"TextClassifier": T.BigBirdPegasusForSequenceClassification,
           "QuestionAnswerer": T.BigBirdPegasusForQuestionAnswering}[task]
    return cls(cfg)


def _bp_head_inputs():
    inputs = _bp_inputs(11)  # short: full attention (Transformers and ours fall back to it)
    ids, mask = inputs["input_ids"].copy(), inputs["attention_mask"]
    ids[ids == BP_EOS] = 5
    ids[np.arange(2), mask.sum(1) - 1] = BP_EOS  # one eos per row, at its last real token
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.one_case_per_pass("task")
@pytest.mark.parametrize("task", ["TextClassifier", "QuestionAnswerer"])
def test_bigbird_pegasus_heads(task):
    inputs = _bp_head_inputs()
    folder, expected = hf_reference(f"bigbird_pegasus_{task}", lambda: _bp_head(task), inputs, seed=1)
    model = getattr(km, task).from_preset(folder)
    assert type(model).__name__ == f"BigBirdPegasus{task}"
    assert not model.backbone.uses_block_sparse(inputs["input_ids"].shape[1])
    out = model(inputs)
    if task == "TextClassifier":
        assert_close(out, expected["logits"], what="logits")
    else:
        for k in ("start_logits", "end_logits"):
            assert_close(out[k], expected[k], mask=inputs["attention_mask"], what=k)


# --- Longformer ----------------------------------------------------------------------------------
LF_PAD, LF_SEP = 1, 2


def _longformer(task):
    import transformers as T

    # per-layer windows (6, then 4: Transformers pads the 11 tokens to 12), gelu_new, own eps
    cfg = T.LongformerConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=24, max_position_embeddings=40, attention_window=[6, 4],
                             hidden_act="gelu_new", layer_norm_eps=1e-6, pad_token_id=LF_PAD, sep_token_id=LF_SEP,
                             num_labels=2 if task == "QuestionAnswerer" else 3)
    suffix = {"Backbone": "Model", "MaskedLM": "ForMaskedLM", "TextClassifier": "ForSequenceClassification",
              "TokenClassifier": "ForTokenClassification", "QuestionAnswerer": "ForQuestionAnswering"}[task]
    return getattr(T, "Longformer" + suffix)(cfg)


def _lf_inputs(task):
    rng = np.random.RandomState(3)
    ids = rng.randint(3, 64, size=(2, 11)).astype("int64")
    ids[1, 8:] = LF_PAD
    inputs = {"input_ids": ids, "attention_mask": (ids != LF_PAD).astype("int64"),
              "token_type_ids": np.zeros_like(ids)}
    if task in ("TextClassifier", "QuestionAnswerer"):  # Transformers' default global tokens (3 separators a row)
        ids[0, [3, 4, 10]] = LF_SEP
        ids[1, [2, 3, 7]] = LF_SEP
        return inputs
    glob = np.zeros_like(ids)
    glob[0, [0, 6]] = 1
    glob[1, [3, 9]] = 1  # 9 is padding: never global
    inputs["global_attention_mask"] = glob
    return inputs


@pytest.mark.one_case_per_pass("task")
@pytest.mark.parametrize("task", ["Backbone", "MaskedLM", "TextClassifier", "TokenClassifier", "QuestionAnswerer"])
def test_longformer_matches_transformers(task):
    from tests.models.test_encoders import check_parity
    from tests.parity import assert_backbone_close

    inputs = _lf_inputs(task)
    folder, expected = hf_reference(f"longformer-{task}", lambda: _longformer(task), inputs)
    if task not in ("TextClassifier", "QuestionAnswerer"):
        check_parity("Longformer", "longformer", task, folder, inputs, expected)
        return
    model = getattr(km, task).from_preset(folder)
    assert type(model).__name__ == f"Longformer{task}"
    out = model(inputs)  # no global_attention_mask: the head's default global tokens
    glob = np.zeros_like(inputs["input_ids"])
    if task == "TextClassifier":
        glob[:, 0] = 1
        assert_close(out, expected["logits"], what="logits")
    else:
        glob[0, :3], glob[1, :2] = 1, 1
        for k in ("start_logits", "end_logits"):
            assert_close(out[k], expected[k], mask=inputs["attention_mask"], what=k)
    assert_backbone_close(model, dict(inputs, global_attention_mask=glob), expected, mask=inputs["attention_mask"])


# --- XLNet ---------------------------------------------------------------------------------------
XL_PAD = 5
XL_SUFFIX = {"Backbone": "Model", "MaskedLM": "LMHeadModel", "TextClassifier": "ForSequenceClassification",
             "TokenClassifier": "ForTokenClassification", "QuestionAnswerer": "ForQuestionAnsweringSimple"}


def _xlnet(task):
    import transformers as T

    # distances clamped to 5 on 9 tokens, gelu_new, own eps, an untied LM head
    cfg = T.XLNetConfig(vocab_size=64, d_model=16, n_layer=2, n_head=2, d_inner=24, clamp_len=5,
                        ff_activation="gelu_new", layer_norm_eps=1e-6, pad_token_id=XL_PAD, mem_len=None,
                        tie_word_embeddings=task != "MaskedLM", num_labels=2 if task == "QuestionAnswerer" else 3)
    return getattr(T, "XLNet" + XL_SUFFIX[task])(cfg)


def _xl_inputs(task):
    rng = np.random.RandomState(4)
    ids = rng.randint(6, 64, size=(2, 9)).astype("int64")
    ids[1, 6:] = XL_PAD
    inputs = {"input_ids": ids, "attention_mask": (ids != XL_PAD).astype("int64")}
    if task != "Backbone":  # segment terms only with token_type_ids (XLNet's cls segment is 2)
        inputs["token_type_ids"] = np.array([[0, 0, 0, 0, 1, 1, 1, 1, 2], [0, 0, 0, 1, 1, 2, 0, 0, 0]], "int64")
    return inputs


@pytest.mark.one_case_per_pass("task")
@pytest.mark.parametrize("task", list(XL_SUFFIX))
def test_xlnet_matches_transformers(task):
    from tests.parity import assert_backbone_close

    inputs = _xl_inputs(task)
    folder, expected = hf_reference(f"xlnet-{task}", lambda: _xlnet(task), inputs)
    model = (km.Backbone if task == "Backbone" else getattr(km, task)).from_preset(folder)
    assert type(model).__name__.startswith("XLNet")
    out = model(inputs)
    mask = inputs["attention_mask"]
    if task == "Backbone":  # padded positions too (each sees itself and the real tokens)
        assert_close(out, expected["last_hidden_state"], what="backbone")
        return
    if task == "QuestionAnswerer":
        for k in ("start_logits", "end_logits"):
            assert_close(out[k], expected[k], mask=mask, what=k)
    elif task == "TextClassifier":  # summary of the last position (padding in row 1), as Transformers
        assert_close(out, expected["logits"], what="logits")
    else:
        assert_close(out, expected["logits"], mask=mask, what="logits")
    assert_backbone_close(model, inputs, expected, mask=mask)

